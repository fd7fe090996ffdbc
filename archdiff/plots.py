"""Figures: scatter panels for 2-D samples and image grids. Every function writes one PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def scatter_panels(
    path: Path, panels: list[tuple[str, torch.Tensor]], lim: float | None = None, size: float = 3.2
) -> Path:
    """One scatter plot per (title, points [N, 2]) side by side, shared axes."""
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), squeeze=False)
    pts_all = torch.cat([p.detach().cpu().double() for _, p in panels])
    lim = lim or float(pts_all.abs().quantile(0.995)) * 1.1
    for ax, (title, pts) in zip(axes[0], panels):
        p = pts.detach().cpu().numpy()
        ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5, linewidths=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi=110)


def to_display(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] (C = 1 or 3)."""
    x = images.detach().cpu().float().clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(
    path: Path, rows: list[tuple[str, torch.Tensor]], cell: float = 0.9, title: str | None = None
) -> Path:
    """Grid PNG: one row per (label, images [N, C, H, W]); columns share the same initial noise."""
    ncol = max(r[1].shape[0] for r in rows)
    longest = max(len(line) for label, _ in rows for line in label.splitlines())
    margin = max(1.4, 0.075 * longest + 0.2)  # inches for the row labels (8 pt text)
    fig, axes = plt.subplots(
        len(rows), ncol, figsize=(cell * ncol + margin, cell * len(rows) + 0.3), squeeze=False
    )
    for r, (label, imgs) in enumerate(rows):
        pics = to_display(imgs)
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(pics):
                img = pics[c]
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=(margin - 0.1) / (cell * ncol + margin), right=0.99, wspace=0.05, hspace=0.05)
    return _save(fig, path, dpi=100)


def line_plot(path: Path, x, series: dict[str, list[float]], xlabel: str, ylabel: str,
              logy: bool = False) -> Path:
    """A small line plot of named series over x."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, ys in series.items():
        ax.plot(x, ys, marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi=110)


def _save(fig, path: Path, dpi: int) -> Path:
    """Write the figure as a PNG and free it."""
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)
