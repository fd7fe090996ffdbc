"""Bad input to the Python API: each case raises a ValueError / TypeError that names what was expected, and
no NaN leaves a denoiser, sampler or training run silently."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from archdiff.denoisers.base import Denoiser
from archdiff.denoisers.closed_form import EmpiricalOptimal, LinearDenoiser
from archdiff.denoisers.networks import NetSpec, register
from archdiff.denoisers.patch import PatchPolynomialDenoiser
from archdiff.denoisers.polynomial import MomentPolynomialDenoiser, PolynomialDenoiser
from archdiff.denoisers.saved import CONFIG_FILE, MODEL_FILE, load
from archdiff.denoisers.trained import PerLevelDenoiser, build_network
from archdiff.samplers import ddim, ddpm, initial_noise, sample
from archdiff.schedule import sampling_levels
from archdiff.training import CHECKPOINT_FILE, TrainConfig, train

D = 10
TINY_MLP = NetSpec("mlp2d", {"hidden": 8, "bottleneck": 1})
QUICK = TrainConfig(epochs=1, batch_size=8, steps=2)


def points(n: int = 32, d: int = D, seed: int = 0) -> torch.Tensor:
    """n anisotropic Gaussian points in d dimensions (float32)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.linspace(0.2, 1.5, d)


def images(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 1, 5, 5, generator=torch.Generator().manual_seed(1))


MODELS = {  # a fitted model of data [N, 10], by name
    "linear": lambda: LinearDenoiser.fit(points()),
    "memorizer": lambda: EmpiricalOptimal(points()),
    "polynomial": lambda: PolynomialDenoiser(points(), 2, width=16),
}
FITS = {  # how each kind is fitted from data: (fit, data shaped for it)
    "linear": LinearDenoiser.fit,
    "memorizer": EmpiricalOptimal,
    "polynomial": lambda x: PolynomialDenoiser(x, 2, width=16),
    "moment": lambda x: MomentPolynomialDenoiser.from_data(x, 1),
    "patch": lambda x: PatchPolynomialDenoiser(x.reshape(x.shape[0], 1, 2, x.shape[1] // 2), [(2, 8)]),
}


def with_value(data: torch.Tensor, value: float, index: tuple[int, int] = (3, 1)) -> torch.Tensor:
    out = data.clone()
    out[index] = value
    return out


# ------------------------------------------------------------------------------------- data at fit


@pytest.mark.parametrize("kind", FITS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_fit_refuses_data_with_nan_or_inf_naming_the_sample(kind, value):
    with pytest.raises(ValueError, match=r"NaN or inf \(first in sample 3 of 32\)"):
        FITS[kind](with_value(points(32, 4), value))


@pytest.mark.parametrize("kind", FITS)
def test_a_fit_refuses_empty_data(kind):
    with pytest.raises(ValueError, match=r"N >= 1 samples.*got shape \[0, "):
        FITS[kind](torch.zeros(0, 4))


@pytest.mark.parametrize("data, error, word", [
    (points().tolist(), TypeError, "torch.Tensor"),
    (points() > 0, TypeError, "torch.bool"),
    (points().to(torch.complex64), TypeError, "complex"),
    (torch.randn(8), ValueError, r"\[N, \*shape\].*\[8\]"),
])
def test_a_fit_refuses_data_of_the_wrong_type_or_rank(data, error, word):
    with pytest.raises(error, match=word):
        EmpiricalOptimal(data)


@pytest.mark.parametrize("data, word", [
    (torch.ones(8, 3), "no spread"),  # the authors' recipe divides its features by the data's SD
    (torch.randn(1, 3), "centred fit needs >= 2"),  # its centred fit divides by N - 1
])
def test_the_polynomial_refuses_data_its_recipe_cannot_fit(data, word):
    with pytest.raises(ValueError, match=word):
        PolynomialDenoiser(data, 2, width=8)


def test_the_polynomial_fits_such_data_when_the_recipe_can():
    for data in (torch.ones(8, 3), torch.randn(1, 3)):  # the truth the refusals above protect
        out = PolynomialDenoiser(data, 2, width=8, recipe="column")(torch.randn(4, 3), 0.5)
        assert torch.isfinite(out).all()


# ---------------------------------------------------------------------------------- noise levels


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("level", [math.nan, 0.0, -0.2, 1.5, math.inf])
def test_a_level_outside_0_1_is_refused(model, level):
    den = MODELS[model]()
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\]"):
        den(torch.randn(5, D), level)
    levels = torch.full((5,), 0.5, dtype=torch.float64)
    levels[2] = level  # one bad level among good ones
    with pytest.raises(ValueError, match=f"got {level}"):
        den(torch.randn(5, D), levels)


@pytest.mark.parametrize("level, error, word", [
    (torch.full((3,), 0.5), ValueError, r"expected \[\] or \[5\]"),
    ("0.5", TypeError, "float"),
    (torch.full((5,), 0.5, dtype=torch.complex64), TypeError, "complex"),
])
def test_a_level_of_the_wrong_shape_or_type_is_refused(level, error, word):
    with pytest.raises(error, match=word):
        MODELS["linear"]()(torch.randn(5, D), level)


def test_the_extreme_valid_levels_give_finite_output():
    den = MODELS["memorizer"]()
    for level in (1e-12, 1.0):  # the boundary the range check keeps
        assert torch.isfinite(den(torch.randn(5, D), level)).all()


# ---------------------------------------------------------------------------------- input shapes


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", [(5, 12), (10,), (5, 2, 5), (5, 10, 1)])
def test_a_denoiser_refuses_input_of_another_sample_shape_naming_both(model, shape):
    got = ", ".join(map(str, shape[1:]))
    with pytest.raises(ValueError, match=rf"takes \[B, 10\].*not \[{got}\]"):
        MODELS[model]()(torch.randn(shape), 0.5)


@pytest.mark.parametrize("x, error, word", [
    (torch.ones(5, D, dtype=torch.int64), TypeError, "floating-point"),
    (torch.randn(5, D).tolist(), TypeError, "torch.Tensor"),
    (torch.tensor(0.3), ValueError, "0-d"),
])
def test_a_denoiser_refuses_input_of_the_wrong_type(x, error, word):
    with pytest.raises(error, match=word):
        MODELS["linear"]()(x, 0.5)


def per_level_network(shape=(2,), levels=(0.3, 0.7)) -> PerLevelDenoiser:
    spec = NetSpec("mlp2d", {"dim": shape[0], "hidden": 16, "bottleneck": 2})
    nets = [build_network(spec, False, seed=i) for i in range(len(levels))]
    state = {k: torch.stack([n.state_dict()[k] for n in nets]) for k in nets[0].state_dict()}
    return PerLevelDenoiser(spec, torch.tensor(levels, dtype=torch.float64), state, shape)


def test_a_network_denoiser_refuses_another_sample_shape():
    net = per_level_network()
    assert net(torch.randn(4, 2), torch.tensor([0.3, 0.7, 0.3, 0.5])).shape == (4, 2)  # [B] levels are fine
    with pytest.raises(ValueError, match=r"takes \[B, 2\]"):
        net(torch.randn(4, 3), 0.5)


def test_per_level_weights_must_be_stacked_one_per_level():
    net = per_level_network()
    with pytest.raises(ValueError, match=r"stacked \[L = 3"):
        PerLevelDenoiser(net.spec, torch.tensor([0.2, 0.5, 0.8]), net.state, (2,))


# ---------------------------------------------------------------------------------------- sampler


def sampler_levels() -> torch.Tensor:
    return sampling_levels("cosine", 5)


def bad_levels() -> dict[str, tuple[torch.Tensor, str]]:
    good = sampler_levels()
    nan = good.clone()
    nan[2] = math.nan
    zero = good.clone()
    zero[0] = 0.0
    clean_early = good.clone()
    clean_early[-2] = 1.0
    return {
        "nan": (nan, r"\(0, 1\].*nan at position 2"),
        "zero": (zero, r"\(0, 1\]"),
        "reversed": (good.flip(0), "noisiest first"),
        "clean-before-last": (clean_early, "only the last level may be 1"),
        "one-level": (good[:1], ">= 2 levels"),
        "two-d": (good[None], "1-D"),
    }


@pytest.mark.parametrize("case", list(bad_levels()))
def test_the_sampler_refuses_levels_it_cannot_run(case):
    levels, word = bad_levels()[case]
    with pytest.raises(ValueError, match=word):
        ddim(MODELS["linear"](), initial_noise(4, (D,), 0), levels)


def test_the_sampler_runs_repeated_levels_and_a_last_level_below_1():
    levels = torch.cat([sampler_levels()[:-1], torch.tensor([0.999, 0.999])])  # as diffusers' final level
    assert torch.isfinite(ddim(MODELS["linear"](), initial_noise(4, (D,), 0), levels)).all()


@pytest.mark.parametrize("kwargs, word", [
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"batch_size": -3}, "batch_size must be an int >= 1"),
    ({"batch_size": 2.5}, "batch_size must be an int >= 1"),
    ({"eta": 1.5, "generator": torch.Generator()}, r"eta must lie in \[0, 1\]"),
    ({"eta": math.nan, "generator": torch.Generator()}, r"eta must lie in \[0, 1\]"),
    ({"eta": 0.5}, "needs an explicit torch.Generator"),
])
def test_the_sampler_refuses_bad_settings(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ddim(MODELS["linear"](), initial_noise(4, (D,), 0), sampler_levels(), **kwargs)


@pytest.mark.parametrize("x_T, error, word", [
    (with_value(initial_noise(4, (D,), 0), math.nan, (1, 2)), ValueError, "x_T contains NaN or inf"),
    (torch.ones(4, D, dtype=torch.int32), TypeError, "x_T must be a floating-point"),
    (initial_noise(4, (D + 2,), 0), ValueError, r"takes \[B, 10\]"),  # the denoiser's own check
])
def test_the_sampler_refuses_bad_initial_noise(x_T, error, word):
    with pytest.raises(error, match=word):
        ddim(MODELS["linear"](), x_T, sampler_levels())


@pytest.mark.parametrize("call, word", [
    (lambda: initial_noise(0, (D,), 0), "n >= 1"),
    (lambda: initial_noise(4, (D, 0), 0), r"shape \[10, 0\]"),
    (lambda: sample(MODELS["linear"](), initial_noise(4, (D,), 0), 5, sampler="euler"), "ddim, ddpm"),
])
def test_noise_and_sampler_names_are_checked(call, word):
    with pytest.raises(ValueError, match=word):
        call()


class Exploding(Denoiser):
    """A broken model: finite input, its output overflows to inf (then NaN) at the lowest noise level."""

    shape = (D,)

    def denoise(self, x, alpha_bar):
        return torch.where(alpha_bar[:, None] > 0.5, x * 1e30, x)


def test_a_nan_made_while_sampling_raises_after_the_last_step():
    x_T, levels = initial_noise(4, (D,), 0), sampler_levels()
    with pytest.raises(ValueError, match="produced NaN or inf in 4 of 4 samples.*Exploding"):
        ddim(Exploding(), x_T, levels)
    raw = ddim(Exploding(), x_T, levels, check_finite=False)  # asked for: the raw, diverged samples
    assert not torch.isfinite(raw).any()


# ------------------------------------------------------------------- batch_size: what holds exactly


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


@pytest.mark.parametrize("model", MODELS)
def test_batch_size_changes_closed_form_samples_by_float64_rounding_at_most(model):
    den, x_T, levels = MODELS[model](), initial_noise(12, (D,), 1).double(), sampling_levels("cosine", 8)
    ref = ddpm(den, x_T, levels, generator=torch.Generator().manual_seed(3))
    for b in (1, 5):  # the noise does not follow the chunks: only rounding may differ
        chunked = ddpm(den, x_T, levels, generator=torch.Generator().manual_seed(3), batch_size=b)
        assert rel_diff(ref, chunked) < 1e-11
    assert rel_diff(ref, ddpm(den, x_T, levels, generator=torch.Generator().manual_seed(4))) > 1e-3


def test_batch_size_changes_network_samples_by_float32_rounding_at_most():
    levels = sampling_levels("cosine", 8)
    spec = NetSpec("mlp2d", {"dim": D, "hidden": 64, "bottleneck": 4})
    nets = [build_network(spec, False, seed=i) for i in range(levels.numel() - 1)]
    state = {k: torch.stack([n.state_dict()[k] for n in nets]) for k in nets[0].state_dict()}
    den, x_T = PerLevelDenoiser(spec, levels[:-1], state, (D,)), initial_noise(24, (D,), 1)
    ref = ddpm(den, x_T, levels, generator=torch.Generator().manual_seed(3))
    for b in (1, 5, 16):
        chunked = ddpm(den, x_T, levels, generator=torch.Generator().manual_seed(3), batch_size=b)
        assert rel_diff(ref, chunked) < 1e-4
    assert rel_diff(ref, ddpm(den, x_T, levels, generator=torch.Generator().manual_seed(4))) > 1e-2


# -------------------------------------------------------------------------------------- training


@register("test-wrong-output-mlp")
class WrongOutput(nn.Module):
    """Returns one number per sample instead of x0_hat [B, D]: the loss would broadcast silently."""

    def __init__(self, dim: int = 2, level_input: bool = False):
        super().__init__()
        self.lin = nn.Linear(dim, 1)

    def forward(self, x, level=None):
        return self.lin(x)


def assert_no_model(folder) -> None:
    assert not (folder / MODEL_FILE).exists()


@pytest.mark.parametrize("data, word", [
    (torch.zeros(0, 2), r"N >= 1 samples.*\[0, 2\]"),
    (with_value(points(16, 2), math.nan), r"NaN or inf \(first in sample 3 of 16\)"),
    (with_value(points(16, 2), math.inf), r"NaN or inf \(first in sample 3 of 16\)"),
    (torch.randn(16), r"\[N, \*shape\]"),
])
def test_training_refuses_bad_data_before_writing_anything(tmp_path, data, word):
    with pytest.raises(ValueError, match=word):
        train(TINY_MLP, data, QUICK, out=tmp_path / "model", progress=False)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("spec, conditioning, word", [
    (TINY_MLP, "per-level", r"'mlp2d' cannot take samples of shape \[3\].*RuntimeError"),
    (TINY_MLP, "time", r"'mlp2d' cannot take samples of shape \[3\]"),
    (NetSpec("test-wrong-output-mlp", {"dim": 3}), "per-level", r"returned \[1\] for a sample of shape \[3"),
])
def test_training_refuses_a_network_that_does_not_fit_the_data(tmp_path, spec, conditioning, word):
    config = TrainConfig(epochs=1, batch_size=8, steps=2, conditioning=conditioning)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ValueError, match=word):
        warnings.simplefilter("always")
        train(spec, points(16, 3), config, out=tmp_path / "model", progress=False)
    assert not [w for w in caught if "vmap" in str(w.message)]  # refused before the vmap probe
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("changes, word", [
    ({"lr": math.nan}, "lr must be a finite number > 0"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"levels": [0.5, 0.0]}, r"levels must lie in \(0, 1\]"),
    ({"levels": [0.5, math.nan]}, r"levels must lie in \(0, 1\]"),
    ({"levels": [0.5, 0.5]}, "repeat a level"),
    ({"levels": []}, "non-empty"),
    ({"steps": 0}, "must be >= 1"),
    ({"schedule": "quadratic"}, "cosine, linear"),
])
def test_training_refuses_bad_settings(tmp_path, changes, word):
    config = TrainConfig(**{**QUICK.__dict__, **changes})
    with pytest.raises(ValueError, match=word):
        train(TINY_MLP, points(16, 2), config, out=tmp_path / "model", progress=False)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("net, config, word", [
    ("mlp2d", QUICK, "NetSpec or an nn.Module class"),
    (TINY_MLP, {"epochs": 1}, "TrainConfig"),
])
def test_training_refuses_arguments_of_the_wrong_type(net, config, word):
    with pytest.raises(TypeError, match=word):
        train(net, points(16, 2), config, progress=False)


@pytest.mark.parametrize("conditioning", ["per-level", "time"])
def test_an_exploding_run_stops_naming_the_epoch_and_saves_no_model(tmp_path, conditioning):
    config = TrainConfig(epochs=3, batch_size=8, steps=2, lr=1e20, optimizer="sgd", conditioning=conditioning,
                         checkpoint_every=1)
    with pytest.raises(ValueError, match="training diverged: the loss of epoch 1 is NaN or inf"):
        train(TINY_MLP, points(16, 2), config, out=tmp_path / "model", progress=False)
    assert_no_model(tmp_path / "model")
    assert not (tmp_path / "model" / CHECKPOINT_FILE).exists()  # the diverged epoch was not saved


def test_a_sane_run_still_trains_and_saves(tmp_path):
    result = train(TINY_MLP, points(16, 2), QUICK, out=tmp_path / "model", progress=False)
    assert torch.isfinite(result.losses).all() and (tmp_path / "model" / MODEL_FILE).exists()


# ------------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("keep", [0, 8, 100, -10])
def test_a_truncated_model_file_is_named_and_called_damaged(tmp_path, keep):
    folder = MODELS["linear"]().save(tmp_path / "model")
    file = folder / MODEL_FILE
    file.write_bytes(file.read_bytes()[:keep])
    with pytest.raises(ValueError, match=rf"{MODEL_FILE} is damaged.*re-train or re-save"):
        load(folder)


def test_a_damaged_config_is_named(tmp_path):
    folder = MODELS["linear"]().save(tmp_path / "model")
    (folder / CONFIG_FILE).write_text('{"kind": "lin')
    with pytest.raises(ValueError, match=rf"{CONFIG_FILE} is damaged"):
        load(folder)


def test_resuming_from_a_truncated_checkpoint_names_it(tmp_path):
    out = tmp_path / "model"
    config = TrainConfig(epochs=2, batch_size=8, steps=2, checkpoint_every=1)
    train(TINY_MLP, points(16, 2), config, out=out, progress=False)
    ckpt = out / CHECKPOINT_FILE
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(ValueError, match=rf"{CHECKPOINT_FILE} is damaged"):
        train(TINY_MLP, points(16, 2), TrainConfig(**{**config.__dict__, "epochs": 3}), out=out, resume=True,
              progress=False)
