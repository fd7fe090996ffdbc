"""Helpers shared by the image experiments: data from ``--data``, figures, copy statistics."""

from __future__ import annotations

import torch

from archdiff import metrics, plots
from archdiff.experiments.base import Context


def image_data(ctx: Context) -> torch.Tensor:
    """The training images [N, C, H, W] in [-1, 1]: ``--data`` if given, else the config's ``data``."""
    from archdiff.data.images import load_images

    c = ctx.config
    return load_images(ctx.data or c["data"], n=c.get("n_train"), size=c.get("image_size"), seed=ctx.seed)


Rows = list[tuple[str, torch.Tensor]]


def grid_figure(ctx: Context, name: str, rows: Rows, title: str | None = None) -> str:
    """Rows = models, columns = the same initial noise; returns the file name written in ctx.out."""
    cols = ctx.config.get("grid_columns", 8)
    plots.image_grid(ctx.out / name, [(label, imgs[:cols]) for label, imgs in rows], title=title)
    return name


def nearest_figure(ctx: Context, name: str, rows: Rows, train: torch.Tensor) -> str:
    """For each model, its samples with each sample's nearest training image beneath."""
    cols = ctx.config.get("grid_columns", 8)
    out = []
    for label, samples in rows:
        s = samples[:cols]
        _, idx = metrics.pairwise_nn(s, train.to(s.device), k=1)
        out += [(label, s), ("  nearest train", train[idx[:, 0].cpu()])]
    plots.image_grid(ctx.out / name, out)
    return name


def copy_stats(prefix: str, samples: torch.Tensor, train: torch.Tensor) -> dict[str, float]:
    """Copy fraction and median nearest-neighbour distance (RMS per pixel) of samples vs training set."""
    train = train.to(samples.device)
    return {
        f"copy_fraction_{prefix}": metrics.copy_fraction(samples, train),
        f"nn_distance_{prefix}": metrics.nn_distance(samples, train),
    }
