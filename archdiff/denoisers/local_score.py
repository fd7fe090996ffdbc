"""Local-score denoisers: the local score (LS) and equivariant local score (ELS) machines, calibrated.

Notation (Kamb & Ganguli, ICML 2025, "An analytic theory of creativity in convolutional diffusion models":
their LS and ELS machines, the optimal denoisers under locality, and under locality plus equivariance):
    phi_i       training images i = 1..N, [C, H, W]; phi_i(y) the C values of pixel y
    x_t         the noisy image at level a (alpha_bar): x_t = sqrt(a) x_0 + sqrt(1 - a) n
    s, v        sqrt(a) and 1 - a (floored at MIN_VARIANCE)
    x, y        pixel positions (rows, columns); d = (dh, dw) an offset
    W_p         the window of size p: offsets [-(p // 2), p - 1 - p // 2] per axis (centred for odd p). The
                windows nest (W_1 in W_2 in ...): offset d first enters at size ``first_size(d)``.
    P_x(z)      the patch of image z at x: z(x + d) for d in W_p (all channels). Outside the image, by
                ``padding`` as the network pads: "zeros" (z = 0 there, both images), "circular" (positions
                wrap), "clipped" (boundary-aware: only the in-image part M_x = {d in W_p : x + d in image} of
                the patch is compared, and position y is a candidate only when y + M_x lies in the image)

ELS (equivariant: every training image at every position):
    x0_hat(x) = sum_{i, y} w_{i,y}(x) phi_i(y),
    w_{i,y}(x) = softmax over (i, y) of -|P_x(x_t) - s P_y(phi_i)|^2 / (2 v)
LS (local, not equivariant): the same with y = x only (softmax over i). For LS, "zeros" and "clipped" agree
(outside the image both patches are 0). With a window covering the whole image from every pixel (and no
wrap), LS is the memorizing denoiser (``closed_form.EmpiricalOptimal``); ELS at p = 1 is the posterior mean
of one pixel under the pooled pixel values of all images.

Computation. |u - s w|^2 = |u|^2 - 2 s u.w + s^2 |w|^2, and |u|^2 = |P_x(x_t)|^2 is the same for every
candidate (i, y) of pixel x, so the logit is (s X - s^2 E / 2) / v with X = P_x(x_t) . P_y(phi_i) (one
matrix product of noisy patches [pixels, C |W_p|] by training patches [candidates, C |W_p|]) and
E = |P_y(phi_i)|^2 (restricted to M_x when clipped). Everything runs in float64: at small v the logits are
large differences of these terms. Because the windows nest, X and E of size p are those of the previous
size plus the offsets entering at p, so ``local_means`` answers several sizes in one pass (what
calibration needs). Candidates come in blocks of training images and pixels in tiles, the largest
intermediate (pixels x candidates) bounded by ``chunk`` elements; the softmax over candidate blocks is a
running log-sum-exp (running max, sum and weighted sum per pixel). Two shortcuts, exact: a window that sees
the whole image from every pixel makes X a function of y - x alone, the cross-correlation of x_t with phi_i
(one FFT per image, no patches); clipped, only the y where x's clipped window fits are candidates, so for
large windows a block of ``BLOCK`` x ``BLOCK`` pixels is compared only with the positions its pixels fit.

Calibration (Kamb & Ganguli's single time-dependent hyperparameter): at each noise level, the patch size
whose output is closest (mean squared difference) to a trained network's on the same noisy inputs;
``calibration_inputs`` gives the inputs the network meets when it samples (its own DDIM trajectory).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from archdiff.denoisers.base import Denoiser, check_data, per_level
from archdiff.denoisers.saved import StateDict, saved_config

PADDINGS = ("zeros", "circular", "clipped")
MIN_VARIANCE = 1e-12  # floor on v = 1 - a, as the memorizing denoiser's
CHUNK = 2**22  # elements of the largest intermediate: pixels x candidates of one tile
BLOCK = 4  # side of the pixel blocks of a clipped ELS tile (a block is compared only with positions it fits)


def first_size(t: torch.Tensor) -> torch.Tensor:
    """The smallest window size p whose offsets [-(p // 2), p - 1 - p // 2] contain offset t (per element)."""
    return torch.where(t >= 0, 2 * t + 1, -2 * t)


def window_offsets(p: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The offsets of W_p as [p*p, 2] (dh, dw), ordered by the size at which each enters, and those sizes."""
    t = torch.arange(-(p // 2), p - p // 2, device=device)
    d = torch.cartesian_prod(t, t)
    size = torch.maximum(first_size(d[:, 0]), first_size(d[:, 1]))
    order = torch.argsort(size, stable=True)
    return d[order], size[order]


def covering_size(shape: Sequence[int], padding: str) -> int:
    """The smallest window that sees the whole image from every pixel: the image side with circular
    padding (one full wrap), else 2 * side - 1."""
    side = max(shape[-2:])
    return side if padding == "circular" else 2 * side - 1


def _shifted(pos: torch.Tensor, n: int, offsets: torch.Tensor, padding: str) -> torch.Tensor:
    """Index [P, K] of position + offset along one axis of size n: wrapped, or n (a zero row) outside."""
    idx = pos[:, None] + offsets[None]
    if padding == "circular":
        return idx % n
    return torch.where((idx >= 0) & (idx < n), idx, n)


def patches(images: torch.Tensor, offsets: torch.Tensor, padding: str,
            positions: torch.Tensor | None = None) -> torch.Tensor:
    """Patches of images [N, C, H, W] for offsets [K, 2] at flat positions [P] (default: every pixel):
    [N, P, K C], features ordered (k, c)."""
    n, c, h, w = images.shape
    pos = torch.arange(h * w, device=images.device) if positions is None else positions
    padded = F.pad(images, (0, 1, 0, 1))  # the zero row and column that out-of-image offsets read
    rows = _shifted(pos // w, h, offsets[:, 0], padding)
    cols = _shifted(pos % w, w, offsets[:, 1], padding)
    return padded[:, :, rows, cols].permute(0, 2, 3, 1).reshape(n, len(pos), -1)  # from [N, C, P, K]


def inside(shape: Sequence[int], offsets: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """M [P, K]: 1.0 where pixel x + offset k lies in the image, for the flat pixels [P]."""
    h, w = shape[-2:]
    rows = _shifted(pixels // w, h, offsets[:, 0], "zeros") < h
    cols = _shifted(pixels % w, w, offsets[:, 1], "zeros") < w
    return (rows & cols).to(torch.float64)


class PatchSource:
    """Patches of images [N, C, H, W] for each segment of offsets: all positions gathered once when they fit
    in ``limit`` elements (then rows are selected per tile), else gathered per tile."""

    def __init__(self, images: torch.Tensor, offsets: torch.Tensor, segments: list[tuple[int, slice]],
                 padding: str, limit: int):
        self.images, self.offsets, self.padding = images, offsets, padding
        self.segments = [seg for _, seg in segments]
        fits = images[:, :1].numel() * images.shape[1] * len(offsets) <= limit
        self.all = [patches(images, offsets[seg], padding) for seg in self.segments] if fits else None

    def at(self, j: int, rows: slice, positions: torch.Tensor) -> torch.Tensor:
        """Segment j's patches of images ``rows`` at the flat positions: [r, P, K C]."""
        if self.all is None:
            return patches(self.images[rows], self.offsets[self.segments[j]], self.padding, positions)
        t = self.all[j][rows]
        return t if len(positions) == t.shape[1] else t[:, positions]  # all positions: in order


def clipped_candidates(shape: Sequence[int], p: int, pixels: torch.Tensor, positions: torch.Tensor
                       ) -> torch.Tensor:
    """Boolean [P, Y]: y + M_x lies in the image (x's clipped window of size p, moved to y), for the flat
    pixels x [P] and positions y [Y]."""
    def axis(x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
        below = torch.clamp(x, max=p // 2)  # in-image reach of x's window below and above x
        above = torch.clamp(n - 1 - x, max=p - 1 - p // 2)
        return (y[None] >= below[:, None]) & (y[None] + above[:, None] <= n - 1)

    h, w = shape[-2:]
    return axis(pixels // w, positions // w, h) & axis(pixels % w, positions % w, w)


@dataclass
class Running:
    """The running softmax of one patch size: max m, sum l and weighted sum num of exp(logit - m)."""

    m: torch.Tensor  # [B, H W]
    l: torch.Tensor  # [B, H W]
    num: torch.Tensor  # [B, H W, C]

    @classmethod
    def empty(cls, b: int, hw: int, c: int, device) -> Running:
        """No candidate seen yet."""
        kw = dict(dtype=torch.float64, device=device)
        return cls(torch.full((b, hw), -math.inf, **kw), torch.zeros(b, hw, **kw),
                   torch.zeros(b, hw, c, **kw))

    def add(self, rows: tuple[slice, torch.Tensor], logits: torch.Tensor,
            weighted: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Fold in logits [b, x, K] of the tile ``rows`` (overwritten); ``weighted(p)``: sum_k p_k value_k."""
        m_old = self.m[rows]
        m_new = torch.maximum(m_old, logits.amax(-1))
        shift = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        scale = torch.exp(m_old - shift)
        p = logits.sub_(shift[..., None]).exp_()
        self.l[rows] = self.l[rows] * scale + p.sum(-1)
        self.num[rows] = self.num[rows] * scale[..., None] + weighted(p)
        self.m[rows] = m_new

    def mean(self) -> torch.Tensor:
        """The posterior means [B, H W, C]."""
        return self.num / self.l[..., None]


@dataclass(frozen=True)
class Tile:
    """Samples x pixels computed together, and the candidate positions y they are compared with."""

    samples: slice
    pixels: torch.Tensor  # [P] flat pixel indices x
    positions: torch.Tensor  # [Y] flat candidate positions y (ELS); LS compares y = x only

    @property
    def rows(self) -> tuple[slice, torch.Tensor]:
        """The index of this tile's [b, P] entries in [B, H W]."""
        return self.samples, self.pixels


def _span(n: int, first: int, stop: int, p: int) -> range:
    """Positions y (one axis) a clipped window of size p at any of pixels first..stop-1 can move to: the
    in-image reach below x is min(x, p // 2), above min(n - 1 - x, p - 1 - p // 2), and y must keep it."""
    return range(min(first, p // 2), n - min(n - stop, p - 1 - p // 2))


def _flat(rows: range, cols: range, w: int, device) -> torch.Tensor:
    """Flat indices of the pixels rows x cols of an image of width w."""
    r, c = (torch.arange(a.start, a.stop, device=device) for a in (rows, cols))
    return (r[:, None] * w + c[None]).flatten()


def _blocks(shape: Sequence[int], clipped_size: int | None, device
            ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(pixels, candidate positions) per block of pixels. Clipped ELS: blocks of ``BLOCK`` x ``BLOCK``
    pixels, each with the positions its windows of size ``clipped_size`` (the smallest asked: the most
    positions) can move to, where that halves the pairs at least; else the whole image, all positions."""
    h, w = shape[-2:]
    everything = [(torch.arange(h * w, device=device), torch.arange(h * w, device=device))]
    if clipped_size is None:
        return everything
    blocks = []
    for r in range(0, h, BLOCK):
        for c in range(0, w, BLOCK):
            rows, cols = range(r, min(r + BLOCK, h)), range(c, min(c + BLOCK, w))
            spans = _span(h, r, rows.stop, clipped_size), _span(w, c, cols.stop, clipped_size)
            blocks.append((_flat(rows, cols, w, device), _flat(*spans, w, device)))
    return blocks if 2 * sum(len(x) * len(y) for x, y in blocks) <= (h * w) ** 2 else everything


def _tiles(b: int, shape: Sequence[int], images: int, chunk: int, clipped_size: int | None,
           per_position: bool, device) -> list[Tile]:
    """Tiles of at most ``chunk`` pixel-candidate pairs (or one sample's pixels of a block, one by one)."""
    tiles = []
    for pix, ys in _blocks(shape, clipped_size, device):
        most = max(1, chunk // (images * (len(ys) if per_position else 1)))
        if most >= len(pix):
            step = most // len(pix)
            tiles += [Tile(slice(i, min(i + step, b)), pix, ys) for i in range(0, b, step)]
        else:
            tiles += [Tile(slice(i, i + 1), pix[j:j + most], ys)
                      for i in range(b) for j in range(0, len(pix), most)]
    return tiles


def _segments(sizes: list[int], entry: torch.Tensor) -> list[tuple[int, slice]]:
    """(size, offsets entering after the previous size up to this one) for ascending sizes."""
    out, start = [], 0
    for p in sizes:
        stop = int((entry <= p).sum())
        out.append((p, slice(start, stop)))
        start = stop
    return out


def whole_window(shape: Sequence[int], p: int, padding: str) -> bool:
    """Whether the window of size p sees the whole image, each pixel once, from every pixel."""
    h, w = shape[-2:]
    return p == h == w if padding == "circular" else p >= 2 * max(h, w) - 1


def _plan(sizes: list[int], device) -> tuple[list[tuple[int, slice]], torch.Tensor]:
    """(size, its entering offsets) for the ascending sizes, and the offsets of the largest window."""
    offsets, entry = window_offsets(sizes[-1], device=device)
    return _segments(sizes, entry), offsets


def local_means(data: torch.Tensor, x: torch.Tensor, alpha_bar: float, sizes: Sequence[int], *,
                equivariant: bool = True, padding: str = "zeros", chunk: int = CHUNK) -> torch.Tensor:
    """The ELS (or LS) posterior means of x [B, C, H, W] at one level for each patch size: [S, B, C, H, W].

    ELS windows that see the whole image (``whole_window``) all give one machine, computed without patches:
    clipped, only y = x fits, which is LS; zeros or circular, the logit depends on y - x alone, through the
    (zero-padded or circular) cross-correlation of x_t with phi_i (by FFT) and |phi_i|^2.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if min(sizes) < 1:
        raise ValueError(f"patch sizes must be >= 1, got {list(sizes)}")
    phi = data.to(x.device, torch.float64)
    xs = x.to(torch.float64)
    b, c, h, w = xs.shape
    ascending = sorted(set(int(p) for p in sizes))
    runs = {p: Running.empty(b, h * w, c, x.device) for p in ascending}
    whole = [p for p in ascending if equivariant and whole_window(xs.shape, p, padding)]
    local = [p for p in ascending if p not in whole]
    for p in whole:  # one machine: one running softmax
        runs[p] = runs[whole[0]]
    s, v = math.sqrt(alpha_bar), max(1.0 - alpha_bar, MIN_VARIANCE)
    groups = [local] if local else []
    if equivariant and padding == "clipped" and local:  # sizes compared in blocks of pixels go apart
        blocked = [p for p in local if len(_blocks(xs.shape, p, x.device)) > 1]
        groups = [g for g in ([p for p in local if p not in blocked], blocked) if g]
    for group in groups:
        clipped = group[0] if equivariant and padding == "clipped" else None
        blocked = clipped is not None and len(_blocks(xs.shape, clipped, x.device)) > 1
        _local(xs, _image_blocks(phi, group[-1], blocked, equivariant, chunk), _plan(group, x.device),
               equivariant, clipped, padding, s, v, runs, chunk)
    if whole and padding == "clipped":
        _local(xs, _image_blocks(phi, whole[0], False, False, chunk), _plan(whole[:1], x.device), False, None,
               padding, s, v, runs, chunk)
    elif whole:
        blocks = _image_blocks(phi, 1, False, True, chunk)
        tiles = _tiles(b, xs.shape, blocks[0].shape[0], chunk, None, True, x.device)
        index = [shift_index(xs.shape, padding, t.pixels, t.positions) for t in tiles]  # [P, Y] per tile
        for images in blocks:
            corr = cross_correlation(xs, images, padding)
            for tile, idx in zip(tiles, index):
                _whole_tile(corr, idx, xs, images, tile, padding, s, v, runs[whole[0]])
    out = torch.stack([runs[p].mean() for p in sizes])  # [S, B, H W, C]
    return out.permute(0, 1, 3, 2).reshape(len(sizes), b, c, h, w)


def _image_blocks(phi: torch.Tensor, largest: int, blocked: bool, equivariant: bool, chunk: int
                  ) -> list[torch.Tensor]:
    """The training images in blocks small enough for a tile of ``chunk`` pairs (a block of pixels, or all)
    and for their patches up to size ``largest`` at every position (4 ``chunk``), one image at least."""
    n, c, h, w = phi.shape
    pixels = BLOCK * BLOCK if blocked else h * w
    size = min(n, chunk // (pixels * (h * w if equivariant else 1)), 4 * chunk // (h * w * c * largest**2))
    return list(phi.split(max(1, size)))


def _period(n: int, padding: str) -> int:
    """FFT length along an axis of n pixels: n (circular), else 2 n - 1 (no shift wraps onto the image)."""
    return n if padding == "circular" else 2 * n - 1


def shift_index(shape: Sequence[int], padding: str, pixels: torch.Tensor, positions: torch.Tensor
                ) -> torch.Tensor:
    """Index [P, Y] of the shift y - x (for the flat pixels x and positions y) in ``cross_correlation``."""
    h, w = shape[-2:]
    lh, lw = _period(h, padding), _period(w, padding)
    dh = (positions[None] // w - pixels[:, None] // w) % lh
    dw = (positions[None] % w - pixels[:, None] % w) % lw
    return dh * lw + dw


def cross_correlation(x: torch.Tensor, images: torch.Tensor, padding: str) -> torch.Tensor:
    """sum_z x(z) phi_i(z + delta) for every shift delta (zero-padded, or circular), by FFT: [B, n, shifts],
    shift delta at (delta_h mod L_h) L_w + (delta_w mod L_w)."""
    size = tuple(_period(n, padding) for n in x.shape[-2:])
    spectra = torch.fft.rfft2(x, s=size)[:, None].conj() * torch.fft.rfft2(images, s=size)[None]
    return torch.fft.irfft2(spectra.sum(2), s=size).flatten(2)


def _pixel_values(images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """phi_i(y) for the positions [Y] of images [n, C, H, W]: [n, Y, C]."""
    return images.flatten(2).transpose(1, 2)[:, positions]


def _whole_tile(corr, index, xs, images, tile, padding, s, v, run) -> None:
    """ELS with a whole-image window (zeros or circular) over one block of images for one tile, from the
    samples' cross-correlations ``corr`` [B, n, shifts] with the block's images and the tile's shift index."""
    values = _pixel_values(images, tile.positions).reshape(-1, xs.shape[1])  # [n Y, C]
    cross = corr[tile.samples][:, :, index]  # [b, n, P, Y]
    energy = images.square().flatten(1).sum(1)  # [n]
    logits = cross.mul_(s / v).sub_(energy[:, None, None], alpha=0.5 * s * s / v).transpose(1, 2)
    run.add(tile.rows, logits.reshape(*logits.shape[:2], -1), lambda q: q @ values)  # [b, P, n Y]


def _local(xs, blocks, plan, equivariant, clipped, padding, s, v, runs, chunk) -> None:
    """The ELS (or LS) machines of the plan's sizes, block of training images by block, tile by tile; what
    does not depend on the images (the samples' patches, masks per tile) is made once."""
    segments, offsets = plan
    samples = PatchSource(xs, offsets, segments, padding, 4 * chunk)
    tiles = _tiles(xs.shape[0], xs.shape, blocks[0].shape[0], chunk, clipped, equivariant, xs.device)
    masks: dict = {}
    for images in blocks:
        energies = [images.square().sum(1, keepdim=True)] if equivariant and padding == "clipped" else []
        sources = [samples, *(PatchSource(z, offsets, segments, padding, 4 * chunk)
                              for z in (images, *energies))]
        for k, tile in enumerate(tiles):
            if equivariant:
                _els_tile(xs.shape, images, tile, segments, sources, padding, s, v, runs, masks, k)
            else:
                _ls_tile(xs.shape, images, tile, segments, sources, padding, s, v, runs)


def _els_tile(shape, images, tile, segments, sources, padding, s, v, runs, masks, k) -> None:
    """ELS over one block of training images for tile k: candidates (i, y), y in the tile's positions.

    acc holds the logits of the current size, (s X - s^2 E / 2) / v, and grows by each segment's offsets.
    ``masks`` keeps tile k's clipped masks for the next blocks of images.
    """
    values = _pixel_values(images, tile.positions).reshape(-1, shape[1])  # [n Y, C]: phi_i(y)
    acc = None
    everything = slice(None)
    for j, (p, seg) in enumerate(segments):
        u = sources[0].at(j, tile.samples, tile.pixels)  # [b, P, K C]
        w = sources[1].at(j, everything, tile.positions).flatten(0, 1)  # [n Y, K C]
        if acc is None:
            acc = u.new_empty(u.shape[0], u.shape[1], w.shape[0])  # [b, P, n Y]
        acc.view(-1, w.shape[0]).addmm_(u.reshape(-1, w.shape[1]), w.T, beta=0 if j == 0 else 1, alpha=s / v)
        if padding == "clipped":  # the in-image part of x's window, per pixel x
            sq = sources[2].at(j, everything, tile.positions).flatten(0, 1)  # [n Y, K]
            if (k, "inside", j) not in masks:
                masks[k, "inside", j] = inside(shape, sources[0].offsets[seg], tile.pixels)  # [P, K]
            energy = masks[k, "inside", j] @ sq.T  # [P, n Y]
        else:
            energy = w.square().sum(-1)  # [n Y]
        acc.sub_(energy, alpha=0.5 * s * s / v)
        logits = acc if j == len(segments) - 1 else acc.clone()  # the running softmax overwrites it
        if padding == "clipped":
            if (k, "outside", p) not in masks:
                masks[k, "outside", p] = ~clipped_candidates(shape, p, tile.pixels, tile.positions)  # [P, Y]
            outside = masks[k, "outside", p][None, :, None]  # [1, P, 1, Y]
            logits.view(*logits.shape[:2], images.shape[0], -1).masked_fill_(outside, -math.inf)
        runs[p].add(tile.rows, logits, lambda q: q @ values)


def _ls_tile(shape, images, tile, segments, sources, padding, s, v, runs) -> None:
    """LS over one block of training images for one tile: candidates i at the same position."""
    values = _pixel_values(images, tile.pixels)  # [n, P, C]
    acc = None
    for j, (p, _) in enumerate(segments):
        u = sources[0].at(j, tile.samples, tile.pixels)  # [b, P, K C]
        w = sources[1].at(j, slice(None), tile.pixels)  # [n, P, K C]
        term = torch.einsum("bxf,nxf->bxn", u, w).mul_(s / v)
        term.sub_(w.square().sum(-1).T, alpha=0.5 * s * s / v)  # minus s^2 |P_x(phi_i)|^2 / (2 v)
        acc = term if acc is None else acc.add_(term)
        logits = acc if j == len(segments) - 1 else acc.clone()
        runs[p].add(tile.rows, logits, lambda q: torch.einsum("bxn,nxc->bxc", q, values))


def log_snr(alpha_bar: float) -> float:
    """log(a / (1 - a)), the scale on which a level is matched to the nearest calibrated level."""
    return math.log(alpha_bar) - math.log(max(1.0 - alpha_bar, MIN_VARIANCE))


class LocalScore(Denoiser):
    """The ELS (``equivariant=True``) or LS machine of the training images with a patch size per level."""

    kind = "local-score"

    def __init__(self, data: torch.Tensor, patch: int | Mapping[float, int], *, equivariant: bool = True,
                 padding: str = "zeros", chunk: int = CHUNK):
        check_data(data)
        if data.dim() != 4:
            raise ValueError(f"data must be images [N, C, H, W], got shape {list(data.shape)}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        mapped = isinstance(patch, Mapping)
        sizes = list(patch.values()) if mapped else [patch]
        if not sizes or any(isinstance(p, bool) or int(p) != p or p < 1 for p in sizes):
            raise ValueError(f"patch sizes must be integers >= 1, got {patch!r}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.data = data.to(torch.float64)  # [N, C, H, W]
        self.shape = tuple(data.shape[1:])
        self.patch = {float(a): int(p) for a, p in patch.items()} if mapped else int(patch)
        self.equivariant, self.padding, self.chunk = equivariant, padding, chunk

    @property
    def levels(self) -> torch.Tensor | None:
        """The levels a calibrated schedule holds (others use the nearest's size); None for one size."""
        return None if isinstance(self.patch, int) else torch.tensor(list(self.patch), dtype=torch.float64)

    def patch_at(self, alpha_bar: float) -> int:
        """The patch size used at a level: the given size, or that of the nearest level in log-SNR."""
        if isinstance(self.patch, int):
            return self.patch
        return self.patch[min(self.patch, key=lambda a: abs(log_snr(a) - log_snr(alpha_bar)))]

    def means(self, x: torch.Tensor, alpha_bar: float, sizes: Sequence[int]) -> torch.Tensor:
        """Outputs of this machine at one level for several patch sizes at once: [S, B, *shape] (float64)."""
        return local_means(self.data, x, alpha_bar, sizes, equivariant=self.equivariant,
                           padding=self.padding, chunk=self.chunk)

    def denoise(self, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        return per_level(x, alpha_bar, lambda xs, a: self.means(xs, a, [self.patch_at(a)])[0].to(x.dtype))

    def to_saved(self) -> tuple[dict, StateDict]:
        """config.json's content (the patch size, or levels and sizes) and the training images (float64)."""
        patch = self.patch if isinstance(self.patch, int) else [[a, p] for a, p in self.patch.items()]
        settings = {"patch": patch, "equivariant": self.equivariant, "padding": self.padding,
                    "chunk": self.chunk}
        return saved_config(self.kind, self.shape, settings=settings), {"images": self.data}

    @classmethod
    def from_saved(cls, config: dict, tensors: StateDict, device="cpu") -> LocalScore:
        """The model ``to_saved`` described."""
        s = config["settings"]
        patch = s["patch"] if isinstance(s["patch"], int) else {float(a): int(p) for a, p in s["patch"]}
        return cls(tensors["images"].to(device), patch, equivariant=s["equivariant"], padding=s["padding"],
                   chunk=s["chunk"])


@dataclass(frozen=True)
class Calibration:
    """Per level, the mean squared difference from the network of each candidate size, and the best size."""

    levels: list[float]  # noisiest first
    sizes: list[int]  # the candidate patch sizes
    errors: torch.Tensor  # [L, K]

    @property
    def chosen(self) -> list[int]:
        """The calibrated size per level (the smallest of equally good ones)."""
        return [self.sizes[int(k)] for k in self.errors.argmin(1)]

    def schedule(self) -> dict[float, int]:
        """Level -> calibrated patch size, as ``LocalScore`` takes it."""
        return dict(zip(self.levels, self.chosen))


def calibration_inputs(network: Denoiser, x_T: torch.Tensor, levels: torch.Tensor,
                       batch_size: int | None = None) -> list[tuple[float, torch.Tensor]]:
    """(level, x_t) at each level where DDIM from x_T calls the network: the inputs it meets when sampling."""
    states = [x_T]
    from archdiff.samplers import ddim  # here: samplers imports denoisers, which import this module

    ddim(network, x_T, levels, batch_size=batch_size, callback=lambda i, x, x0: states.append(x))
    return list(zip(levels[:-1].tolist(), states[:-1]))


def calibrate(data: torch.Tensor, network: Denoiser, inputs: Sequence[tuple[float, torch.Tensor]],
              sizes: Sequence[int], *, equivariant: bool = True, padding: str = "zeros",
              chunk: int = CHUNK) -> Calibration:
    """Kamb & Ganguli's calibration: per level, each candidate size's mean squared difference from the
    network's output on the inputs of that level (all candidates evaluated in one pass)."""
    errors = []
    for a, x in inputs:
        target = network(x, a).to(torch.float64)
        out = local_means(data, x, a, sizes, equivariant=equivariant, padding=padding, chunk=chunk)
        errors.append(((out - target) ** 2).flatten(1).mean(1))
    return Calibration([float(a) for a, _ in inputs], [int(p) for p in sizes], torch.stack(errors).cpu())
