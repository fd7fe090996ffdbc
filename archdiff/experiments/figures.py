"""Figures shared by the image experiments: rows of samples from the same noise, and their nearest
training images; and ``plural``, for counts in the text a reader sees."""

from __future__ import annotations

import torch

from archdiff import metrics, plots
from archdiff.experiments.base import Context

Rows = list[tuple[str, torch.Tensor]]
NEAREST_ROW = "nearest training\nimage"


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 block', '3 blocks' (``many``: the plural when it is not word + 's')."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def grid_figure(ctx: Context, name: str, rows: Rows, title: str) -> str:
    """Rows = models, columns = the same initial noise; returns the file name written in ctx.out."""
    cols = ctx.config["grid_columns"]
    plots.image_grid(ctx.out / name, [(label, imgs[:cols]) for label, imgs in rows], title=title)
    return name


def nearest_figure(ctx: Context, name: str, rows: Rows, train: torch.Tensor, subject: str) -> str:
    """For each model (``subject`` says which), a row of its samples and beneath it each sample's nearest
    training image."""
    cols = ctx.config["grid_columns"]
    out = []
    for label, samples in rows:
        s = samples[:cols]
        _, idx = metrics.pairwise_nn(s, train.to(s.device), k=1)
        out += [(label, s), (NEAREST_ROW, train[idx[:, 0].cpu()])]
    title = (f"{subject}: each model's samples (labelled row) and, beneath each sample, its nearest "
             f"training image (Euclidean distance over pixels)")
    plots.image_grid(ctx.out / name, out, title=title, group=2)
    return name
