"""Samplers: DDIM (Song et al. 2021) and DDPM ancestral (Ho et al. 2020) for x_0-predicting denoisers.

Notation (paper Sec. 2, App. B):
    x_t        noisy sample at level a_t = alpha_bar(t): x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) n
    x0_hat     denoiser output, the estimate of x_0
    eps_hat    implied noise, (x_t - sqrt(a_t) x0_hat) / sqrt(1 - a_t)
    eta        DDIM stochasticity: 0 is the deterministic ODE sampler, 1 is DDPM ancestral

Every sampler is a plain function ``sampler(denoiser, x_T, levels, *, eta, generator, ...)``. Randomness
comes from an explicit ``torch.Generator``; the step noise is drawn for the whole set of samples at
once, so a sample never depends on ``batch_size`` (which only chunks the denoiser calls).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from archdiff import seeding
from archdiff.denoisers.base import Denoiser


def initial_noise(n: int, shape: tuple[int, ...], seed: int, device="cpu", *,
                  stream: str = "x_T") -> torch.Tensor:
    """x_T ~ N(0, I) [n, *shape], drawn on the CPU from (``seed``, ``stream``) so every device gets the same
    noise; other ``stream`` names give independent noise under the same seed."""
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
) -> torch.Tensor:
    """Run DDIM from x_T [N, *shape] down the noise levels (noisiest first, ending at 1.0).

    Returns x_0 [N, *shape]. ``callback(i, x_t, x0_hat)`` is called after each step.
    """
    if eta > 0 and generator is None:
        raise ValueError("a stochastic sampler (eta > 0) needs an explicit torch.Generator")
    x = x_T
    levels = [float(a) for a in levels]
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

    return SAMPLERS[sampler](denoiser, x_T, sampling_levels(schedule, steps), **kwargs)
