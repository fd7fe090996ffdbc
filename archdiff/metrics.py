"""Metrics on sample sets. Every function takes tensors [N, *shape] and returns plain floats.

Notation: x = generated samples, ref = reference samples or training set, D = prod(shape).
- Memorization (Yoon et al. 2023; Gu et al. 2023): sample x is a *copy* when
  |x - t_1| < |x - t_2| / 3 for its nearest and second-nearest training points t_1, t_2.
- Sliced Wasserstein-2 over random unit directions; MMD^2 with a Gaussian kernel (median bandwidth).
  On ``local_patches`` of images (each minus its mean) the sliced Wasserstein compares local structure
  (texture, edges) whatever the global layout and brightness.
- TwoNN intrinsic dimension (Facco et al. 2017): d = (N - 1) / sum_i log(r2_i / r1_i).
- Effective rank (Roy & Vetterli 2007): exp(entropy of the normalized singular values).
- Moments against a Gaussian target N(mean, V diag(lam) V^T) given by its eigenpairs, so image-sized
  targets (D ~ 10^4) never form a D x D matrix; every covariance spectrum comes from
  ``linalg.covariance_eigh``.
"""

from __future__ import annotations

import math

import torch

from archdiff import seeding
from archdiff.linalg import covariance_eigh, flatten
from archdiff.theory import GaussianPrediction, linear_prediction

COPY_RATIO = 1.0 / 3.0


def _f64(x: torch.Tensor) -> torch.Tensor:
    return flatten(x).to(torch.float64)


def mean_error(x: torch.Tensor, mean: torch.Tensor, eigvals: torch.Tensor) -> float:
    """|mean(x) - mean| / sqrt(tr Sigma), tr Sigma = sum(eigvals): for n draws of the Gaussian its RMS
    is 1 / sqrt(n)."""
    m = _f64(x).mean(0)
    return float((m - mean.reshape(-1).to(m)).norm() / eigvals.to(m).sum().sqrt())


def covariance_error_scale(eigvals: torch.Tensor, n: int) -> float:
    """RMS of ``covariance_error`` for n Gaussian draws: sqrt((tr(S)^2 + tr(S^2)) / n) / |S|_F,
    S = V diag(eigvals) V^T."""
    lam = eigvals.to(torch.float64)
    fro2 = float(lam.square().sum())
    return math.sqrt((float(lam.sum()) ** 2 + fro2) / n / fro2)


def covariance_eigvals(x: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the samples' (1/n) covariance, descending [min(n, D)] (float64)."""
    return covariance_eigh(x, vectors=False)


def covariance_error(x: torch.Tensor, eigvecs: torch.Tensor, eigvals: torch.Tensor) -> float:
    """Relative Frobenius error |Cov(x) - S|_F / |S|_F of the samples' (1/n) covariance against
    S = V diag(lam) V^T (V [D, K] orthonormal), without forming D x D matrices:
    |C - S|^2 = |C|^2 - 2 tr(C S) + |S|^2, |C|^2 from the smaller Gram matrix of the centred samples."""
    z = _f64(x).to(eigvecs.device)
    z = z - z.mean(0)
    n = z.shape[0]
    gram = z @ z.T if n <= z.shape[1] else z.T @ z  # [n, n] or [D, D]: the same nonzero spectrum
    c2 = float((gram / n).square().sum())
    lam = eigvals.to(z)
    cross = float(((z @ eigvecs.to(z)).square() * lam).sum() / n)  # tr(C S)
    s2 = float(lam.square().sum())
    return max(c2 - 2 * cross + s2, 0.0) ** 0.5 / s2**0.5


def correlations(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each sample x [n, ...] with its counterpart ref [n, ...] over pixels: [n]."""
    a, b = (_f64(t).cpu() for t in (x, ref))
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


NULL_SETS = 10  # independent sets drawn from a law itself: the null of an error against that law
NULL_SDS = 4.0  # an error "within sampling error" stays below its null's mean + 4 SD


def moment_errors(x: torch.Tensor, law: GaussianPrediction) -> tuple[float, float]:
    """(mean_error, covariance_error) of samples x [n, ...] against a predicted Gaussian ``law``."""
    return mean_error(x, law.mean, law.eigvals), covariance_error(x, law.eigvecs, law.eigvals)


def moment_null(law: GaussianPrediction, n: int, generator: torch.Generator, sets: int = NULL_SETS
                ) -> torch.Tensor:
    """[sets, 2]: ``moment_errors`` of ``sets`` independent sets of n draws from ``law`` itself -- what
    sampling error alone gives."""
    return torch.tensor([moment_errors(law.sample(n, generator), law) for _ in range(sets)],
                        dtype=torch.float64)


def null_limit(null: torch.Tensor) -> torch.Tensor:
    """The largest error sampling explains: the null's mean + NULL_SDS SD (per column of [sets, ...])."""
    return null.mean(0) + NULL_SDS * null.std(0)


def pairwise_nn(x: torch.Tensor, ref: torch.Tensor, k: int = 2, chunk: int = 1024):
    """Distances [N, k] and indices [N, k] of each x's k nearest points in ref."""
    a, b = _f64(x), _f64(ref).to(x.device)
    dists, idx = [], []
    for rows in a.split(chunk):
        d = torch.cdist(rows, b)
        v, i = d.topk(min(k, b.shape[0]), dim=1, largest=False)
        dists.append(v)
        idx.append(i)
    return torch.cat(dists), torch.cat(idx)


def copy_mask(x: torch.Tensor, train: torch.Tensor, ratio: float = COPY_RATIO) -> torch.Tensor:
    """Bool [N]: sample is a copy (nearest training point < ratio * second nearest)."""
    d, _ = pairwise_nn(x, train, k=2)
    return d[:, 0] < ratio * d[:, 1]


def copy_fraction(x: torch.Tensor, train: torch.Tensor, ratio: float = COPY_RATIO) -> float:
    """Fraction of samples that are copies of a training point."""
    return float(copy_mask(x, train, ratio).double().mean())


def copy_stats(x: torch.Tensor, train: torch.Tensor) -> dict[str, float]:
    """``copy_fraction`` and ``nn_distance`` of samples x against the training set, by name."""
    train = train.to(x.device)
    return {"copy_fraction": copy_fraction(x, train), "nn_distance": nn_distance(x, train)}


def nn_distance(x: torch.Tensor, train: torch.Tensor) -> float:
    """Median distance from a sample to its nearest training point, per sqrt(D) (an RMS)."""
    d, _ = pairwise_nn(x, train, k=1)
    return float(d[:, 0].median() / math.sqrt(_f64(x).shape[1]))


def paired_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 distance [N] between two runs from the same noise."""
    return (_f64(a) - _f64(b).to(a.device)).norm(dim=1)


def sliced_wasserstein(
    a: torch.Tensor, b: torch.Tensor, n_proj: int = 256, seed: int = 0, n_quantiles: int = 256
) -> float:
    """Sliced Wasserstein-2 distance between two sample sets (sizes may differ)."""
    x, y = _f64(a), _f64(b).to(a.device)
    g = seeding.generator(seed, "sliced-wasserstein")
    dirs = torch.randn(x.shape[1], n_proj, generator=g, dtype=torch.float64).to(x.device)
    dirs = dirs / dirs.norm(dim=0)
    q = (torch.arange(n_quantiles, dtype=torch.float64, device=x.device) + 0.5) / n_quantiles
    px, py = torch.quantile(x @ dirs, q, dim=0), torch.quantile(y @ dirs, q, dim=0)
    return float(((px - py) ** 2).mean().sqrt())


def local_patches(images: torch.Tensor, size: int, centred: bool = False) -> torch.Tensor:
    """The non-overlapping size x size patches of images [N, C, H, W], each a row: [N P, C size^2]
    (P = (H // size) (W // size); a remainder at the right and bottom edges is left out). ``centred``:
    each patch minus its own mean value, its structure without its brightness."""
    if images.ndim != 4 or not 1 <= size <= min(images.shape[-2:]):
        raise ValueError(f"need images [N, C, H, W] and 1 <= size <= min(H, W), got {tuple(images.shape)}, "
                         f"size {size}")
    t = images.unfold(2, size, size).unfold(3, size, size)  # [N, C, H', W', size, size]
    rows = t.permute(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1] * size * size)
    return rows - rows.mean(1, keepdim=True) if centred else rows


def mmd(a: torch.Tensor, b: torch.Tensor, bandwidth: float | None = None) -> float:
    """Biased MMD^2 with a Gaussian kernel; bandwidth = median pairwise distance if not given."""
    x, y = _f64(a), _f64(b).to(a.device)
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z) ** 2
    h2 = float(d2.median()) if bandwidth is None else bandwidth**2
    k = torch.exp(-d2 / max(h2, 1e-12))
    n = x.shape[0]
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())


def intrinsic_dimension(x: torch.Tensor, decimals: int = 6) -> float:
    """TwoNN estimate of intrinsic dimension, after removing duplicate points."""
    pts = torch.unique(torch.round(_f64(x), decimals=decimals), dim=0)
    if pts.shape[0] < 3:
        return 0.0
    d = torch.cdist(pts, pts)
    d.fill_diagonal_(float("inf"))
    r = d.topk(2, dim=1, largest=False).values
    mu = (r[:, 1] / r[:, 0].clamp_min(1e-300)).clamp_min(1.0 + 1e-12)
    return float((pts.shape[0] - 1) / torch.log(mu).sum())


def singular_values(x: torch.Tensor) -> torch.Tensor:
    """Singular values of the centred samples / sqrt(n): the square roots of ``covariance_eigvals``."""
    return covariance_eigvals(x).sqrt()


def numerical_rank(x: torch.Tensor, rtol: float = 1e-4) -> int:
    """Number of covariance eigenvalues above rtol times the largest."""
    ev = singular_values(x) ** 2
    return int((ev > rtol * ev[0]).sum())


def effective_rank(x: torch.Tensor) -> float:
    """Roy-Vetterli effective rank of the centred samples."""
    s = singular_values(x)
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def high_frequency_energy(images: torch.Tensor, cutoff: float = 0.25) -> float:
    """Fraction of spectral energy above ``cutoff`` cycles/pixel (radius; Nyquist is 0.5).

    images: [N, C, H, W] (or [N, H, W]); the per-image mean is removed first.
    """
    x = images.to(torch.float64)
    if x.ndim == 3:
        x = x[:, None]
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs() ** 2  # [N, C, H, W]
    fy = torch.fft.fftfreq(x.shape[-2], device=x.device)[:, None]
    fx = torch.fft.fftfreq(x.shape[-1], device=x.device)[None, :]
    high = (fy**2 + fx**2).sqrt() > cutoff
    return float(power[..., high].sum() / power.sum().clamp_min(1e-300))


def measure(x: torch.Tensor, train: torch.Tensor) -> dict[str, float]:
    """The standard measurements of samples x [N, *shape] against their training set [M, *shape], by metric
    key: copying and nearest-neighbour distances (beside the training set's own, leave-one-out), the
    distance from the linear denoiser's prediction N(mean, Cov) of the training set (Thm 3; each moment
    error beside its RMS for N Gaussian draws), sliced Wasserstein to the training set and to N draws of
    that Gaussian, intrinsic dimension and effective rank of both sets, and for images the high-frequency
    energy of both."""
    train = train.to(x.device)
    n, dim = x.shape[0], _f64(x).shape[1]
    d, _ = pairwise_nn(x, train, k=2)
    ratio = d[:, 0] / d[:, 1].clamp_min(1e-300)
    own, _ = pairwise_nn(train, train, k=2)  # [:, 0] is each point itself
    gauss = linear_prediction(train)  # Thm 3: what a linear denoiser samples
    lam, vecs, mean = gauss.eigvals, gauss.eigvecs, gauss.mean
    draws = gauss.sample(n, seeding.generator(0, "measure", "gaussian"))
    out = {
        "n_samples": n, "n_train": train.shape[0],
        "copy_fraction": float((ratio < COPY_RATIO).double().mean()),
        "nn_distance": float(d[:, 0].median() / math.sqrt(dim)),
        "nn_distance.train": float(own[:, 1].median() / math.sqrt(dim)),
        "nn_ratio.median": float(ratio.median()),
        "gaussian_mean_error": mean_error(x, mean, lam),
        "gaussian_mean_error.floor": 1 / math.sqrt(n),
        "gaussian_cov_error": covariance_error(x, vecs, lam),
        "gaussian_cov_error.floor": covariance_error_scale(lam, n),
        "sliced_wasserstein.train": sliced_wasserstein(x, train),
        "sliced_wasserstein.gaussian": sliced_wasserstein(x, draws),
        "intrinsic_dimension": intrinsic_dimension(x),
        "intrinsic_dimension.train": intrinsic_dimension(train),
        "effective_rank": effective_rank(x), "effective_rank.train": effective_rank(train),
    }
    if x.ndim == 4:
        out["hf_energy"], out["hf_energy.train"] = high_frequency_energy(x), high_frequency_energy(train)
    return out
