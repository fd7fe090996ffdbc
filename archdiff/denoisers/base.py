"""The one denoiser interface.

Every denoiser in archdiff, closed-form or trained, is called the same way::

    x0_hat = denoiser(x_t, alpha_bar)     # x_t: [B, *shape]; alpha_bar: float or [B]

where x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) n, and the output estimates x_0 (the clean
signal). Samplers, metrics and the report never ask which kind of denoiser they hold. A denoiser with a
saved form (``to_saved``) is written by ``save(folder)`` in the one saved-model schema (``saved.py``).

Bad input is refused here, once, with a ValueError or TypeError naming what was expected:
``check_data`` when a fit is built (a real tensor [N, *shape], N >= 1, no NaN or inf) and
``Denoiser.__call__`` on every call (x a floating-point tensor whose per-sample shape is the model's
``shape`` when it has one; every alpha_bar in (0, 1], by ``levels_of``). A call's checks read shapes,
dtypes and the B levels only, never x's values: those are the caller's (a sampler checks its x_T and its
result once, the trainer its data and each epoch's loss).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import torch

from archdiff.denoisers.saved import StateDict, write_model
from archdiff.linalg import flatten


class Denoiser(ABC):
    """Noisy input and noise level (alpha_bar) in, estimate of the clean input out."""

    @abstractmethod
    def denoise(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """Estimate x_0 from x [B, *shape] at levels alpha_bar [B] (float64)."""

    def __call__(self, x: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
        """x0_hat for x [B, *shape] at alpha_bar (a float or [B]); bad input raises (module docstring)."""
        check_input(x, getattr(self, "shape", None))
        return self.denoise(x, levels_of(alpha_bar, x))

    def to_saved(self) -> tuple[dict, StateDict]:
        """What ``save`` writes: config.json's content (``saved.saved_config``) and the tensors."""
        raise NotImplementedError(f"{type(self).__name__} has no saved form")

    def save(self, folder: Path | str) -> Path:
        """Write this denoiser as a saved-model folder (config.json, model.safetensors) for ``load``."""
        return write_model(folder, *self.to_saved())


def shape_text(shape) -> str:
    """A shape as error messages write it: [2, 8, 8]."""
    return "[" + ", ".join(str(int(n)) for n in shape) + "]"


def check_data(data: torch.Tensor, name: str = "data") -> torch.Tensor:
    """Refuse data that are not a real tensor [N, *shape] of N >= 1 finite samples; returns ``data``."""
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N, *shape], got {type(data).__name__}")
    if data.dtype == torch.bool or data.is_complex():
        raise TypeError(f"{name} must hold real numbers (a float dtype), got dtype {data.dtype}")
    if data.ndim < 2 or data.shape[0] < 1 or data[0].numel() < 1:
        raise ValueError(f"{name} must be [N, *shape] with N >= 1 samples of >= 1 value each, "
                         f"got shape {shape_text(data.shape)}")
    if data.is_floating_point() and not bool(torch.isfinite(data).all()):
        first = int((~torch.isfinite(flatten(data))).any(1).nonzero()[0, 0])
        raise ValueError(f"{name} contain NaN or inf (first in sample {first} of {data.shape[0]}): "
                         f"drop or repair those samples")
    return data


def check_input(x: torch.Tensor, shape: tuple[int, ...] | None, name: str = "x") -> None:
    """Refuse a denoiser input that is not a floating-point tensor [B, *shape] (``shape``: the model's
    per-sample shape; None accepts any)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, *shape], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32 or float64), got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must be a batch [B, *shape], got a 0-d tensor")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} has shape {shape_text(x.shape)}, but this denoiser takes [B, "
                         f"{shape_text(shape)[1:]}: its samples have shape {shape_text(shape)}, "
                         f"not {shape_text(x.shape[1:])}")


def levels_of(alpha_bar: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a noise level (float, 0-d or [B]) to a float64 tensor [B] on x's device, refusing any
    level outside (0, 1] (NaN included); a level given as a number is checked on the CPU."""
    if isinstance(alpha_bar, torch.Tensor) and (alpha_bar.is_complex() or alpha_bar.dtype == torch.bool):
        raise TypeError(f"alpha_bar must be real (a float, or a float tensor [B]), got {alpha_bar.dtype}")
    try:
        ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"alpha_bar must be a float, or a float tensor [B], got {type(alpha_bar).__name__}"
                        ) from None
    if ab.ndim == 0:
        ab = ab.expand(x.shape[0])
    if ab.shape != (x.shape[0],):
        raise ValueError(f"alpha_bar has shape {shape_text(ab.shape)}, expected [] or [{x.shape[0]}] "
                         f"(one level per sample of x)")
    outside = ~((ab > 0) & (ab <= 1))
    if bool(outside.any()):
        bad = float(ab[outside.nonzero()[0, 0]])
        raise ValueError(f"alpha_bar must lie in (0, 1] (near 0: pure noise, 1: clean), got {bad}")
    return ab.to(x.device)


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
