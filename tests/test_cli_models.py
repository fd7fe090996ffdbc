"""The user's journey through the command line: train -> sample -> measure, fit, and their bad inputs.

Each command's output is checked against the Python API it wraps, from the same seed."""

from __future__ import annotations

import importlib.resources
import json

import numpy as np
import pytest
import torch

from archdiff import metrics
from archdiff.cli import main
from archdiff.data.images import load_images
from archdiff.denoisers import load
from archdiff.samplers import initial_noise, sample

UNET = ["--net-set", "base_channels=4", "--net-set", "num_blocks=1"]
DATA = ["--data", "digits", "--n-train", "16"]


def test_train_sample_measure_round_trip(tmp_path, capsys):
    """A network trained, sampled and measured by three commands gives what the API gives; a second train
    into the same folder with more epochs extends the run."""
    model, npz = tmp_path / "unet", tmp_path / "s.npz"
    assert main(["train", "unet", *DATA, *UNET, "--out", str(model), "--set", "epochs=2",
                 "--set", "steps=3", "--set", "lr=1e-3", "--quiet"]) == 0
    assert main(["sample", str(model), "--n", "6", "--steps", "3", "--seed", "4", "--out", str(npz),
                 "--quiet"]) == 0
    den = load(model)
    expected = sample(den, initial_noise(6, den.shape, 4), 3)
    with np.load(npz) as z:
        assert torch.equal(torch.from_numpy(z["samples"]), expected)
        assert json.loads(str(z["about"]))["seed"] == 4
    assert npz.with_suffix(".png").stat().st_size > 0

    report = tmp_path / "m.json"
    assert main(["measure", str(npz), "--train", "digits", "--n-train", "16", "--json", str(report)]) == 0
    measured = json.loads(report.read_text())
    train = load_images("digits", n=16)
    for k, v in metrics.measure(expected, train).items():
        assert measured[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k

    assert main(["train", "unet", *DATA, *UNET, "--out", str(model), "--set", "epochs=3",
                 "--set", "steps=3", "--set", "lr=1e-3", "--quiet"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert len((model / "losses.csv").read_text().splitlines()) == 1 + 3


def test_fit_then_sample_equals_the_fitted_model(tmp_path):
    """archdiff fit saves the fitted linear denoiser; sampling the folder equals sampling the fit."""
    from archdiff.denoisers import LinearDenoiser

    model, npz = tmp_path / "lin", tmp_path / "lin.npz"
    assert main(["fit", "linear", *DATA, "--out", str(model), "--set", "rank=5"]) == 0
    assert main(["sample", str(model), "--n", "5", "--steps", "4", "--out", str(npz), "--quiet"]) == 0
    fitted = LinearDenoiser.fit(load_images("digits", n=16), rank=5)
    with np.load(npz) as z:
        torch.testing.assert_close(torch.from_numpy(z["samples"]),
                                   sample(fitted, initial_noise(5, fitted.shape, 0), 4))


def test_fit_local_score_calibrated_on_a_saved_machine_finds_its_sizes(tmp_path, capsys):
    """Calibrated on a saved ELS machine of patch 3, the fitted machine is patch 3 at every level; with a
    fixed patch, sampling the folder equals sampling the machine."""
    from archdiff.denoisers import LocalScore

    data = load_images("digits", n=16, size=6)
    LocalScore(data, 3, padding="clipped").save(tmp_path / "truth")
    small = [*DATA, "--image-size", "6", "--set", "padding=clipped"]
    assert main(["fit", "local-score", *small, "--out", str(tmp_path / "cal"), "--set",
                 f"calibrate_on={tmp_path / 'truth'}", "--set", "patch_sizes=[1, 3, 5]",
                 "--set", "steps=3"]) == 0
    assert "noisy to clean: 3 3 3" in capsys.readouterr().out
    fitted = load(tmp_path / "cal")
    assert sorted(set(fitted.patch.values())) == [3] and len(fitted.patch) == 3

    npz = tmp_path / "els.npz"
    assert main(["fit", "local-score", *small, "--out", str(tmp_path / "p5"), "--set", "patch=5"]) == 0
    assert main(["sample", str(tmp_path / "p5"), "--n", "3", "--steps", "3", "--out", str(npz),
                 "--quiet"]) == 0
    with np.load(npz) as z:
        torch.testing.assert_close(torch.from_numpy(z["samples"]), sample(
            LocalScore(data, 5, padding="clipped"), initial_noise(3, data.shape[1:], 0), 3))


def test_fit_refuses_a_non_empty_folder_and_train_a_fitted_one(tmp_path, capsys):
    """fit into a training run's folder needs --force (which drops the run's checkpoint); train into a folder
    holding a fitted model is refused: no traceback, nothing the user had is lost without asking."""
    run = tmp_path / "unet"
    assert main(["train", "unet", *DATA, *UNET, "--out", str(run), "--set", "epochs=1", "--set", "steps=2",
                 "--quiet"]) == 0
    before = (run / "model.safetensors").read_bytes()
    assert main(["fit", "linear", *DATA, "--out", str(run)]) == 2
    assert "pass --force" in capsys.readouterr().err and (run / "model.safetensors").read_bytes() == before
    assert main(["fit", "linear", *DATA, "--out", str(run), "--force"]) == 0
    assert load(run).kind == "linear" and not (run / "checkpoint.safetensors").exists()
    assert main(["train", "unet", *DATA, *UNET, "--out", str(run), "--set", "epochs=1", "--quiet"]) == 2
    assert "holds a fitted 'linear' model" in capsys.readouterr().err


def test_an_unknown_network_argument_is_one_line_naming_the_arguments(tmp_path, capsys):
    assert main(["train", "unet", *DATA, "--net-set", "widht=8", "--out", str(tmp_path / "m")]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("archdiff: error:")]
    assert len(errors) == 1 and "widht" in errors[0] and "base_channels" in errors[0]


def test_sampling_at_levels_a_model_does_not_hold_is_warned(tmp_path, capsys):
    """A calibrated machine holds its calibration levels: sampled on that grid, no warning; on another,
    one warning line saying the nearest level is used. A model without fixed levels is never warned."""
    from archdiff.denoisers import EmpiricalOptimal, LocalScore
    from archdiff.schedule import sampling_levels

    data = load_images("digits", n=8, size=6)
    LocalScore(data, {a: 3 for a in sampling_levels("cosine", 3)[:-1].tolist()}).save(tmp_path / "els")
    EmpiricalOptimal(data).save(tmp_path / "mem")
    for model, steps, warned in (("els", 3, False), ("els", 5, True), ("mem", 5, False)):
        assert main(["sample", str(tmp_path / model), "--n", "2", "--steps", str(steps), "--quiet",
                     "--out", str(tmp_path / f"{model}{steps}.npz")]) == 0
        warnings = [ln for ln in capsys.readouterr().err.splitlines() if "archdiff: warning:" in ln]
        assert len(warnings) == warned and all("5 sampling levels" in w and "nearest" in w for w in warnings)


@pytest.mark.parametrize("argv, words", [
    (["train", "unet", *DATA, "--out", "{tmp}/m", "--set", "stepz=3"], ["stepz"]),
    (["train", "unet", *DATA, "--out", "{tmp}/m", "--set", "epochs=ten"], ["epochs", "int"]),
    (["train", "no_such_net", *DATA, "--out", "{tmp}/m"], ["no_such_net"]),
    (["train", "no_such_module:Net", *DATA, "--out", "{tmp}/m"], ["no_such_module"]),
    (["fit", "cubic", *DATA, "--out", "{tmp}/m"], ["cubic"]),
    (["fit", "local-score", *DATA, "--out", "{tmp}/m", "--set", "padding=reflect"], ["padding", "reflect"]),
    (["fit", "local-score", *DATA, "--out", "{tmp}/m", "--set", "patch=0"], ["patch", "0"]),
    (["fit", "local-score", *DATA, "--out", "{tmp}/m", "--set", "patch_sizes=[3, 0]"], ["patch_sizes"]),
    (["fit", "local-score", *DATA, "--out", "{tmp}/m", "--set", "calibrate_on={tmp}/none"], ["none"]),
    (["fit", "local-score", *DATA, "--out", "{tmp}/m", "--set", "patch_sizes=[]"], ["patch_sizes"]),
    (["fit", "local-score", *DATA, "--out", "{tmp}/m", "--set", "calibrate_on={tmp}", "--set", "patch=3"],
     ["patch", "calibrate_on", "not both"]),
    (["fit", "linear", *DATA, "--out", "{tmp}/m", "--set", "rank=-3"], ["rank", "-3"]),
    (["sample", "{tmp}/nothing", "--out", "{tmp}/s.npz"], ["nothing"]),
    (["sample", "{tmp}", "--out", "{tmp}/s.txt"], [".npz"]),
    (["measure", "{tmp}/none.npz", "--train", "digits"], ["none.npz", "does not exist"]),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    # one error line (old dependency versions may add their own deprecation warnings beside it)
    errors = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("archdiff: warning:")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), errors
    assert not (tmp_path / "m").exists()


def test_sample_keeps_an_existing_file_unless_forced(tmp_path):
    model, npz = tmp_path / "lin", tmp_path / "s.npz"
    main(["fit", "linear", *DATA, "--out", str(model)])
    npz.write_bytes(b"mine")
    assert main(["sample", str(model), "--n", "2", "--steps", "2", "--out", str(npz), "--quiet"]) == 2
    assert npz.read_bytes() == b"mine"
    assert main(["sample", str(model), "--n", "2", "--steps", "2", "--out", str(npz), "--quiet",
                 "--force"]) == 0


def test_sample_a_saved_diffusers_pipeline(tmp_path):
    """archdiff sample diffusers:FOLDER gives the samples of the adapted pipeline from the same noise."""
    diffusers = pytest.importorskip("diffusers")
    from archdiff.interop import load_diffusers

    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                     layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                     up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    diffusers.DDIMPipeline(unet=unet, scheduler=diffusers.DDIMScheduler()).save_pretrained(tmp_path / "pipe")
    npz = tmp_path / "theirs.npz"
    assert main(["sample", f"diffusers:{tmp_path / 'pipe'}", "--n", "3", "--steps", "4", "--out", str(npz),
                 "--quiet"]) == 0
    den = load_diffusers(tmp_path / "pipe")
    with np.load(npz) as z:
        # the command runs under the thread policy (1 thread): float32 sums may group differently here
        expected = sample(den, initial_noise(3, den.shape, 0), 4)
        torch.testing.assert_close(torch.from_numpy(z["samples"]), expected, rtol=1e-4, atol=1e-4)


def test_the_cli_relays_warnings_but_not_other_libraries_notices_about_their_api(capsys):
    """One line per warning; an installed library's deprecation / future notice is dropped, archdiff's and
    the user's own code's are not."""
    from archdiff import cli

    cli._one_line_warning("ours", UserWarning, cli.__file__, 1)
    cli._one_line_warning("ours, deprecated", DeprecationWarning, cli.__file__, 1)
    cli._one_line_warning("theirs, future", FutureWarning, "/venv/lib/site-packages/sklearn/base.py", 1)
    cli._one_line_warning("theirs, about the run", UserWarning, "/venv/lib/site-packages/torch/nn.py", 1)
    cli._one_line_warning("the user's, deprecated", DeprecationWarning, "/home/me/mynets.py", 1)
    cli._one_line_warning("stdlib's, deprecated", DeprecationWarning, importlib.resources.__file__, 1)
    assert capsys.readouterr().err.splitlines() == [
        "archdiff: warning: ours", "archdiff: warning: ours, deprecated",
        "archdiff: warning: theirs, about the run", "archdiff: warning: the user's, deprecated"]
