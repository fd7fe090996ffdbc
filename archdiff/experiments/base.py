"""What an experiment is: a frozen config per scale plus one ``run(ctx) -> Result`` function.

The runner (``archdiff.runner``), not the experiment, owns the output folder, ``config.toml``,
``metrics.json`` and the marker that says the run finished. A claim is a record computed from a
measured number and a threshold, never typed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from archdiff.errors import UserError

SCALES = ("quick", "paper")
__all__ = ["SCALES", "Claim", "Context", "Experiment", "Result", "UserError"]


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, tested: ``holds`` is computed from ``measured`` and ``threshold``."""

    id: str
    statement: str
    measured: float
    threshold: float
    holds: bool

    @classmethod
    def at_most(cls, id: str, statement: str, measured: float, threshold: float) -> Claim:
        """The claim holds when measured <= threshold."""
        return cls(id, statement, float(measured), float(threshold), bool(measured <= threshold))

    @classmethod
    def at_least(cls, id: str, statement: str, measured: float, threshold: float) -> Claim:
        """The claim holds when measured >= threshold."""
        return cls(id, statement, float(measured), float(threshold), bool(measured >= threshold))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Result:
    """What ``run`` returns: measured numbers, claims, and the figure files it wrote (names in out)."""

    metrics: dict[str, Any]
    claims: list[Claim]
    figures: list[str] = field(default_factory=list)


@dataclass
class Context:
    """Everything a run may read: resolved config, device, seed, data spec and its output folder."""

    config: dict[str, Any]
    scale: str
    seed: int
    device: torch.device
    out: Path
    data: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class Experiment:
    """One paper figure: id, one-line title, the paper's statement, configs per scale, run()."""

    id: str
    title: str
    paper: str
    scales: dict[str, dict[str, Any]]
    run: Callable[[Context], Result]
    uses_images: bool = False

    def config(self, scale: str) -> dict[str, Any]:
        """The frozen config for a scale (a copy)."""
        if scale not in self.scales:
            raise UserError(f"experiment {self.id} has no scale {scale!r}: use {', '.join(self.scales)}")
        return dict(self.scales[scale])
