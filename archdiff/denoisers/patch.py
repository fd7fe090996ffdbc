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
(or p - p // 2) pixels of a border strip, so the starts fall into at most 3 x 3 rectangles (interior,
edge strips, corner blocks) with equally shaped targets; each is solved as one batch (batched matmul and
batched Cholesky, on the N x N dual system when F + 1 > N), in blocks of patches that bound the memory.
A rectangle of starts reads its first-layer outputs as a view, without copying them.
Every step runs in float64: on an H100, float64 matmuls run on tensor cores at the float32 (non-TF32)
rate, and degree-3 features with a 1e-5 ridge give Gram matrices with condition numbers up to
~F / 1e-5 that float32 would not solve accurately.

First layer for every patch at once. R y_P + b for every clamped start (u, v) is the cross-correlation of
the image with the F filters R [F, C, p, p] (``projections``): with an FFT along the rows (``"fft"``),
which turns the sum along each patch row into one matrix product per frequency, about
4 N (H - p + 1) F (W/2 + 1) (2 C p + W - p + 1) flops; or as matrix products of copied-out patches
(``"gemm"``, 2 N F C p^2 (H - p + 1)(W - p + 1) flops, fewer for p <= 7 but memory-bound on a CPU:
measured 1.3-4x slower there). ``"auto"`` (the default) takes fft, or gemm where a single patch covers
the image (the plain product, nothing copied). ``flops`` counts the work of one level.

The authors' released code loops over every pixel in Python, fitting one regression per pixel; it does not
make clear whether each pixel draws its own random matrix. Here one R per step is shared by all patches of
that step, which keeps the model translation-equivariant in its features (only W depends on position).

Saved (``saved.py``, kind "patch-polynomial"): its settings, training images, random layer per (p, F),
feature divisor and each fitted level's W and scales per block of patches (the blocks themselves follow
from the settings); a level not saved is fitted on demand, as the original would have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from archdiff import seeding
from archdiff.denoisers.base import LevelFitted, check_data
from archdiff.denoisers.polynomial import (
    Recipe,
    divisor_tensor,
    feature_divisor,
    fit_noise,
    power_features,
    random_layer,
    recipe_of,
)
from archdiff.denoisers.saved import StateDict, saved_config
from archdiff.linalg import flatten
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
    """A rectangle of patch starts of one class, rows ``u`` x columns ``v`` (slices of the starts), and the
    pixel rows [qu, r] / cols [qv, c] each start serves."""

    u: slice
    v: slice
    rows: torch.Tensor
    cols: torch.Tensor

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def served(self) -> tuple:
        """Index of the served pixels in images [N, C, H, W], selecting [N, C, qu, qv, r, c]."""
        return (slice(None), slice(None), self.rows[:, None, :, None], self.cols[None, :, None, :])

    def pixels(self, img: torch.Tensor) -> torch.Tensor:
        """The served pixels of images [N, C, H, W] as [Q, N, C r c] (Q = qu qv, starts row-major)."""
        return img[self.served].permute(2, 3, 0, 1, 4, 5).reshape(len(self), img.shape[0], -1)

    def put(self, out: torch.Tensor, values: torch.Tensor) -> None:
        """Write values [Q, B, C r c] into the served pixels of out [B, C, H, W]."""
        (qu, r), (qv, c) = self.rows.shape, self.cols.shape
        v = values.reshape(qu, qv, values.shape[1], out.shape[1], r, c).permute(2, 3, 0, 1, 4, 5)
        out[self.served] = v.to(out.dtype)


def axis_groups(size: int, p: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Patch starts along one axis in runs of consecutive starts serving equally many pixels:
    [(starts [k], pixels [k, r])] (at most 3 runs: the first start, the interior, the last start)."""
    owner = (torch.arange(size) - p // 2).clamp(0, size - p)  # [size] start serving each pixel
    count = torch.bincount(owner, minlength=size - p + 1)  # every start serves >= 1 pixel
    first = torch.cumsum(count, 0) - count
    edges = [0, *((count[1:] != count[:-1]).nonzero()[:, 0] + 1).tolist(), len(count)]
    groups = []
    for a, b in zip(edges[:-1], edges[1:]):
        starts = torch.arange(a, b)
        groups.append((starts, first[a:b, None] + torch.arange(int(count[a]))))
    return groups


def blocks(height: int, width: int, p: int, max_patches: int, device=None) -> list[Block]:
    """All patches of an image as rectangles of equally shaped targets, each of at most max_patches."""
    out = []
    for us, rows in axis_groups(height, p):
        for vs, cols in axis_groups(width, p):
            tv = min(len(vs), max_patches)
            tu = max(1, max_patches // tv)
            for a in range(0, len(us), tu):
                for b in range(0, len(vs), tv):
                    u = slice(int(us[a]), int(us[min(a + tu, len(us)) - 1]) + 1)
                    v = slice(int(vs[b]), int(vs[min(b + tv, len(vs)) - 1]) + 1)
                    out.append(Block(u, v, rows[a:a + tu].to(device), cols[b:b + tv].to(device)))
    return out


PROJECTION_METHODS = ("auto", "fft", "gemm")
WORK_BYTES = 2**29  # bounds the working set of one chunk of the projections


def projection_flops(n: int, c: int, h: int, w: int, p: int, f: int) -> dict[str, float]:
    """Flops of R y_P for all n images and all clamped starts, by method: {"gemm": ..., "fft": ...}
    (all of it matrix products: the patch product, or per frequency the product over (c, i) of the real
    and imaginary parts, then the inverse transform at the V valid columns)."""
    nu, nv, nk = h - p + 1, w - p + 1, w // 2 + 1
    return {"gemm": 2.0 * n * f * c * p * p * nu * nv,
            "fft": 4.0 * n * nu * f * nk * (2 * c * p + nv)}


def projections(img: torch.Tensor, r: torch.Tensor, b: torch.Tensor, p: int, method: str = "auto"):
    """R y_P + b for every clamped p x p patch start (u, v) of images [N, C, H, W]: [U, V, N, F],
    U = H - p + 1, V = W - p + 1 (laid out per start, so a rectangle of starts is a view).
    ``method="auto"``: gemm for a single start (the plain product, nothing copied), else fft."""
    n, c, h, w = img.shape
    f, nu, nv = r.shape[0], h - p + 1, w - p + 1
    out = img.new_empty(nu, nv, n, f)
    if method == "auto":
        method = "gemm" if nu == nv == 1 else "fft"
    if method == "gemm":
        _direct_projections(img, r, out)
    elif method == "fft":
        _row_fft_projections(img, r.reshape(f, c, p, p), out)
    else:
        raise ValueError(f"method must be one of {', '.join(PROJECTION_METHODS)}, got {method!r}")
    return out.add_(b)


def _chunks(n: int, rows: int, per_row_image: int):
    """(image slice, row slice) pairs covering n images x ``rows`` output rows, each chunk's working set
    (per_row_image bytes per row and image) under WORK_BYTES: whole image sets where one row fits."""
    per_row = per_row_image * n
    if per_row <= WORK_BYTES:
        step = WORK_BYTES // per_row
        return [(slice(0, n), slice(u, min(u + step, rows))) for u in range(0, rows, step)]
    m = max(1, WORK_BYTES // per_row_image)
    return [(slice(k, min(k + m, n)), slice(u, u + 1)) for u in range(rows) for k in range(0, n, m)]


def _direct_projections(img: torch.Tensor, r: torch.Tensor, out: torch.Tensor) -> None:
    """R y_P for every start into out [U, V, N, F]: patches copied out (unfold), one matrix product per
    chunk of rows of starts."""
    n, c, h, w = img.shape
    nu, nv, _, f = out.shape
    p = h - nu + 1
    for part, rows in _chunks(n, nu, 8 * nv * (c * p * p + f)):
        seg = img[part, :, rows.start:rows.stop + p - 1].unfold(2, p, 1).unfold(3, p, 1)  # [m,C,u,V,p,p]
        a = seg.permute(2, 3, 0, 1, 4, 5).reshape(-1, c * p * p)  # [u V m, C p p]
        _product_into(out[rows, :, part], a, r.T)


def _row_fft_projections(img: torch.Tensor, filters: torch.Tensor, out: torch.Tensor) -> None:
    """sum_{c,i,j} R[f,c,i,j] y[n,c,u+i,v+j] for valid (u, v) into out [U, V, N, F], through an FFT along
    the rows.

    Along w the sum over j is a cross-correlation: with Y = rfft_w(y) and K = conj(rfft_w(R)) (zero-padded
    to W), Z[n,f,u,k] = sum_{c,i} Y[n,c,u+i,k] K[f,c,i,k] is one matrix product per frequency k over
    (c, i), done in real arithmetic as [Re Y, Im Y] [[Re K, Im K], [-Im K, Re K]] (the rows u+i are a
    sliding window); an inverse DFT along w evaluated at the V valid columns only (a real matrix product
    over the real and imaginary parts, with Hermitian weights) gives z, written in place.
    """
    n, c, h, w = img.shape
    f, _, p, _ = filters.shape
    nu, nv, nk = h - p + 1, w - p + 1, w // 2 + 1
    kernel = torch.fft.rfft(filters, n=w, dim=-1).conj().permute(3, 1, 2, 0).reshape(nk, c * p, f)
    kr, ki = kernel.real, kernel.imag
    weights = (torch.cat([kr, -ki], 1), torch.cat([ki, kr], 1))  # [K, 2 C p, F] giving Re Z, Im Z
    k = torch.arange(nk, device=img.device, dtype=img.dtype)
    weight = torch.full_like(k, 2.0 / w)  # Hermitian weights: the frequencies k and W - k are one pair
    weight[0] = 1.0 / w
    if w % 2 == 0:
        weight[-1] = 1.0 / w
    angle = 2 * math.pi * torch.arange(nv, device=img.device, dtype=img.dtype)[:, None] * k / w
    # z_v = Re sum_k e[v, k] Z_k = sum_k (Re e Re Z - Im e Im Z): one real product over [Re Z; Im Z]
    inverse = torch.cat([weight * angle.cos(), -weight * angle.sin()], 1)  # [V, 2K]
    spectrum = torch.view_as_real(torch.fft.rfft(img, dim=-1))  # [N, C, H, K, 2]
    for part, rows in _chunks(n, nu, 8 * nk * (2 * c * p + 2 * f)):
        nr, m = rows.stop - rows.start, part.stop - part.start
        a = spectrum[part, :, rows.start:rows.stop + p - 1].unfold(2, p, 1)  # [m, C, nr, K, 2, p]
        a = a.permute(3, 2, 0, 4, 1, 5).reshape(nk, nr * m, 2 * c * p)  # [K, nr m, (re/im, C, p)]
        z = img.new_empty(2, nk, nr * m, f)  # [Re Z; Im Z]
        torch.bmm(a, weights[0], out=z[0])
        torch.bmm(a, weights[1], out=z[1])
        z = z.view(2 * nk, nr, m * f).transpose(0, 1)  # [nr, 2K, m F]
        _product_into(out[rows, :, part], inverse.expand(nr, nv, 2 * nk), z)


def _product_into(dest: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """dest = a @ b, the product's elements in dest's row-major order: written in place when dest is
    contiguous (a chunk of all images), else copied."""
    shape = (*a.shape[:-1], b.shape[-1])
    if dest.is_contiguous():
        torch.matmul(a, b, out=dest.view(shape))
    else:
        dest.copy_(torch.matmul(a, b).view(dest.shape))


@dataclass(frozen=True)
class PatchFit:
    """A level's fit: its step and, per block of patches, (block, scales [qu, qv, 1, F] / None,
    W [Q, F + 1, C r c])."""

    step: int
    chunks: list[tuple[Block, torch.Tensor | None, torch.Tensor]]


class PatchPolynomialDenoiser(LevelFitted):
    """Per-pixel random-feature polynomial regression on clamped patches, one fit per noise level.

    ``schedule`` lists (patch size, width) per sampling step; ``levels`` the noise levels (alpha_bar,
    noisiest first) the sampler calls at, one per step (``sampling_levels(...)[:-1]``). A level is served
    by the step whose level is nearest. With one schedule entry ``levels`` may be omitted.
    ``max_chunk_bytes`` bounds the float64 working memory of one chunk of patches.
    """

    kind = "patch-polynomial"

    def __init__(
        self,
        data: torch.Tensor,
        schedule: Sequence[tuple[int, int]],
        levels: Sequence[float] | torch.Tensor | None = None,
        degree: int = 3,
        ridge: float = 1e-5,
        seed: int = 0,
        recipe: str | dict | Recipe = "authors",
        max_chunk_bytes: int = 2**30,
        method: str = "auto",
    ):
        super().__init__()
        if check_data(data).ndim != 4:
            raise ValueError(f"data must be images [N, C, H, W], got shape {tuple(data.shape)}")
        _, c, h, w = data.shape
        schedule = [(int(p), int(f)) for p, f in schedule]
        if not schedule or any(not 1 <= p <= min(h, w) or f < 1 for p, f in schedule):
            raise ValueError(f"schedule needs (patch, width) pairs, 1 <= patch <= {min(h, w)}, width >= 1")
        if levels is None and len(schedule) != 1:
            raise ValueError("levels are needed to look up a schedule of more than one step")
        if levels is not None and len(levels) != len(schedule):
            raise ValueError(f"{len(levels)} levels for {len(schedule)} schedule steps")
        if method not in PROJECTION_METHODS:
            raise ValueError(f"method must be one of {', '.join(PROJECTION_METHODS)}, got {method!r}")
        self.method, self.shape = method, (c, h, w)
        self.data = data.to(torch.float64)  # [N, C, H, W]
        self.schedule, self.degree, self.ridge, self.seed = schedule, degree, ridge, seeding.check_seed(seed)
        self.levels = None if levels is None else torch.as_tensor(levels, dtype=torch.float64).cpu()
        self.recipe, self.max_chunk_bytes = recipe_of(recipe), max_chunk_bytes
        self.recipe.check_inputs(data.shape[0])  # one noisy copy of every image per level
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
        n = self.data.shape[0]
        per_patch = 8 * (n * 2 * (f + 1) + 2 * min(f + 1, n) ** 2)  # phi (a scaled copy); Gram, factor
        return max(1, self.max_chunk_bytes // per_patch)

    def blocks(self, p: int, f: int) -> list[Block]:
        """The blocks of patch starts a level of patch size p and width f is fitted and applied in."""
        return blocks(self.data.shape[2], self.data.shape[3], p, self.chunk(p, f), self.data.device)

    def flops(self, step: int, batch: int) -> dict[str, float]:
        """Floating-point work of fitting one level of ``step`` and applying it to ``batch`` images:
        the first layer (the cheaper of gemm and row FFT: a floor), the Gram (or dual) matrices and their
        Cholesky factors, the solves and the output: {"projections", "gram", "solve", "apply", "total"}."""
        n, c, h, w = self.data.shape
        p, f = self.schedule[step]
        k = min(f + 1, n)  # the order of the system solved: normal equations, or the dual's
        solve = 0.0
        for us, rows in axis_groups(h, p):  # a patch class: its count and its D target columns
            for vs, cols in axis_groups(w, p):
                d = c * rows.shape[1] * cols.shape[1]
                right = d if f + 1 <= n else min(f + 1, d)  # the dual solves for the narrower side
                solve += len(us) * len(vs) * (2.0 * k * k * right + 2.0 * n * (f + 1) * d)
        cost = {
            "projections": min(projection_flops(n + batch, c, h, w, p, f).values()),
            "gram": (h - p + 1) * (w - p + 1) * (2.0 * n * k * k + k**3 / 3),
            "solve": solve,  # triangular solves and the products with the targets
            "apply": 2.0 * batch * c * h * w * (f + 1),
        }
        return {**cost, "total": sum(cost.values())}

    def features(self, z: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        """Degree-k features of first-layer outputs z [..., B, F] as the recipe says: [..., B, F + 1]."""
        return power_features(z, scale, self.degree, self.recipe.normalize, self.divisor)

    def fit_level(self, alpha_bar: float) -> PatchFit:
        """Ridge least squares for every patch class at one level, from one noisy copy of each image."""
        i = self.step(alpha_bar)
        p, f = self.schedule[i]
        r, b = self.layers[(p, f)]
        x = self.data
        noise = fit_noise(self.seed, alpha_bar, tuple(flatten(x).shape))  # the global model's, [N, D]
        y = noisy(x, alpha_bar, noise.to(x.device).reshape(x.shape))
        z_all = projections(y, r, b, p, self.method)  # [H - p + 1, W - p + 1, N, F]
        chunks = []
        for blk in self.blocks(p, f):
            z = z_all[blk.u, blk.v]  # [qu, qv, N, F], a view
            scale = self.recipe.column_scale(z, 2)  # [qu, qv, 1, F] or None
            phi = self.features(z, scale).flatten(0, 1)  # [Q, N, F + 1]
            w = self.recipe.solve(phi, blk.pixels(x), self.ridge)  # [Q, F + 1, C r c]
            chunks.append((blk, scale, w))
        return PatchFit(i, chunks)

    def apply_fit(self, fit: PatchFit, x: torch.Tensor) -> torch.Tensor:
        p, f = self.schedule[fit.step]
        r, b = self.layers[(p, f)]
        z_all = projections(x.to(torch.float64), r, b, p, self.method)  # [H - p + 1, W - p + 1, B, F]
        out = torch.empty_like(x)
        for blk, scale, w in fit.chunks:
            z = z_all[blk.u, blk.v]  # [qu, qv, B, F]
            blk.put(out, self.features(z, scale).flatten(0, 1) @ w)  # [Q, B, C r c]
        return out

    def fit_tensors(self, fit: PatchFit) -> StateDict:
        """Block j's W and scales as "<j>.weights", "<j>.scale" (the blocks follow from the settings)."""
        out = {}
        for j, (_, scale, w) in enumerate(fit.chunks):
            out.update({f"{j}.weights": w, **({} if scale is None else {f"{j}.scale": scale})})
        return out

    def fit_from(self, alpha_bar: float, tensors: StateDict) -> PatchFit:
        i = self.step(alpha_bar)
        blks = self.blocks(*self.schedule[i])
        if sum(k.endswith(".weights") for k in tensors) != len(blks):
            raise ValueError(f"the saved fit of level {alpha_bar} does not match its {len(blks)} blocks")
        return PatchFit(i, [(blk, tensors.get(f"{j}.scale"), tensors[f"{j}.weights"])
                            for j, blk in enumerate(blks)])

    def to_saved(self) -> tuple[dict, StateDict]:
        """config.json's content; the images [N, C, H, W], random layers "layer.<p>x<F>.R" / ".b", divisor
        and fits."""
        levels, fits = self.saved_fits()
        settings = {"schedule": [list(s) for s in self.schedule], "degree": self.degree, "ridge": self.ridge,
                    "levels": None if self.levels is None else self.levels.tolist(), "seed": self.seed,
                    "recipe": asdict(self.recipe), "max_chunk_bytes": self.max_chunk_bytes,
                    "method": self.method}
        layers = {f"layer.{p}x{f}.{name}": t for (p, f), pair in self.layers.items()
                  for name, t in zip("Rb", pair)}
        tensors = {"data": self.data, **layers, **divisor_tensor(self.divisor), **fits}
        return saved_config(self.kind, self.shape, settings=settings, fitted_levels=levels), tensors

    @classmethod
    def from_saved(cls, config: dict, tensors: StateDict, device="cpu") -> PatchPolynomialDenoiser:
        """The model ``to_saved`` described, its saved random layers and fits in place."""
        t = {k: v.to(device) for k, v in tensors.items()}
        model = cls(t["data"], **config["settings"])
        model.layers = {(p, f): (t[f"layer.{p}x{f}.R"], t[f"layer.{p}x{f}.b"]) for p, f in model.layers}
        model.divisor = float(t["divisor"])
        model.restore_fits(config["fitted_levels"], t)
        return model
