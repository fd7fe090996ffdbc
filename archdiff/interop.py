"""Interoperability: archdiff denoisers with diffusers models and schedulers, and k-diffusion's convention.

Naming: ``XDenoiser`` wraps a model of library X as an archdiff ``Denoiser``; ``XModel`` wraps an archdiff
denoiser as a model that library X can call.

Notation:
    x_0        clean sample; n ~ N(0, I)
    a          alpha_bar, archdiff's noise level (variance preserving, VP):
                   x_VP = sqrt(a) x_0 + sqrt(1 - a) n
    sigma      k-diffusion's noise level (variance exploding, VE; Karras et al. 2022, Table 1, where
               VP is s(t) = 1 / sqrt(1 + sigma(t)^2) and x = s(t) x_VE):
                   x_VE = x_0 + sigma n,   x_VE = x_VP / sqrt(a),
                   a = 1 / (1 + sigma^2),  sigma = sqrt((1 - a) / a)
               Both write the same x_0 and n, so a denoiser's output (an estimate of x_0) is the same
               in either coordinate system; only its input is rescaled.
    t          diffusers' discrete timestep 0 .. T-1; its level is a_t = scheduler.alphas_cumprod[t]
    eps        the noise n, estimated as eps_hat = (x - sqrt(a) x0_hat) / sqrt(1 - a) (Ho et al. 2020)
    v          v = sqrt(a) n - sqrt(1 - a) x_0, so x_0 = sqrt(a) x - sqrt(1 - a) v
               (Salimans & Ho 2022, Sec. 4 and App. D)

diffusers' timesteps and archdiff's levels (``DiffusersDenoiser``): a requested level a goes to the
timestep t(a) = argmin_t |alphas_cumprod[t] - a| (the nearest level; a tie goes to the smaller t); levels
above alphas_cumprod[0] give t = 0 and levels below alphas_cumprod[T-1] give t = T-1. The model's output
is turned into x0_hat with the *requested* a, never a_t. On the timesteps' own levels (a = a_t, e.g.
``scheduler_levels``) the two agree, so archdiff's ``ddim`` performs diffusers' DDIM step exactly; between
timesteps the model answers as at the nearest timestep and its answer is read at the true noise level
(at a = 1 an epsilon or v model then returns x_t itself, the exact answer). diffusers keeps alphas_cumprod
in float32 and takes their square roots in float32, archdiff in float64: the two loops agree to float32
rounding of those coefficients, or to float64 rounding when the scheduler holds alphas_cumprod in float64.

The reverse (``DiffusersModel``) reads a timestep's level from the same alphas_cumprod; a fractional
timestep (Karras-sigma schedulers) is interpolated linearly in log sigma between its two neighbours, the
inverse of diffusers' own sigma-to-timestep interpolation. DDIM is Euler's method on the probability-flow
ODE dx_VE / dsigma = eps in VE coordinates (Song et al. 2021, DDIM, eq. 14-15), so k-diffusion's
``sample_euler`` on ``KDiffusionModel(denoiser)`` is archdiff's ``ddim`` on the levels 1 / (1 + sigma^2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from archdiff.denoisers.base import Denoiser, levels_of
from archdiff.errors import UserError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


# ------------------------------------------------------------------------------------ conversions


def check_prediction_type(name: str) -> str:
    """Return ``name`` if it is a known prediction type, else raise a ValueError naming the allowed ones."""
    if name not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction_type {name!r}: choose one of {', '.join(PREDICTION_TYPES)}")
    return name


def _scales(alpha_bar: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(a) and sqrt(1 - a) as float64 [B, 1, ...], broadcasting over x's trailing dimensions."""
    a = levels_of(alpha_bar, x).reshape(-1, *([1] * (x.ndim - 1)))
    return a.sqrt(), (1 - a).sqrt()


def x0_from_output(output: torch.Tensor, x: torch.Tensor, alpha_bar, prediction_type: str) -> torch.Tensor:
    """x0_hat (float64) from a model's output at noisy input x (VP) and level alpha_bar."""
    s, r = _scales(alpha_bar, x)
    out, x = output.double(), x.double()
    kind = check_prediction_type(prediction_type)
    if kind == "epsilon":
        return (x - r * out) / s
    if kind == "v_prediction":
        return s * x - r * out
    return out


def output_from_x0(x0: torch.Tensor, x: torch.Tensor, alpha_bar, prediction_type: str) -> torch.Tensor:
    """The model output (float64) of a prediction type that corresponds to x0_hat at x (VP), alpha_bar."""
    s, r = _scales(alpha_bar, x)
    x0, x = x0.double(), x.double()
    kind = check_prediction_type(prediction_type)
    if kind == "sample":
        return x0
    eps = (x - s * x0) / r
    return eps if kind == "epsilon" else s * eps - r * x0


def sigma_of(alpha_bar: torch.Tensor) -> torch.Tensor:
    """VE noise level of a VP level: sigma = sqrt((1 - a) / a)."""
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def alpha_bar_of(sigma: torch.Tensor) -> torch.Tensor:
    """VP level of a VE noise level: a = 1 / (1 + sigma^2)."""
    return 1 / (1 + sigma**2)


def _per_sample(value, x: torch.Tensor) -> torch.Tensor:
    """A scalar or per-sample value as float64 [B] on x's device."""
    v = torch.as_tensor(value, dtype=torch.float64, device=x.device).reshape(-1)
    return v.expand(x.shape[0]) if v.numel() == 1 else v


def _unconditional(args: tuple, kwargs: dict) -> None:
    extra = [v for v in (*args, *kwargs.values()) if v is not None]
    if extra:
        raise TypeError("archdiff denoisers are unconditional: got conditioning arguments they cannot use")


# ------------------------------------------------------------------------------- diffusers' levels


def _alphas_cumprod(scheduler) -> torch.Tensor:
    return torch.as_tensor(scheduler.alphas_cumprod).detach().to("cpu", torch.float64)


def scheduler_levels(scheduler) -> torch.Tensor:
    """The levels (float64, noisiest first) a scheduler's loop visits: a_t at each of its timesteps, then
    its final level (``final_alpha_cumprod``, else 1.0); for a scheduler that steps in k-diffusion's sigmas
    (Euler and the like), 1 / (1 + sigma^2) of each. Call ``scheduler.set_timesteps`` first.

    For DDIMScheduler, archdiff's ``ddim`` on these levels is its loop when consecutive timesteps are
    T // steps apart (the "leading" spacing, and "trailing" when steps divides T) and the scheduler
    neither clips nor thresholds x0_hat; for EulerDiscreteScheduler (no churn), it is its loop.
    """
    if getattr(scheduler, "num_inference_steps", None) is None:
        raise ValueError("call scheduler.set_timesteps(steps) before asking for its levels")
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None:
        return alpha_bar_of(torch.as_tensor(sigmas).detach().to("cpu", torch.float64))
    final = torch.tensor([float(getattr(scheduler, "final_alpha_cumprod", 1.0))], dtype=torch.float64)
    return torch.cat([timestep_levels(_alphas_cumprod(scheduler), scheduler.timesteps), final])


def nearest_timesteps(alphas_cumprod: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The timestep t (int64) with alphas_cumprod[t] nearest each level; ties go to the smaller t."""
    ac = alphas_cumprod.to("cpu", torch.float64)
    unique, inverse = torch.unique(alpha_bar.to("cpu", torch.float64), return_inverse=True)
    nearest = (ac[None, :] - unique[:, None]).abs().argmin(dim=1)
    return nearest[inverse]


def timestep_levels(alphas_cumprod: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """alpha_bar (float64) of timesteps; a fractional one interpolates log sigma between its neighbours."""
    ac = alphas_cumprod.to("cpu", torch.float64)
    t = torch.as_tensor(timestep).detach().to("cpu", torch.float64).reshape(-1)
    if bool(((t < 0) | (t > ac.numel() - 1)).any()):
        raise ValueError(f"timesteps must lie in [0, {ac.numel() - 1}], got {t.tolist()}")
    low = t.floor().long()
    high = (low + 1).clamp(max=ac.numel() - 1)
    w = t - low
    log_sigma = (1 - w) * sigma_of(ac[low]).log() + w * sigma_of(ac[high]).log()
    return torch.where(w == 0, ac[low], alpha_bar_of(log_sigma.exp()))


# ----------------------------------------------------------------------- diffusers -> archdiff


def _model_output(result) -> torch.Tensor:
    """The tensor of a model's answer: its ``.sample``, the first item of a tuple, or the tensor itself."""
    if hasattr(result, "sample"):
        return result.sample
    return result[0] if isinstance(result, (tuple, list)) else result


class DiffusersDenoiser(Denoiser):
    """A diffusers model (``model(x, t).sample``) and its scheduler's alphas_cumprod as an archdiff denoiser.

    A level a is answered by the model at timestep t(a) = argmin_t |alphas_cumprod[t] - a| (ties to the
    smaller t; levels outside the table clamp to t = 0 or T-1), and the output is converted to x0_hat with
    the requested a, not a_t: exact on the timesteps' own levels, so ``ddim(self, x_T,
    scheduler_levels(scheduler))`` equals diffusers' DDIM loop (eta = 0, no clipping); between timesteps,
    the nearest timestep's answer read at the true level. ``prediction_type`` (epsilon, v_prediction or
    sample) defaults to the scheduler config's. The model runs in its own dtype and device without
    gradients; levels and conversions are float64; the output has x's dtype and device.
    """

    def __init__(self, model, scheduler, prediction_type: str | None = None):
        self.model = model
        self.alphas_cumprod = _alphas_cumprod(scheduler)
        self.prediction_type = check_prediction_type(prediction_type or scheduler.config.prediction_type)

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The sample shape (C, H, W) the model's config declares, if it does."""
        config = getattr(self.model, "config", None)
        channels, size = getattr(config, "in_channels", None), getattr(config, "sample_size", None)
        if channels is None or size is None:
            return None
        return (channels, size, size) if isinstance(size, int) else (channels, *size)

    def timestep_of(self, alpha_bar: torch.Tensor | float) -> torch.Tensor:
        """The model timesteps (int64, CPU) that answer the levels alpha_bar."""
        levels = torch.as_tensor(alpha_bar, dtype=torch.float64).reshape(-1)
        return nearest_timesteps(self.alphas_cumprod, levels)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        device = getattr(self.model, "device", x.device)
        dtype = getattr(self.model, "dtype", x.dtype)
        t = self.timestep_of(alpha_bar).to(device)
        output = _model_output(self.model(x.to(device, dtype), t))
        x0 = x0_from_output(output.to(x.device), x, alpha_bar, self.prediction_type)
        return x0.to(x.dtype)


def load_diffusers(path: str | Path, device: str | torch.device = "cpu",
                   prediction_type: str | None = None) -> DiffusersDenoiser:
    """A saved diffusers pipeline folder (model_index.json, unet, scheduler) as an archdiff denoiser."""
    try:
        from diffusers import DiffusionPipeline
    except ImportError:
        raise UserError("reading a diffusers model needs diffusers: pip install 'archdiff[diffusers]'") \
            from None
    if not (Path(path) / "model_index.json").is_file():
        raise UserError(f"{path} is not a saved diffusers pipeline (no model_index.json)")
    try:
        pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, ImportError, KeyError) as e:
        raise UserError(f"cannot load the diffusers pipeline in {path}: {e}") from None
    unet, scheduler = getattr(pipe, "unet", None), getattr(pipe, "scheduler", None)
    if unet is None or scheduler is None:
        raise UserError(f"the pipeline in {path} has no unet and scheduler to sample")
    return DiffusersDenoiser(unet.to(device).eval(), scheduler, prediction_type)


# ----------------------------------------------------------------------- archdiff -> diffusers


@dataclass
class ModelOutput:
    """What a diffusers UNet returns: the prediction as ``.sample``."""

    sample: torch.Tensor


class ModelConfig(dict):
    """The config fields a diffusers pipeline reads from its unet, as keys and as attributes."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class DiffusersModel(nn.Module):
    """An archdiff denoiser as a diffusers UNet: ``model(sample, timestep).sample`` is the prediction of the
    scheduler's ``prediction_type`` (or the one given) at level alphas_cumprod[timestep].

    ``sample_shape`` (C, H, W; default: the denoiser's ``shape``) fills ``config.in_channels`` and
    ``config.sample_size`` for pipelines such as DDIMPipeline; ``dtype`` and ``device`` are what the
    pipeline reads for its initial noise (``.to`` moves them). Extra conditioning arguments must be None.
    """

    def __init__(self, denoiser: Denoiser, scheduler, sample_shape: tuple[int, ...] | None = None,
                 prediction_type: str | None = None, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu"):
        super().__init__()
        self.denoiser = denoiser
        self.alphas_cumprod = _alphas_cumprod(scheduler)
        self.prediction_type = check_prediction_type(prediction_type or scheduler.config.prediction_type)
        shape = tuple(sample_shape or getattr(denoiser, "shape", ()) or ())
        self.config = ModelConfig(sample_shape=shape)
        if len(shape) == 3:
            size = shape[1] if shape[1] == shape[2] else shape[1:]
            self.config.update(in_channels=shape[0], out_channels=shape[0], sample_size=size)
        self.register_buffer("anchor", torch.empty(0, dtype=dtype, device=device), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.anchor.dtype

    def forward(self, sample: torch.Tensor, timestep, *args, return_dict: bool = True, **kwargs):
        """The prediction at ``timestep`` (int, float or tensor, one or per sample) for ``sample`` (VP)."""
        _unconditional(args, kwargs)
        a = levels_of(_per_sample(timestep_levels(self.alphas_cumprod, timestep), sample), sample)
        x0 = self.denoiser(sample, a)
        output = output_from_x0(x0, sample, a, self.prediction_type).to(sample.dtype)
        return ModelOutput(output) if return_dict else (output,)


# ---------------------------------------------------------------------------------- k-diffusion


class KDiffusionModel:
    """An archdiff denoiser in k-diffusion's convention: ``model(x_VE, sigma) -> denoised``."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, *args, **kwargs) -> torch.Tensor:
        _unconditional(args, kwargs)
        a = alpha_bar_of(_per_sample(sigma, x))
        s, _ = _scales(a, x)
        return self.denoiser((x.double() * s).to(x.dtype), a).to(x.dtype)


class KDiffusionDenoiser(Denoiser):
    """A k-diffusion model (``model(x_VE, sigma) -> denoised``) as an archdiff denoiser."""

    def __init__(self, model):
        self.model = model

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        s, _ = _scales(alpha_bar, x)
        x_ve = (x.double() / s).to(x.dtype)
        return self.model(x_ve, sigma_of(alpha_bar).to(x.dtype)).to(x.dtype)


def k_sigmas(levels: torch.Tensor) -> torch.Tensor:
    """The VE noise levels (float64) of a VP level grid, e.g. archdiff's ``sampling_levels``."""
    return sigma_of(torch.as_tensor(levels, dtype=torch.float64))


__all__ = [
    "PREDICTION_TYPES",
    "DiffusersDenoiser",
    "DiffusersModel",
    "KDiffusionDenoiser",
    "KDiffusionModel",
    "ModelConfig",
    "ModelOutput",
    "alpha_bar_of",
    "check_prediction_type",
    "k_sigmas",
    "load_diffusers",
    "nearest_timesteps",
    "output_from_x0",
    "scheduler_levels",
    "sigma_of",
    "timestep_levels",
    "x0_from_output",
]
