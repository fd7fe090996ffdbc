"""Samplers: DDIM (Song et al. 2021) and DDPM ancestral (Ho et al. 2020) for x_0-predicting denoisers.

Notation (paper Sec. 2, App. B):
    x_t        noisy sample at level a_t = alpha_bar(t): x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) n
    x0_hat     denoiser output, the estimate of x_0
    eps_hat    implied noise, (x_t - sqrt(a_t) x0_hat) / sqrt(1 - a_t)
    eta        DDIM stochasticity: 0 is the deterministic ODE sampler, 1 is DDPM ancestral

Every sampler is a plain function ``sampler(denoiser, x_T, levels, *, eta, generator, ...)``. Randomness
comes from an explicit ``torch.Generator``; the step noise is drawn for the whole set of samples at
once, so the noise never depends on ``batch_size``, which only chunks the denoiser calls. What a
denoiser computes for a chunk may depend on the chunk's size through rounding alone (a matrix product
sums in another order): the closed-form denoisers compute in float64, so their samples agree to float64
rounding for any ``batch_size`` (measured: at most 1e-12 relative; float32 samples came out bitwise
equal), and trained networks, whose batched kernels run in float32, to float32 rounding (measured:
differences of 1e-7 to 2e-5 after a full run).

Checked once, before the first step: x_T (a floating-point tensor [N, *shape] of finite values), the
levels (``check_levels``), eta and batch_size; the denoiser checks each call's shape. Checked once, after
the last step: the samples are finite. A NaN or inf that a model produced (an exploding or broken
denoiser) raises a ValueError naming the denoiser, unless ``check_finite=False`` asks for the raw
samples (to measure how many diverged).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from archdiff import seeding
from archdiff.denoisers.base import Denoiser, check_input, shape_text


def initial_noise(n: int, shape: tuple[int, ...], seed: int, device="cpu", *,
                  stream: str = "x_T") -> torch.Tensor:
    """x_T ~ N(0, I) [n, *shape], drawn on the CPU from (``seed``, ``stream``) so every device gets the same
    noise; other ``stream`` names give independent noise under the same seed."""
    if n < 1 or any(int(d) < 1 for d in shape):
        raise ValueError(f"initial_noise needs n >= 1 samples of a shape with sizes >= 1, got n = {n}, "
                         f"shape {shape_text(shape)}")
    g = seeding.generator(seed, "initial-noise", stream)
    return torch.randn((n, *shape), generator=g, dtype=torch.float32).to(device)


def ddim_step(x_t, x0_hat, a_t: float, a_prev: float, eta: float = 0.0, z=None) -> torch.Tensor:
    """One DDIM update from level a_t to a_prev (Song et al. 2021, eq. 12)."""
    eps_hat = (x_t - math.sqrt(a_t) * x0_hat) / math.sqrt(1.0 - a_t)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) if a_prev < 1 else 0.0
    x = math.sqrt(a_prev) * x0_hat + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps_hat
    if sigma > 0:
        x = x + sigma * z
    return x


def check_levels(levels: torch.Tensor | list[float]) -> list[float]:
    """The sampling levels as floats, refusing a grid a sampler cannot run: 1-D with >= 2 levels (steps + 1),
    each in (0, 1], non-decreasing (noisiest first; a level may repeat), all but the last below 1 (a step
    divides by sqrt(1 - a_t)); ``schedule.sampling_levels`` gives such grids."""
    try:
        grid = torch.as_tensor(levels, dtype=torch.float64).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"levels must be a 1-D float tensor [steps + 1], got {type(levels).__name__}"
                        ) from None
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(f"levels must be 1-D, >= 2 levels [steps + 1], got shape {shape_text(grid.shape)}")
    _refuse(grid, ~((grid > 0) & (grid <= 1)), "levels must lie in (0, 1] (alpha_bar)")
    _refuse(grid[1:], grid[1:] < grid[:-1], "levels must run noisiest first (alpha_bar non-decreasing, as "
            "sampling_levels gives them), but a level falls")
    _refuse(grid[:-1], grid[:-1] == 1, "only the last level may be 1 (clean): a step from alpha_bar = 1 "
            "divides by 0")
    return grid.tolist()


def _refuse(values: torch.Tensor, bad: torch.Tensor, message: str) -> None:
    """Raise ``message`` naming the first of ``values`` marked ``bad``, if any is."""
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{message}: got {float(values[i])} at position {i}")


def _check_run(x_T: torch.Tensor, eta: float, generator, batch_size: int | None) -> None:
    """The sampler's own inputs besides the levels: x_T, eta, the generator and batch_size."""
    check_input(x_T, None, "x_T")
    if x_T.ndim < 2 or x_T.shape[0] < 1:
        raise ValueError(f"x_T must be [N, *shape] with N >= 1, got shape {shape_text(x_T.shape)}")
    if not bool(torch.isfinite(x_T).all()):
        raise ValueError("x_T contains NaN or inf: start from finite noise (initial_noise)")
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1] (0: DDIM, 1: DDPM), got {eta}")
    if eta > 0 and generator is None:
        raise ValueError("a stochastic sampler (eta > 0) needs an explicit torch.Generator")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be an int >= 1 (or None: one call per step), got {batch_size!r}")


def _check_finite(x: torch.Tensor, denoiser: Denoiser) -> None:
    """Refuse samples holding NaN or inf: the denoiser produced them from finite noise and levels."""
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)
    if bool(bad.any()):
        raise ValueError(
            f"sampling produced NaN or inf in {int(bad.sum())} of {x.shape[0]} samples (first: sample "
            f"{int(bad.nonzero()[0, 0])}): the denoiser {type(denoiser).__name__} diverged on finite input; "
            f"check the model (its training loss, its fit), or pass check_finite=False for the raw samples")


def _denoise_chunked(denoiser: Denoiser, x: torch.Tensor, level: float, batch_size: int | None):
    if batch_size is None or batch_size >= x.shape[0]:
        return denoiser(x, level)
    return torch.cat([denoiser(c, level) for c in x.split(batch_size)])


def ddim(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    levels: torch.Tensor,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool = False,
    check_finite: bool = True,
) -> torch.Tensor:
    """Run DDIM from x_T [N, *shape] down the noise levels (noisiest first, usually ending at 1.0).

    Returns x_0 [N, *shape]. ``callback(i, x_t, x0_hat)`` is called after each step. Bad input raises
    before the first step; non-finite samples raise after the last unless ``check_finite=False``.
    """
    _check_run(x_T, eta, generator, batch_size)
    levels = check_levels(levels)
    x = x_T
    steps = range(len(levels) - 1)
    for i in tqdm(steps, desc="sampling", leave=False, delay=2, disable=None if progress else True):
        a_t, a_prev = levels[i], levels[i + 1]
        x0_hat = _denoise_chunked(denoiser, x, a_t, batch_size).to(x.dtype)
        z = None
        if eta > 0:
            z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
            z = z.to(x.device)
        x = ddim_step(x, x0_hat, a_t, a_prev, eta, z)
        if callback is not None:
            callback(i, x, x0_hat)
    if check_finite:
        _check_finite(x, denoiser)
    return x


def ddpm(denoiser: Denoiser, x_T: torch.Tensor, levels: torch.Tensor, **kwargs) -> torch.Tensor:
    """DDPM ancestral sampling: the posterior q(x_prev | x_t, x0_hat), i.e. DDIM with eta = 1."""
    return ddim(denoiser, x_T, levels, eta=1.0, **kwargs)


SAMPLERS = {"ddim": ddim, "ddpm": ddpm}


def sample(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    steps: int,
    *,
    schedule: str = "cosine",
    sampler: str = "ddim",
    **kwargs,
) -> torch.Tensor:
    """Convenience: sample ``denoiser`` from x_T with ``steps`` steps of a named sampler and schedule."""
    from archdiff.schedule import sampling_levels

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[sampler](denoiser, x_T, sampling_levels(schedule, steps), **kwargs)
