"""The one denoiser interface.

Every denoiser in archdiff, closed-form or trained, is called the same way::

    x0_hat = denoiser(x_t, alpha_bar)     # x_t: [B, *shape]; alpha_bar: float or [B]

where x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) n, and the output estimates x_0 (the clean
signal). Samplers, metrics and the report never ask which kind of denoiser they hold. A denoiser with a
saved form (``to_saved``) is written by ``save(folder)`` in the one saved-model schema (``saved.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import torch

from archdiff.denoisers.saved import StateDict, write_model


class Denoiser(ABC):
    """Noisy input and noise level (alpha_bar) in, estimate of the clean input out."""

    @abstractmethod
    def denoise(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """Estimate x_0 from x [B, *shape] at levels alpha_bar [B] (float64)."""

    def __call__(self, x: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
        return self.denoise(x, levels_of(alpha_bar, x))

    def to_saved(self) -> tuple[dict, StateDict]:
        """What ``save`` writes: config.json's content (``saved.saved_config``) and the tensors."""
        raise NotImplementedError(f"{type(self).__name__} has no saved form")

    def save(self, folder: Path | str) -> Path:
        """Write this denoiser as a saved-model folder (config.json, model.safetensors) for ``load``."""
        return write_model(folder, *self.to_saved())


def levels_of(alpha_bar: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a noise level (float, 0-d or [B]) to a float64 tensor [B] on x's device."""
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64, device=x.device)
    if ab.ndim == 0:
        ab = ab.expand(x.shape[0])
    if ab.shape != (x.shape[0],):
        raise ValueError(f"alpha_bar has shape {tuple(ab.shape)}, expected () or ({x.shape[0]},)")
    if bool(((ab <= 0) | (ab > 1)).any()):
        raise ValueError("alpha_bar must lie in (0, 1]")
    return ab


def per_level(
    x: torch.Tensor, alpha_bar: torch.Tensor, fn: Callable[[torch.Tensor, float], torch.Tensor]
) -> torch.Tensor:
    """Apply ``fn(x_group, level)`` to each group of rows sharing one noise level."""
    unique = torch.unique(alpha_bar)
    if unique.numel() == 1:
        return fn(x, float(unique))
    out = torch.empty_like(x)
    for level in unique:
        rows = alpha_bar == level
        out[rows] = fn(x[rows], float(level)).to(out.dtype)
    return out


class LevelFitted(Denoiser):
    """A closed-form denoiser fitted separately at each noise level, lazily, with the fits cached.

    Subclasses implement ``fit_level(alpha_bar) -> fit`` (any object holding what the level's fit found)
    and ``apply_fit(fit, x) -> x0_hat`` for x [B, *shape] at that level. ``fit_at(alpha_bar)`` is the
    public surface: the cached fit of one level (fitted on first use).
    """

    def __init__(self) -> None:
        self._fits: dict[float, object] = {}

    @abstractmethod
    def fit_level(self, alpha_bar: float):
        """Fit at one noise level (not cached: use ``fit_at``)."""

    @abstractmethod
    def apply_fit(self, fit, x: torch.Tensor) -> torch.Tensor:
        """x0_hat for x [B, *shape], all at the level ``fit`` was fitted at."""

    def fit_at(self, alpha_bar: float):
        """The fit of one noise level, fitted on first use and cached."""
        key = float(alpha_bar)
        if key not in self._fits:
            self._fits[key] = self.fit_level(key)
        return self._fits[key]

    @property
    def fitted_levels(self) -> list[float]:
        """The levels fitted so far."""
        return sorted(self._fits)

    def fit_tensors(self, fit) -> StateDict:
        """A fit as named tensors (what ``fit_from`` rebuilds it from), for saving."""
        raise NotImplementedError(f"{type(self).__name__} cannot save its fits")

    def fit_from(self, alpha_bar: float, tensors: StateDict):
        """The fit of level ``alpha_bar`` from the tensors ``fit_tensors`` gave."""
        raise NotImplementedError(f"{type(self).__name__} cannot load fits")

    def saved_fits(self) -> tuple[list[float], StateDict]:
        """The fitted levels and their fits' tensors, named "fit.<i>.<name>" (i: the level's place)."""
        levels = self.fitted_levels
        return levels, {f"fit.{i}.{k}": v for i, a in enumerate(levels)
                        for k, v in self.fit_tensors(self._fits[a]).items()}

    def restore_fits(self, levels: list[float], tensors: StateDict) -> None:
        """Put back the fits ``saved_fits`` gave: level ``levels[i]``'s from the tensors "fit.<i>.*"."""
        for i, a in enumerate(levels):
            prefix = f"fit.{i}."
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            self._fits[float(a)] = self.fit_from(float(a), own)

    def denoise(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        return per_level(x, alpha_bar, lambda xs, a: self.apply_fit(self.fit_at(a), xs))
