"""Bottleneck networks (Theorem 6), the linear bottleneck (Theorem 4) and their two experiments."""

from __future__ import annotations

import torch

from archdiff.data import toy2d
from archdiff.denoisers.networks import NetSpec, build
from archdiff.experiments import get
from archdiff.experiments.fig4_bottleneck_2d import calibration, dimension
from archdiff.runner import run_experiment
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels
from archdiff.training import TrainConfig, train


def test_bottleneck_mlp_outputs_lie_on_h_dimensional_manifold():
    """Theorem 6 holds for any weights: outputs through a width-h bottleneck have dimension h."""
    x = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    for h in (1, 2):
        torch.manual_seed(h)
        net = build("mlp2d", hidden=64, bottleneck=h)
        with torch.no_grad():
            assert abs(dimension(net(x)) - h) < 0.3


def test_trained_h1_model_samples_on_a_curve():
    """DDIM samples of per-level h=1 networks are outputs of the last network: a 1-D set."""
    data = toy2d.gmm3(400, 0).float()
    cfg = TrainConfig(epochs=2, batch_size=100, lr=1e-3, steps=10)
    result = train(NetSpec("mlp2d", {"hidden": 16, "bottleneck": 1}), data, cfg, progress=False)
    samples = ddim(result.denoiser, initial_noise(1000, (2,), seed=1), sampling_levels("cosine", 10))
    assert abs(dimension(samples) - 1) < 0.3


def test_linear_bottleneck_operator_is_its_linear_part():
    net = build("linear-bottleneck", dim=5, rank=2, init_scale=1.0)
    with torch.no_grad():
        net.w2.bias.normal_()
        x = torch.randn(7, 5)
        torch.testing.assert_close(net(x), x @ net.operator().T + net.w2.bias)
    assert torch.linalg.matrix_rank(net.operator()) == 2


def test_id_estimator_calibration_sets():
    """The known sets used to calibrate the fig4 tolerance have the dimension they are built to have."""
    cal = calibration(1000, seed=0)
    assert abs(cal["intrinsic_dimension.known_1d"] - 1) < 0.15
    assert abs(cal["intrinsic_dimension.known_2d"] - 2) < 0.3


def test_fig4_runs_and_reports(tmp_path):
    tiny = {"n_train": 300, "n_samples": 400, "epochs": 1, "batch_size": 100, "steps": 5}
    record = run_experiment(get("fig4-bottleneck-2d"), out=tmp_path, overrides=tiny, progress=False)
    assert [c["id"] for c in record["claims"]] == ["samples-on-2d-manifold-h2", "samples-on-1d-manifold-h1"]
    assert (tmp_path / "fig4-bottleneck-2d" / "fig4.png").exists()
    assert (tmp_path / "fig4-bottleneck-2d" / "models" / "h1" / "model.safetensors").exists()


def test_thm4_reports_per_level_errors(tmp_path):
    """Short training: structure, and W2 W1 already nearer to W_K than to the full-rank W."""
    tiny = {"n_train": 300, "epochs": 150}
    record = run_experiment(get("thm4-sgd-linear"), out=tmp_path, overrides=tiny, progress=False)
    m = record["metrics"]
    assert len(m["rel_error"]) == len(m["levels"]) == 10
    assert all(e < f for e, f in zip(m["rel_error"], m["rel_distance_to_full_rank"]))
    assert record["claims"][0]["threshold"] == min(m["rel_distance_to_rank_k_plus_1"]) / 4
    assert (tmp_path / "thm4-sgd-linear" / "thm4.png").exists()
