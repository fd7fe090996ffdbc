"""Figures: scatter panels for 2-D samples, image grids and line plots. Every function writes one PNG.

Figures are drawn at ``DPI`` and at most ``PAGE_PX`` wide, the report's column width, so the report
shows them at their own size: a font of ``pt`` points is then ``pt * DPI / 72`` pixels on the page, and
every text here is at least ``MIN_TEXT_PX``; an image-grid thumbnail is at least ``MIN_CELL_PX``.
"""

from __future__ import annotations

import math
import textwrap
from itertools import cycle
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

DPI = 100
PAGE_PX = 1100  # the report's column width (report.STYLE): no figure is wider, so none is shrunk
MIN_TEXT_PX = 11  # the smallest text on the page
MIN_CELL_PX = 96  # the smallest image-grid thumbnail on the page
TITLE_PT, LABEL_PT, TICK_PT = 12.0, 11.0, 9.0  # 16.7, 15.3 and 12.5 px at DPI
GAP_IN = 0.05  # space between thumbnails (inches)
MARKERS = ("o", "s", "^", "D", "v", "P")
LINESTYLES = ("-", "--", ":", "-.")
REF_STYLES = (("0.35", (0, (6, 3))), ("tab:red", (0, (2, 2))), ("0.1", (0, (8, 2, 2, 2))))


class Panel(NamedTuple):
    """One scatter panel: its title, the points [N, 2], and optional marked points [M, 2] (e.g. the
    training set) drawn over them."""

    title: str
    points: torch.Tensor
    marks: torch.Tensor | None = None


def px(points: float) -> float:
    """A font size in points as pixels in a PNG written at ``DPI``."""
    return points * DPI / 72


def wrap(text: str, width_in: float, points: float = TITLE_PT) -> str:
    """Text broken into lines that fit ``width_in`` inches at ``points`` (a character is at most about
    0.62 em wide on average); existing line breaks are kept."""
    chars = max(int(width_in * 72 / (0.62 * points)), 10)
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())


def scatter_panels(path: Path, panels: list[Panel | tuple], lim: float | None = None, size: float = 3.4,
                   title: str | None = None, marks_label: str = "marked points", per_row: int = 4) -> Path:
    """One scatter plot per panel (title, points[, marks]), ``per_row`` to a row, shared axes."""
    return _save(scatter_figure([Panel(*p) for p in panels], lim, size, title, marks_label, per_row), path)


def scatter_figure(panels: list[Panel], lim: float | None, size: float, title: str | None,
                   marks_label: str, per_row: int) -> Figure:
    """The figure behind ``scatter_panels``."""
    nrow = math.ceil(len(panels) / per_row)
    ncol = math.ceil(len(panels) / nrow)
    size = min(size, PAGE_PX / DPI / ncol)
    title = wrap(title, size * ncol) if title else None
    top = (title.count("\n") + 1) * TITLE_PT * 1.45 / 72 if title else 0.0
    panel_h = size + 0.25 * (1 + max(p.title.count("\n") for p in panels))  # a square, its title, ticks
    fig, axes = plt.subplots(nrow, ncol, figsize=(size * ncol, panel_h * nrow + top), squeeze=False,
                             layout="constrained", dpi=DPI)
    points = torch.cat([p.points.detach().cpu().double() for p in panels])
    lim = lim or float(points.abs().quantile(0.995)) * 1.1
    for ax, panel in zip(axes.flat, panels):
        _scatter(ax, panel, lim, marks_label)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if any(p.marks is not None for p in panels):
        axes.flat[0].legend(fontsize=TICK_PT, loc="upper left", markerscale=1)
    if title:
        fig.suptitle(title, fontsize=TITLE_PT)
    return fig


def _scatter(ax, panel: Panel, lim: float, marks_label: str) -> None:
    """Draw one panel: its points, its marks over them, square axes of half-width lim."""
    p = panel.points.detach().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5, linewidths=0)
    if panel.marks is not None:
        mk = panel.marks.detach().cpu().numpy()
        ax.scatter(mk[:, 0], mk[:, 1], s=45, marker="x", c="tab:red", linewidths=1.6, label=marks_label)
    ax.set_title(panel.title, fontsize=LABEL_PT)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=TICK_PT)


def to_display(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] (C = 1 or 3)."""
    x = images.detach().cpu().float().clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(path: Path, rows: list[tuple[str, torch.Tensor]], cell: float = 1.15, title: str | None = None,
               group: int = 1) -> Path:
    """Grid PNG: one row per (label, images [N, C, H, W]); columns share the same initial noise; a wider gap
    after every ``group`` rows (e.g. 2: a row of samples and the row of their nearest training images)."""
    return _save(grid_figure(rows, cell, title, group), path)


def _label_width(rows: list[tuple[str, torch.Tensor]]) -> float:
    """Inches the row labels need at LABEL_PT (a character is about 0.6 em wide)."""
    longest = max(len(line) for label, _ in rows for line in label.splitlines())
    return 0.6 * LABEL_PT / 72 * longest + 0.2


def grid_figure(rows: list[tuple[str, torch.Tensor]], cell: float, title: str | None, group: int) -> Figure:
    """The figure behind ``image_grid``: thumbnails placed at exact positions, no blank bands."""
    ncol = max(r[1].shape[0] for r in rows)
    margin = _label_width(rows)
    cell = min(cell, (PAGE_PX / DPI - margin - GAP_IN * ncol) / ncol)  # fit the page
    h_img, w_img = rows[0][1].shape[-2:]
    cell_h = cell * h_img / w_img
    width = margin + ncol * (cell + GAP_IN)
    title = wrap(title, width) if title else None
    top = (title.count("\n") + 1) * TITLE_PT * 1.45 / 72 + 0.15 if title else GAP_IN
    ends = {r for r in range(group - 1, len(rows) - 1, group)}  # rows that end a group (not the last)
    heights = [cell_h + GAP_IN + (4 * GAP_IN if r in ends else 0) for r in range(len(rows))]
    height = top + sum(heights)
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    y = top
    for (label, imgs), h in zip(rows, heights):
        pics = to_display(imgs)
        for c in range(ncol):
            ax = fig.add_axes(((margin + c * (cell + GAP_IN)) / width, 1 - (y + cell_h) / height,
                               cell / width, cell_h / height))
            ax.set_axis_off()
            if c < len(pics):
                pic = pics[c][..., 0] if pics[c].shape[-1] == 1 else pics[c]
                ax.imshow(pic, cmap="gray", vmin=0, vmax=255)
        fig.text((margin - 0.1) / width, 1 - (y + cell_h / 2) / height, label, ha="right", va="center",
                 fontsize=LABEL_PT)
        y += h
    if title:
        fig.suptitle(title, fontsize=TITLE_PT, y=1 - 0.08 / height, va="top")
    return fig


def line_plot(path: Path, x, series: dict[str, list[float]], xlabel: str, ylabel: str, logy: bool = False,
              title: str | None = None, refs: dict[str, float] | None = None, logx: bool = False,
              size: tuple[float, float] = (6.4, 4.2)) -> Path:
    """A line plot of named series over x (each its own marker and line style, so coinciding lines stay
    visible) and horizontal reference lines ``refs`` (name -> value, e.g. a claim's threshold)."""
    return _save(line_figure(x, series, xlabel, ylabel, (logx, logy), title, refs or {}, size), path)


def line_figure(x, series: dict[str, list[float]], xlabel: str, ylabel: str, logs: tuple[bool, bool],
                title: str | None, refs: dict[str, float], size: tuple[float, float]) -> Figure:
    """The figure behind ``line_plot``."""
    fig, ax = plt.subplots(figsize=size, layout="constrained", dpi=DPI)
    styles = zip(cycle(MARKERS), cycle(LINESTYLES))
    for i, ((name, ys), (marker, ls)) in enumerate(zip(series.items(), styles)):
        hollow = {"markerfacecolor": "none"} if i % 2 else {}  # a later line does not hide an earlier one
        ax.plot(x, ys, marker=marker, ls=ls, ms=8 if i % 2 else 4, lw=1.5, label=name,
                markevery=max(1, len(ys) // 20), **hollow)
    for (name, value), (color, ls) in zip(refs.items(), cycle(REF_STYLES)):
        ax.axhline(value, color=color, ls=ls, lw=1.2, label=name)
    ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax.set_ylabel(ylabel, fontsize=LABEL_PT)
    ax.tick_params(labelsize=TICK_PT)
    if logs[0]:
        ax.set_xscale("log")
    if logs[1]:
        ax.set_yscale("log")
    for axis, log in zip((ax.xaxis, ax.yaxis), logs):
        if log:
            _plain_log_ticks(axis)
    names = [*series, *refs]
    two = len(names) > 3 and max(map(len, names)) * 0.62 * TICK_PT / 72 < size[0] / 2 - 0.5  # columns fit
    fig.legend(loc="outside lower center", fontsize=TICK_PT, ncols=2 if two else 1)
    if title:
        ax.set_title(wrap(title, size[0] - 0.3), fontsize=TITLE_PT)
    return fig


def _plain_log_ticks(axis) -> None:
    """Label a log axis with plain numbers (0.03, 1000, 1e-15), at 1, 2 and 5 per decade when it spans
    under 3 decades (else at powers of ten)."""
    lo, hi = axis.get_view_interval()
    subs = (1.0, 2.0, 5.0) if math.log10(hi / lo) < 3 else (1.0,)
    axis.set_major_locator(LogLocator(subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _save(fig: Figure, path: Path) -> Path:
    """Write the figure as a PNG and free it."""
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)
