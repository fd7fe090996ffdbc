"""Patch polynomial denoiser: the polynomial regression of Sec. 3.2 done per pixel on its patch (Fig. 8).

Notation (paper Sec. 3.2; locality as in Kamb & Ganguli 2025, the paper's [9]):
    y            noisy image [C, H, W] at level a: y = sqrt(a) x + sqrt(1 - a) n
    p, F         patch size and feature count of the sampling step that level a belongs to
    s(i)         patch start serving pixel row i: clamp(i - p // 2, 0, H - p) (likewise for columns), so
                 pixel (i, j) reads the clamped p x p patch y_P, P = P(s(i), s(j)), that stays in the image
    R, b         the step's fixed random layer [F, C p p] and bias [F], drawn from ``seed`` exactly as the
                 global ``PolynomialDenoiser`` draws its own (same shapes -> the same R, b)
    phi(y_P)     power_features(R y_P + b): degree-k features plus a constant, [F + 1]
    W_ij         [F + 1, C]: the ridge least squares from phi(y_P) to the clean pixel x_ij over one noisy
                 copy of every training image (the noise of ``fit_noise(seed, a)``, as the global model)

    x0_hat_ij(y) = phi(y_P(i, j))^T W_ij       (only the centre pixel's prediction of each patch is kept)

With p = H = W there is one patch and this is exactly the global polynomial denoiser.

Vectorization. Clamping leaves only (H - p + 1) (W - p + 1) distinct patches, and the pixels one patch
serves share its features and Gram matrix, so each patch's least squares is solved once with all its
pixels' targets as columns. Along an axis, a patch start serves one pixel (interior), or the p // 2 + 1
(or p - p // 2) pixels of a border strip, so patches fall into at most 3 x 3 classes (interior, edge
strips, corner blocks) with equally shaped targets; each class is solved as one batch (batched matmul and
batched Cholesky, on the N x N dual system when F + 1 > N), in chunks of patches that bound the memory.
Every step runs in float64: on an H100, float64 matmuls run on tensor cores at the float32 (non-TF32)
rate, and degree-3 features with a 1e-5 ridge give Gram matrices with condition numbers up to
~F / 1e-5 that float32 would not solve accurately.

The authors' released code loops over every pixel in Python, fitting one regression per pixel; it does not
make clear whether each pixel draws its own random matrix. Here one R per step is shared by all patches of
that step, which keeps the model translation-equivariant in its features (only W depends on position).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from archdiff import seeding
from archdiff.denoisers.base import LevelFitted
from archdiff.denoisers.polynomial import (
    Recipe,
    feature_divisor,
    fit_noise,
    power_features,
    random_layer,
    recipe_of,
)
from archdiff.linalg import TINY, flatten, ridge_solve_batched
from archdiff.schedule import noisy

PAPER_PATCHES = (64, 55, 45, 35, 27, 21, 15, 11, 7, 3)  # patch size per step of 10, for 64 x 64 images
PAPER_WIDTHS = (1024, 1024, 512, 256, 128, 128, 64, 32, 16, 8)  # feature count F per step
PAPER_SIZE = 64


def scaled_schedule(
    size: int, patches: Sequence[int] = PAPER_PATCHES, widths: Sequence[int] = PAPER_WIDTHS,
    reference: int = PAPER_SIZE,
) -> list[tuple[int, int]]:
    """The paper's (patch, width) per step with patch sizes scaled by size / reference (odd, in [3, size])."""
    out = []
    for p, f in zip(patches, widths):
        q = p * size / reference
        odd = 2 * round((q - 1) / 2) + 1
        out.append((size if q >= size else min(max(odd, 3), size), f))
    return out


@dataclass
class Block:
    """A chunk of patches of one class: starts (u, v) [Q] and the pixel rows [Q, r] / cols [Q, c] served."""

    u: torch.Tensor
    v: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor

    def pixels(self, img: torch.Tensor) -> torch.Tensor:
        """The served pixels of images [N, C, H, W] as [Q, N, C r c]."""
        t = img[:, :, self.rows[:, :, None], self.cols[:, None, :]]  # [N, C, Q, r, c]
        return t.movedim(2, 0).reshape(len(self.u), img.shape[0], -1)

    def put(self, out: torch.Tensor, values: torch.Tensor) -> None:
        """Write values [Q, B, C r c] into the served pixels of out [B, C, H, W]."""
        q, b = values.shape[:2]
        v = values.reshape(q, b, out.shape[1], self.rows.shape[1], self.cols.shape[1])
        out[:, :, self.rows[:, :, None], self.cols[:, None, :]] = v.movedim(0, 2).to(out.dtype)


def axis_groups(size: int, p: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Patch starts along one axis grouped by how many pixels they serve: [(starts [k], pixels [k, r])]."""
    owner = (torch.arange(size) - p // 2).clamp(0, size - p)  # [size] start serving each pixel
    count = torch.bincount(owner, minlength=size - p + 1)  # every start serves >= 1 pixel
    first = torch.cumsum(count, 0) - count
    groups = []
    for c in count.unique().tolist():
        starts = (count == c).nonzero()[:, 0]
        groups.append((starts, first[starts, None] + torch.arange(c)))
    return groups


def blocks(height: int, width: int, p: int, max_patches: int, device=None) -> list[Block]:
    """All patches of an image, grouped in classes of equally shaped targets, chunked to max_patches."""
    out = []
    for us, rows in axis_groups(height, p):
        for vs, cols in axis_groups(width, p):
            nu, nv = len(us), len(vs)
            u, r = us.repeat_interleave(nv), rows.repeat_interleave(nv, 0)
            v, c = vs.repeat(nu), cols.repeat(nu, 1)
            for k in range(0, nu * nv, max_patches):
                s = slice(k, k + max_patches)
                out.append(Block(*(t[s].to(device) for t in (u, v, r, c))))
    return out


def patches(img: torch.Tensor, u: torch.Tensor, v: torch.Tensor, p: int) -> torch.Tensor:
    """The p x p patches at starts (u, v) [Q] of images [N, C, H, W]: [Q, N, C p p] (C, row, col order)."""
    k = torch.arange(p, device=img.device)
    t = img[:, :, (u[:, None] + k)[:, :, None], (v[:, None] + k)[:, None, :]]  # [N, C, Q, p, p]
    return t.movedim(2, 0).reshape(len(u), img.shape[0], -1)


@dataclass(frozen=True)
class PatchFit:
    """A level's fit: its step and, per chunk of patches, (block, scales [Q, 1, F], W [Q, F + 1, .])."""

    step: int
    chunks: list[tuple[Block, torch.Tensor, torch.Tensor]]


class PatchPolynomialDenoiser(LevelFitted):
    """Per-pixel random-feature polynomial regression on clamped patches, one fit per noise level.

    ``schedule`` lists (patch size, width) per sampling step; ``levels`` the noise levels (alpha_bar,
    noisiest first) the sampler calls at, one per step (``sampling_levels(...)[:-1]``). A level is served
    by the step whose level is nearest. With one schedule entry ``levels`` may be omitted.
    ``max_chunk_bytes`` bounds the float64 working memory of one chunk of patches.
    """

    def __init__(
        self,
        data: torch.Tensor,
        schedule: Sequence[tuple[int, int]],
        levels: Sequence[float] | torch.Tensor | None = None,
        degree: int = 3,
        ridge: float = 1e-5,
        seed: int = 0,
        recipe: str | Recipe = "authors",
        max_chunk_bytes: int = 2**30,
    ):
        super().__init__()
        if data.ndim != 4:
            raise ValueError(f"data must be images [N, C, H, W], got shape {tuple(data.shape)}")
        _, c, h, w = data.shape
        schedule = [(int(p), int(f)) for p, f in schedule]
        if not schedule or any(not 1 <= p <= min(h, w) or f < 1 for p, f in schedule):
            raise ValueError(f"schedule needs (patch, width) pairs, 1 <= patch <= {min(h, w)}, width >= 1")
        if levels is None and len(schedule) != 1:
            raise ValueError("levels are needed to look up a schedule of more than one step")
        if levels is not None and len(levels) != len(schedule):
            raise ValueError(f"{len(levels)} levels for {len(schedule)} schedule steps")
        self.data = data.to(torch.float64)  # [N, C, H, W]
        self.schedule, self.degree, self.ridge, self.seed = schedule, degree, ridge, seeding.check_seed(seed)
        self.levels = None if levels is None else torch.as_tensor(levels, dtype=torch.float64).cpu()
        self.recipe, self.max_chunk_bytes = recipe_of(recipe), max_chunk_bytes
        self.divisor = feature_divisor(self.data, self.recipe)
        # one random layer per distinct (patch, width), drawn as the global model draws its own
        self.layers = {(p, f): random_layer(c * p * p, f, seed, self.recipe.bias, data.device)
                       for p, f in set(schedule)}

    def step(self, alpha_bar: float) -> int:
        """Index of the schedule step that serves this level (nearest listed level)."""
        if self.levels is None:
            return 0
        return int((self.levels - alpha_bar).abs().argmin())

    def chunk(self, p: int, f: int) -> int:
        """Patches per chunk so that the chunk's float64 working set stays under max_chunk_bytes."""
        n, c = self.data.shape[:2]
        per_patch = 8 * (n * (3 * c * p * p + 3 * (f + 1)) + 3 * min(f + 1, n) ** 2)  # bounds measured peaks
        return max(1, self.max_chunk_bytes // per_patch)

    def features(self, z: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Degree-k features of first-layer outputs z [Q, B, F] as the recipe says: [Q, B, F + 1]."""
        return power_features(z, scale, self.degree, self.recipe.normalize, self.divisor)

    def fit_level(self, alpha_bar: float) -> PatchFit:
        """Ridge least squares for every patch class at one level, from one noisy copy of each image."""
        i = self.step(alpha_bar)
        p, f = self.schedule[i]
        r, b = self.layers[(p, f)]
        x = self.data
        noise = fit_noise(self.seed, alpha_bar, tuple(flatten(x).shape))  # the global model's, [N, D]
        y = noisy(x, alpha_bar, noise.to(x.device).reshape(x.shape))
        chunks = []
        for blk in blocks(x.shape[2], x.shape[3], p, self.chunk(p, f), x.device):
            z = patches(y, blk.u, blk.v, p) @ r.T + b  # [Q, N, F]
            scale = z.abs().amax(1, keepdim=True).clamp_min(TINY)  # [Q, 1, F]
            phi = self.features(z, scale)  # [Q, N, F + 1]
            w = ridge_solve_batched(phi, blk.pixels(x), self.ridge, self.recipe.relative_ridge)  # [Q, F+1, .]
            chunks.append((blk, scale, w))
        return PatchFit(i, chunks)

    def apply_fit(self, fit: PatchFit, x: torch.Tensor) -> torch.Tensor:
        p, f = self.schedule[fit.step]
        r, b = self.layers[(p, f)]
        y = x.to(torch.float64)
        out = torch.empty_like(x)
        for blk, scale, w in fit.chunks:
            z = patches(y, blk.u, blk.v, p) @ r.T + b  # [Q, B, F]
            blk.put(out, self.features(z, scale) @ w)  # [Q, B, C r c]
        return out
