"""Figures shared by the image experiments: rows of samples from the same noise, and their nearest
training images."""

from __future__ import annotations

import torch

from archdiff import metrics, plots
from archdiff.experiments.base import Context

Rows = list[tuple[str, torch.Tensor]]


def grid_figure(ctx: Context, name: str, rows: Rows, title: str | None = None) -> str:
    """Rows = models, columns = the same initial noise; returns the file name written in ctx.out."""
    cols = ctx.config["grid_columns"]
    plots.image_grid(ctx.out / name, [(label, imgs[:cols]) for label, imgs in rows], title=title)
    return name


def nearest_figure(ctx: Context, name: str, rows: Rows, train: torch.Tensor) -> str:
    """For each model, its samples with each sample's nearest training image beneath."""
    cols = ctx.config["grid_columns"]
    out = []
    for label, samples in rows:
        s = samples[:cols]
        _, idx = metrics.pairwise_nn(s, train.to(s.device), k=1)
        out += [(label, s), ("  nearest train", train[idx[:, 0].cpu()])]
    plots.image_grid(ctx.out / name, out)
    return name
