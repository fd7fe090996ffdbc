"""Training engine: trained linear nets reach the closed forms, batched == separate, resume, save/load."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from archdiff.denoisers import LinearDenoiser
from archdiff.denoisers.networks import NetSpec, append_level, register
from archdiff.denoisers.trained import PerLevelDenoiser, TimeConditionedDenoiser, load
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels
from archdiff.training import TrainConfig, train

TINY_MLP = NetSpec("mlp2d", {"hidden": 16, "bottleneck": 1})


@register("test-bn-mlp")
class BatchNormMLP(nn.Module):
    """A vector MLP with BatchNorm1d: checks that BN buffers train the same under vmap."""

    def __init__(self, dim: int = 2, hidden: int = 8, level_input: bool = False):
        super().__init__()
        self.level_input = level_input
        # no bias before BN: its gradient is mathematically 0 and Adam would amplify round-off into steps
        self.body = nn.Sequential(nn.Linear(dim + level_input, hidden, bias=False), nn.BatchNorm1d(hidden),
                                  nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x, level=None):
        return self.body(append_level(x, level) if self.level_input else x)


@register("test-branchy-mlp")
class BranchyMLP(nn.Module):
    """Data-dependent Python control flow: vmap cannot run it, so the trainer must fall back to a loop."""

    def __init__(self, dim: int = 2, level_input: bool = False):
        super().__init__()
        self.lin = nn.Linear(dim, dim)

    def forward(self, x, level=None):
        return self.lin(x) if bool(x.sum() > -1e9) else x


def gaussian(n: int, eigvals: list[float], seed: int = 0) -> torch.Tensor:
    """n points of N(mu, Q diag(eigvals) Q^T) in D = len(eigvals) dimensions, a fixed rotation Q."""
    g = torch.Generator().manual_seed(seed)
    d = len(eigvals)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    sd = torch.tensor(eigvals, dtype=torch.float64).sqrt()
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * sd
    return (z @ q.T + 0.5).float()


def trained_operator(result, index: int = 0) -> torch.Tensor:
    """W2 W1 of a per-level linear bottleneck: [D, D]."""
    s = result.denoiser.network_state(index)
    return (s["w2.weight"] @ s["w1.weight"]).double()


def test_per_level_linear_net_reaches_wiener_filter():
    """A full-rank linear net trained on one level of Gaussian data equals that level's Wiener filter."""
    data = gaussian(512, [2.0, 1.0, 0.3])
    a = 0.4
    cfg = TrainConfig(epochs=150, batch_size=128, lr=3e-2, lr_schedule="cosine", levels=[a], antithetic=True)
    result = train(NetSpec("linear-bottleneck", {"dim": 3, "rank": 3}), data, cfg, progress=False)
    wiener = LinearDenoiser.fit(data)
    # What SGD keeps is statistical: with antithetic pairs the gradient noise is W (n n^T - I), whose
    # relative size over the ~1e4 draws the decayed lr averages is ~sqrt(D / 1e4) ~ 1 %; allow 3x that.
    w, w_ref = trained_operator(result), wiener.operator(a)
    assert torch.linalg.norm(w - w_ref) / torch.linalg.norm(w_ref) < 0.03
    y = torch.randn(64, 3)
    out, ref = result.denoiser(y, a), wiener(y, a)
    assert (out - ref).norm() / ref.norm() < 0.03


def test_sgd_linear_bottleneck_reaches_rank_k_operator():
    """Theorem 4: the trained W2 W1 (rank K) is the rank-K Wiener operator, not rank K +- 1."""
    data = gaussian(1024, [3.0, 2.0, 0.4, 0.2, 0.1])
    levels = [0.2, 0.7]
    k = 2
    cfg = TrainConfig(epochs=120, batch_size=256, lr=3e-2, lr_schedule="cosine", levels=levels,
                      antithetic=True)
    result = train(NetSpec("linear-bottleneck", {"dim": 5, "rank": k}), data, cfg, progress=False)
    for i, a in enumerate(levels):
        w = trained_operator(result, i)
        ops = {r: LinearDenoiser.fit(data, rank=r).operator(a) for r in (k - 1, k, k + 1)}
        err = torch.linalg.norm(w - ops[k])
        nearest_other = min(torch.linalg.norm(w - ops[k - 1]), torch.linalg.norm(w - ops[k + 1]))
        assert err < nearest_other / 4  # identified as W_K: 4x closer than the neighbouring ranks


@pytest.mark.parametrize("spec", [TINY_MLP, NetSpec("test-bn-mlp", {})], ids=["mlp", "batchnorm"])
def test_batched_levels_equal_separate_training(spec):
    """Training L levels in one vmapped computation gives each level the weights it gets alone."""
    data = torch.randn(96, 2)
    levels = [0.1, 0.5, 0.9]
    base = TrainConfig(epochs=3, batch_size=32, lr=1e-2, engine="batched")
    together = train(spec, data, TrainConfig(**{**base.__dict__, "levels": levels}), progress=False)
    assert together.denoiser.batched
    for i, a in enumerate(levels):
        alone = train(spec, data, TrainConfig(**{**base.__dict__, "levels": [a], "engine": "loop"}),
                      progress=False)
        for key, value in alone.denoiser.network_state(0).items():
            torch.testing.assert_close(together.denoiser.network_state(i)[key], value, atol=1e-5, rtol=1e-4)


def test_unbatchable_network_falls_back_to_loop():
    """A network vmap cannot run still trains (engine 'auto' picks the loop, with a warning)."""
    with pytest.warns(UserWarning, match="vmap"):
        result = train(NetSpec("test-branchy-mlp", {}), torch.randn(32, 2),
                       TrainConfig(epochs=1, batch_size=16, levels=[0.3, 0.6]), progress=False)
    assert not result.denoiser.batched
    assert torch.isfinite(result.losses).all()


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("conditioning", ["per-level", "time"])
def test_resume_is_bit_identical(tmp_path, conditioning):
    """Interrupt after 2 of 4 epochs, resume from the checkpoint: same weights and losses, bit for bit."""
    data = torch.randn(80, 2)
    cfg = TrainConfig(epochs=4, batch_size=16, lr=1e-2, levels=[0.2, 0.8], conditioning=conditioning,
                      checkpoint_every=1, lr_schedule="cosine")
    full = train(TINY_MLP, data, cfg, out=tmp_path / "full", progress=False)

    def stop(epoch, _):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(TINY_MLP, data, cfg, out=tmp_path / "cut", progress=False, callback=stop)
    resumed = train(TINY_MLP, data, cfg, out=tmp_path / "cut", resume=True, progress=False)
    assert torch.equal(full.losses, resumed.losses)
    a, b = load(tmp_path / "full"), load(tmp_path / "cut")
    net_a = a.state if conditioning == "per-level" else a.net.state_dict()
    net_b = b.state if conditioning == "per-level" else b.net.state_dict()
    assert all(torch.equal(net_a[k], net_b[k]) for k in net_a)


def test_resume_refuses_a_different_config(tmp_path):
    data = torch.randn(32, 2)
    cfg = TrainConfig(epochs=1, batch_size=16, levels=[0.5])
    train(TINY_MLP, data, cfg, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="differs"):
        train(TINY_MLP, data, TrainConfig(epochs=1, batch_size=16, levels=[0.6]), out=tmp_path, resume=True,
              progress=False)


@pytest.mark.parametrize("conditioning", ["per-level", "time"])
def test_save_load_round_trip_and_denoiser_contract(tmp_path, conditioning):
    """load(folder) gives the same outputs; both trained denoisers honour the Denoiser contract."""
    data = torch.randn(64, 2)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, steps=5, conditioning=conditioning)
    result = train(NetSpec("test-bn-mlp", {}), data, cfg, out=tmp_path / "m", progress=False)
    kind = PerLevelDenoiser if conditioning == "per-level" else TimeConditionedDenoiser
    loaded = load(tmp_path / "m")
    resaved = load(result.denoiser.save(tmp_path / "again"))
    assert isinstance(loaded, kind)
    levels = sampling_levels("cosine", 5)[:-1]
    x = torch.randn(len(levels), 2)
    out = result.denoiser(x, levels)
    assert torch.equal(out, loaded(x, levels)) and torch.equal(out, resaved(x, levels))
    # one schema: the trainer's folder and a re-save of the loaded model hold the same config and weights
    written, again = (json.loads((tmp_path / f / "config.json").read_text()) for f in ("m", "again"))
    assert written == again and written["data"]["n"] == 64 and written["train"]["seed"] == cfg.seed
    assert load_file(str(tmp_path / "m" / "model.safetensors")).keys() == \
        load_file(str(tmp_path / "again" / "model.safetensors")).keys()
    # contract: shape and dtype kept, float level == [B] level, a mixed batch == row by row, no grad
    assert out.shape == x.shape and out.dtype == x.dtype and not out.requires_grad
    assert result.denoiser(x.double(), levels).dtype == torch.float64
    torch.testing.assert_close(result.denoiser(x, 0.3), result.denoiser(x, torch.full((len(x),), 0.3)))
    rows = torch.cat([result.denoiser(x[i : i + 1], levels[i]) for i in range(len(x))])
    torch.testing.assert_close(out, rows)
    samples = ddim(loaded, initial_noise(16, (2,), seed=0), levels)
    assert samples.shape == (16, 2) and torch.isfinite(samples).all()


def test_network_operator_equals_the_stacked_weights():
    """PerLevelDenoiser.network(i) is level i's module: its W2 W1 is the product of its stacked weights."""
    x = gaussian(200, [3.0, 1.0, 0.5, 0.1])
    cfg = TrainConfig(epochs=2, batch_size=50, lr=1e-2, levels=[0.2, 0.7])
    result = train(NetSpec("linear-bottleneck", {"dim": 4, "rank": 2}), x, cfg, progress=False)
    for i in range(2):
        with torch.no_grad():
            operator = result.denoiser.network(i).operator().double()
        torch.testing.assert_close(operator, trained_operator(result, i))


def test_per_level_denoiser_uses_the_nearest_level():
    data = torch.randn(32, 2)
    result = train(TINY_MLP, data, TrainConfig(epochs=1, batch_size=16, levels=[0.1, 0.5]), progress=False)
    d = result.denoiser
    x = torch.randn(4, 2)
    assert torch.equal(d(x, 0.26), d(x, 0.1)) and torch.equal(d(x, 0.34), d(x, 0.5))
    assert not torch.equal(d(x, 0.1), d(x, 0.5))


@pytest.mark.gpu
def test_cuda_mixed_precision_training():
    """On CUDA (bf16/fp16 autocast) training runs, and the denoiser answers CPU inputs on the CPU."""
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-2, steps=5)
    result = train(NetSpec("test-bn-mlp", {}), torch.randn(256, 2), cfg, device="cuda", progress=False)
    assert torch.isfinite(result.losses).all()
    x = torch.randn(10, 2)
    out = result.denoiser(x, sampling_levels("cosine", 5)[:-1].repeat(2))  # 10 rows, 5 levels mixed
    assert out.device == x.device and out.shape == x.shape and torch.isfinite(out).all()


def test_a_finished_run_extends_to_more_epochs(tmp_path):
    """Resuming a finished constant-rate run with more epochs equals training that many from the start; a
    cosine rate (fixed by the run's length) or fewer epochs than done is refused."""
    data = torch.randn(48, 2)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, levels=[0.3, 0.7])
    train(TINY_MLP, data, cfg, out=tmp_path / "run", progress=False)
    longer = TrainConfig(**{**cfg.__dict__, "epochs": 4})
    extended = train(TINY_MLP, data, longer, out=tmp_path / "run", resume=True, progress=False)
    direct = train(TINY_MLP, data, longer, progress=False)
    assert torch.equal(extended.losses, direct.losses)
    assert all(torch.equal(v, direct.denoiser.state[k]) for k, v in load(tmp_path / "run").state.items())
    with pytest.raises(ValueError, match="holds 4 epochs"):
        train(TINY_MLP, data, cfg, out=tmp_path / "run", resume=True, progress=False)
    cosine = TrainConfig(**{**cfg.__dict__, "lr_schedule": "cosine"})
    train(TINY_MLP, data, cosine, out=tmp_path / "cos", progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train(TINY_MLP, data, TrainConfig(**{**cosine.__dict__, "epochs": 3}), out=tmp_path / "cos",
              resume=True, progress=False)


TINY_UNET = NetSpec("unet", {"in_channels": 1, "base_channels": 4, "num_blocks": 1, "norm": "batch",
                             "bias": False})


@pytest.mark.parametrize("conditioning", ["per-level", "time"])
def test_channels_last_trains_the_same_networks(conditioning):
    """Channels-last memory order changes only the layout: the same losses and weights up to float
    rounding (the loop engine and the time-conditioned network hold ordinary 4-D modules)."""
    data = torch.randn(16, 1, 8, 8)
    base = dict(epochs=2, batch_size=8, lr=1e-3, levels=[0.4, 0.8], conditioning=conditioning, engine="loop")
    plain = train(TINY_UNET, data, TrainConfig(**base), progress=False)
    last = train(TINY_UNET, data, TrainConfig(**base, channels_last=True), progress=False)
    torch.testing.assert_close(last.losses, plain.losses, rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="channels_last"):
        train(TINY_MLP, torch.randn(8, 2), TrainConfig(epochs=1, levels=[0.5], channels_last=True),
              progress=False)


@pytest.mark.slow
def test_compiled_forward_trains_the_same_networks():
    """torch.compile of the batched engine's vmapped forward gives the eager losses up to float rounding."""
    data = torch.randn(32, 2)
    base = dict(epochs=2, batch_size=16, lr=1e-2, levels=[0.3, 0.7], engine="batched")
    eager = train(TINY_MLP, data, TrainConfig(**base), progress=False)
    compiled = train(TINY_MLP, data, TrainConfig(**base, compile="default"), progress=False)
    torch.testing.assert_close(compiled.losses, eager.losses, rtol=1e-4, atol=0)


@pytest.mark.gpu
def test_cuda_step_loop_never_waits_on_the_host():
    """An epoch on CUDA (bf16, data on the device) runs with synchronizing calls made errors."""
    from archdiff.training import _Run

    run = _Run(TINY_UNET, torch.randn(64, 1, 8, 8), TrainConfig(batch_size=16, steps=5), torch.device("cuda"))
    run.epoch(0)  # warm-up: lazy initialisation may synchronize once
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = run.epoch(1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(losses.cpu()).all()


class PlainNet(nn.Module):
    """A user's plain module, never registered: trained by its class, saved as module:Class."""

    def __init__(self, dim: int = 2, level_input: bool = False):
        super().__init__()
        self.level_input = level_input
        self.lin = nn.Linear(dim + level_input, dim)

    def forward(self, x, level=None):
        return self.lin(append_level(x, level) if self.level_input else x)


@pytest.mark.parametrize("conditioning", ["per-level", "time"])
def test_a_plain_module_class_trains_saves_and_reloads(tmp_path, conditioning):
    """train() takes an nn.Module class as well as a NetSpec; the saved folder names it module:Class and
    reloads to the same outputs."""
    data = torch.randn(32, 2)
    cfg = TrainConfig(epochs=2, batch_size=16, levels=[0.3, 0.7], conditioning=conditioning)
    result = train(PlainNet, data, cfg, out=tmp_path, progress=False)
    assert result.denoiser.spec == NetSpec.of(PlainNet) == NetSpec(f"{__name__}:PlainNet")
    x = torch.randn(4, 2)
    assert torch.equal(load(tmp_path)(x, 0.3), result.denoiser(x, 0.3))
