"""Noise schedules and sampling grids.

Notation (paper, Sec. 2 and App. B; Nichol & Dhariwal 2021 for the cosine schedule):
    t          continuous time in [0, 1]; t = 0 is clean data, t = 1 is pure noise
    alpha_bar  \\bar\\alpha(t): signal fraction, x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) n
    s          cosine offset, 0.008

A schedule is a plain function ``t -> alpha_bar`` on float64 tensors. A *noise level* everywhere in
archdiff is one alpha_bar value; every other part (denoisers, samplers, training) reads it the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Schedule = Callable[[torch.Tensor], torch.Tensor]

T_MAX = 0.999  # last time of a sampling grid: cosine alpha_bar(0.999) ~ 2.4e-6, not exactly 0


def cosine(t: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Improved-DDPM cosine schedule: alpha_bar(t) = f(t)/f(0), f(t) = cos^2((t+s)/(1+s) * pi/2)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return (f / f0).clamp(0.0, 1.0)


def linear(t: torch.Tensor, beta_min: float = 1e-4, beta_max: float = 0.02, steps: int = 1000):
    """DDPM linear-beta schedule in continuous time: alpha_bar(t) = exp(-int_0^t beta)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    b0, b1 = beta_min * steps, beta_max * steps
    return torch.exp(-(b0 * t + 0.5 * (b1 - b0) * t**2))


SCHEDULES: dict[str, Schedule] = {"cosine": cosine, "linear": linear}


def get_schedule(name: str) -> Schedule:
    """Look a schedule up by name (``cosine`` or ``linear``)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}: choose one of {', '.join(SCHEDULES)}")
    return SCHEDULES[name]


def sampling_levels(schedule: Schedule | str, steps: int, t_max: float = T_MAX) -> torch.Tensor:
    """Noise levels of a ``steps``-step sampler, noisiest first, ending at 1.0 (clean).

    Returns a float64 tensor [steps + 1]: alpha_bar at t_i = t_max * (1 - i / steps).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    schedule = get_schedule(schedule) if isinstance(schedule, str) else schedule
    t = torch.linspace(t_max, 0.0, steps + 1, dtype=torch.float64)
    levels = schedule(t)
    levels[-1] = 1.0
    return levels


def noisy(x0: torch.Tensor, alpha_bar: torch.Tensor | float, noise: torch.Tensor) -> torch.Tensor:
    """The forward process, x_t = sqrt(a) x_0 + sqrt(1 - a) n: the one place it is written.

    ``alpha_bar``: a float, or a tensor of x0's leading dimensions ([B], [L, B], ...). The coefficients
    are computed in float64 and cast to x0's dtype, so float64 data stay exact.
    """
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64, device=x0.device)
    ab = ab.reshape(*ab.shape, *([1] * (x0.ndim - ab.ndim)))  # broadcast over the trailing dims
    return ab.sqrt().to(x0.dtype) * x0 + (1 - ab).sqrt().to(x0.dtype) * noise
