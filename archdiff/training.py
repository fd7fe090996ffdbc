"""Training engine for network denoisers (work in progress: the public API below is fixed).

    result = train(NetSpec("mlp2d", {"hidden": 256, "bottleneck": 2}), data, TrainConfig(epochs=500),
                   out=Path("runs/model"), resume=True)
    result.denoiser(x_t, alpha_bar)    # a Denoiser; result.losses: [epochs, L]

Modes (``TrainConfig.conditioning``):
    "per-level"  one network per noise level of the sampling grid (the authors' setting), all L levels
                 trained together in one batched computation; networks take no level input.
    "time"       one network for every level, built with ``level_input=True`` and called net(x, a).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from archdiff.denoisers.base import Denoiser
from archdiff.denoisers.networks import NetSpec


@dataclass
class TrainConfig:
    """Everything that decides a trained model (saved beside its checkpoints)."""

    epochs: int = 500
    batch_size: int = 64
    lr: float = 1e-4
    optimizer: str = "adam"  # "adam" | "sgd"
    lr_schedule: str = "constant"  # "constant" | "cosine" (decay to 0 over the epochs)
    conditioning: str = "per-level"  # "per-level" | "time"
    schedule: str = "cosine"
    steps: int = 50  # per-level: train the levels sampling_levels(schedule, steps)[:-1]
    levels: list[float] | None = None  # per-level: explicit levels instead of the grid
    antithetic: bool = False  # use every noise draw twice, as +n and -n (variance reduction)
    engine: str = "auto"  # per-level: "batched" (vmap) | "loop" | "auto"
    precision: str = "auto"  # "fp32" | "bf16" | "fp16" | "auto" (bf16 on CUDA, fp32 on CPU)
    checkpoint_every: int = 10  # epochs between checkpoints when ``out`` is given
    seed: int = 0


@dataclass
class TrainResult:
    """A trained denoiser, its loss curve [epochs, L] (L = 1 for time-conditioned) and its folder."""

    denoiser: Denoiser
    losses: torch.Tensor
    out: Path | None


def train(
    net: NetSpec,
    data: torch.Tensor,
    config: TrainConfig,
    *,
    out: Path | str | None = None,
    resume: bool = False,
    device: str | torch.device = "auto",
    progress: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> TrainResult:
    """Train ``net`` on data [N, *shape] to predict x_0 from x_t (MSE); see the module docstring."""
    raise NotImplementedError
