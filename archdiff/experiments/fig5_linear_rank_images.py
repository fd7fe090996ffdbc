"""Figure 5: linear denoisers with a rank-K bottleneck on face images (Theorem 4).

Theorem 4: a linear denoiser with a rank-K bottleneck samples N(mu, Sigma_K), Sigma_K the rank-K
truncation of the data covariance Sigma. So its samples lie in a K-dimensional affine subspace
(numerical rank K) and lack the directions of the smallest eigenvalues -- fine detail, high spatial
frequencies -- which the full-rank model keeps.

Sampling is DDIM with 10 steps, as in the paper. For a linear model DDIM is affine in x_T
(``theory.py``): the 10-step samples follow N(m, V_K diag(g^2) V_K^T) with g_i^2 < lam_i, a
shrinkage that is largest for the leading eigenvalues (the variance along the top eigenvector of
64x64 CelebA keeps about 6 % at 10 steps). So the covariance claim at 10 steps is made against that
exact prediction (same eigenvectors as Sigma_K, shrunk eigenvalues), and the claim against Sigma_K
itself with ``fine_steps`` steps, drawn through the exact affine map, where the discretization bias
(computed and reported) is far below the sampling error.

Each covariance claim's threshold is what sampling error alone gives (``metrics.moment_null``): the mean +
``metrics.NULL_SDS`` SD of the same error over ``metrics.NULL_SETS`` independent sets of n draws from the
predicted law itself. (It replaces 4 x the error's RMS, which a covariance off by a good fraction of the
RMS again could pass: the error of n Gaussian draws concentrates near its RMS.)
"""

from __future__ import annotations

import torch

from archdiff import metrics, plots, seeding, theory
from archdiff.denoisers import LinearDenoiser
from archdiff.experiments.base import Claim, Context, Experiment, Result, UserError, key, keyed
from archdiff.experiments.figures import grid_figure, nearest_figure, plural
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels
from archdiff.theory import GaussianPrediction

RANK_RTOL = 1e-8  # eigenvalues above this fraction of the largest count towards the numerical rank
NULL_TEXT = (f"threshold: mean + {metrics.NULL_SDS:g} SD of the same error for {metrics.NULL_SETS} "
             "independent sets of {n} draws from that law itself, what sampling error alone gives")
HF_BATCHES = 10  # standard error of the high-frequency energy from this many disjoint batches
QUICK = {"data": "lfw", "n_train": None, "image_size": None, "ranks": [5, 20], "n_samples": 2000, "steps": 10,
         "fine_steps": 1000, "schedule": "cosine", "grid_columns": 8}


def run(ctx: Context) -> Result:
    """Fit the full and rank-K linear denoisers, sample them from the same noise, test Theorem 4."""
    c = ctx.config
    data = ctx.images()
    full = LinearDenoiser.fit(data)
    ranks = sorted(c["ranks"])
    if ranks[-1] >= full.rank:
        raise UserError(f"bottleneck ranks {ranks} must lie below the data's rank {full.rank}; "
                        f"use more images (the paper: 1000 CelebA images)")
    models = {f"rank {k}": full.truncated(k) for k in ranks}
    full_name = f"full ({full.rank})"  # the name in metric keys; full_label in figures and statements
    models[full_name] = full
    n, steps = c["n_samples"], c["steps"]
    x_T = initial_noise(n, tuple(data.shape[1:]), ctx.seed, ctx.device)
    levels = sampling_levels(c["schedule"], steps)
    fine = sampling_levels(c["schedule"], c["fine_steps"])
    # DDIM's per-eigenvalue gains, once per grid: a rank-K model's are the first K of the full model's
    gains = {steps: theory.ddim_gains(full.eigvals, levels),
             c["fine_steps"]: theory.ddim_gains(full.eigvals, fine)}
    samples = {k: ddim(model, x_T, levels, progress=ctx.progress) for k, model in models.items()}
    fine_samples = {k: theory.linear_ddim(model, x_T, fine, gains[c["fine_steps"]][:model.rank])
                    for k, model in models.items()}

    m: dict = {"n_train": data.shape[0], "data_rank": full.rank,
               "hf_energy.data": metrics.high_frequency_energy(data)}
    claims: list[Claim] = []
    for k in ranks:
        m_k, claims_k = rank_claims(models[f"rank {k}"], samples[f"rank {k}"], fine_samples[f"rank {k}"],
                                    full, levels, {s: g[:k] for s, g in gains.items()}, c,
                                    seeding.generator(ctx.seed, "covariance-null", f"rank-{k}"))
        m.update(m_k)
        claims += claims_k
    m_hf, claims_hf = detail_claims(samples, steps, {full_name: "full-rank"})
    m.update(m_hf)
    claims += claims_hf
    for name, s in samples.items():
        m.update(keyed(metrics.copy_stats(s, data), name, f"steps_{steps}"))

    labels = {k: k for k in samples} | {full_name: full_label(full.rank, data.shape[0])}
    rows = [(labels[k], s) for k, s in samples.items()]
    figures = [
        grid_figure(ctx, "fig5_grid.png", rows, title=f"Fig. 5: linear denoisers of rank K and of full rank "
                    f"on {data.shape[0]} faces, from the same noise (one per column), {steps} DDIM steps"),
        grid_figure(ctx, "fig5_grid_fine.png", [(labels[k], s) for k, s in fine_samples.items()],
                    title=f"The same models and noise with {c['fine_steps']} DDIM steps (drawn through "
                          f"DDIM's exact affine map)"),
        nearest_figure(ctx, "fig5_nearest.png", rows, data, "Linear denoisers of rank K and of full rank"),
        spectrum_figure(ctx, full, {labels[k]: s for k, s in samples.items()}, steps),
    ]
    return Result(m, claims, figures)


def full_label(rank: int, n_train: int) -> str:
    """The full-rank model's row label: its rank, and why it is that (N - 1 centred images, or the
    pixel count)."""
    why = f"N - 1 for\nN = {n_train} images" if rank == n_train - 1 else "the pixel count"
    return f"full rank\n({rank} = {why})"


def spectrum_figure(ctx: Context, full: LinearDenoiser, samples: dict[str, torch.Tensor], steps: int) -> str:
    """The covariance spectrum of the data and of each model's samples."""
    spectra = {"data": full.eigvals.cpu().tolist()}
    spectra.update({f"samples, {k}".replace("\n", " "): spectrum(s, full.rank) for k, s in samples.items()})
    return plots.line_plot(
        ctx.out / "fig5_spectrum.png", list(range(1, full.rank + 1)), spectra, "eigenvalue index",
        "covariance eigenvalue", logy=True, size=(7.5, 5.6),
        title=f"Covariance spectra of the data and of the samples ({plural(steps, 'DDIM step')}): a rank-K "
              f"model's samples stop at K (beyond it: float32 round-off)").name


def spectrum(samples: torch.Tensor, length: int) -> list[float]:
    """The samples' leading covariance eigenvalues, floored at 1e-30 for a log plot."""
    return metrics.covariance_eigvals(samples)[:length].clamp_min(1e-30).cpu().tolist()


def rank_claims(model: LinearDenoiser, samples: torch.Tensor, fine_samples: torch.Tensor,
                full: LinearDenoiser, levels: torch.Tensor, gains: dict[int, torch.Tensor], c: dict,
                generator: torch.Generator):
    """Numerical rank and covariance of one rank-K model's samples: metrics and claims.

    ``gains``: DDIM's per-eigenvalue gains of this model at ``steps`` and ``fine_steps``; ``generator``
    draws the covariance errors' null (``metrics.moment_null``: sets of n draws from each predicted law).
    """
    k, n, steps, fine_steps = model.rank, samples.shape[0], c["steps"], c["fine_steps"]
    ev = metrics.covariance_eigvals(samples)
    rank = int((ev > RANK_RTOL * ev[0]).sum())
    lam = model.eigvals
    pred = theory.ddim_prediction(model, levels, gains[steps])
    bias = {s: float((g**2 - lam).norm() / lam.norm()) for s, g in gains.items()}
    null_pred = metrics.moment_null(pred, n, generator)[:, 1]
    null = metrics.moment_null(GaussianPrediction.of(model), n, generator)[:, 1]
    floor = metrics.covariance_error_scale(lam, n)
    r, at, at_fine = f"rank_{k}", f"steps_{steps}", f"steps_{fine_steps}"
    m = {
        key("numerical_rank", r): rank,
        key("sample_eig_ratio_next_over_first", r): float(ev[k] / ev[0]),
        key("data_eig_ratio_last_over_first", r): float(full.eigvals[k - 1] / full.eigvals[0]),
        key("data_variance_kept", r): float(lam.sum() / full.eigvals.sum()),
        key("cov_error_vs_ddim_prediction", r, at): metrics.covariance_error(
            samples, pred.eigvecs, pred.eigvals),
        key("cov_error_vs_sigma_k", r, at): metrics.covariance_error(samples, model.eigvecs, lam),
        key("cov_error_vs_sigma_k", r, at_fine): metrics.covariance_error(fine_samples, model.eigvecs, lam),
        key("ddim_cov_bias", r, at): bias[steps],
        key("ddim_cov_bias", r, at_fine): bias[fine_steps],
        key("cov_sampling_rms", r): floor,
        key("cov_error_null_mean", r, at): float(null_pred.mean()),
        key("cov_error_null_sd", r, at): float(null_pred.std()),
        key("cov_error_null_mean", r, at_fine): float(null.mean()),
        key("cov_error_null_sd", r, at_fine): float(null.std()),
        key("mean_error", r, at_fine): metrics.mean_error(fine_samples, model.mean, lam),
    }
    claims = [
        Claim.at_most(
            f"numerical-rank-{k}",
            f"Samples of the rank-{k} linear denoiser ({steps} DDIM steps) have numerical rank {k}: "
            f"|rank - K|, counting covariance eigenvalues above {RANK_RTOL:g} of the largest (the "
            f"samples' (K+1)-th is {m[key('sample_eig_ratio_next_over_first', r)]:.1g} of it, float32 "
            f"round-off; the data's K-th eigenvalue is {m[key('data_eig_ratio_last_over_first', r)]:.2g} of "
            f"its largest).",
            abs(rank - k), 0),
        Claim.at_most(
            f"cov-matches-ddim-prediction-{k}",
            f"At {steps} DDIM steps the rank-{k} samples' covariance is Sigma_K's eigenvectors with the "
            f"sampler's exact per-eigenvalue shrinkage (relative Frobenius error; {NULL_TEXT.format(n=n)}; "
            f"the shrinkage itself is a {bias[steps]:.0%} change of Sigma_K).",
            m[key("cov_error_vs_ddim_prediction", r, at)], float(metrics.null_limit(null_pred))),
        Claim.at_most(
            f"cov-matches-sigma-K-{k}",
            f"With {fine_steps} DDIM steps the rank-{k} samples' covariance matches Sigma_K (relative "
            f"Frobenius error; {NULL_TEXT.format(n=n)}; the sampler's "
            f"computed bias at this step count is {bias[fine_steps]:.2%}).",
            m[key("cov_error_vs_sigma_k", r, at_fine)], float(metrics.null_limit(null))),
    ]
    return m, claims


def detail_claims(samples: dict[str, torch.Tensor], steps: int, labels: dict[str, str]):
    """High-frequency energy of each model's samples (ordered by rank) and the claims that it rises
    (``labels``: a model's name in the statements, where not its own)."""
    hf, rel_se = {}, {}
    m = {}
    for name, s in samples.items():
        hf[name] = metrics.high_frequency_energy(s)
        batches = torch.tensor([metrics.high_frequency_energy(b) for b in s.chunk(HF_BATCHES)])
        rel_se[name] = float(batches.std() / len(batches) ** 0.5) / hf[name]
        m[key("hf_energy", name, f"steps_{steps}")] = hf[name]
    claims = []
    names = list(samples)
    for small, large in zip(names, names[1:]):
        ratio = hf[small] / hf[large]
        se = (rel_se[small] ** 2 + rel_se[large] ** 2) ** 0.5
        m[key("hf_ratio", f"{small} over {large}")] = ratio
        claims.append(Claim.at_most(
            f"less-detail-{small.replace(' ', '-')}-than-{large.split(' (')[0].replace(' ', '-')}",
            f"Smaller rank loses fine detail: high-frequency energy (above 1/4 cycle/pixel) of the "
            f"{labels.get(small, small)} samples over the {labels.get(large, large)} samples "
            f"({plural(steps, 'DDIM step')}); threshold 1 - 3 standard errors (from {HF_BATCHES} batches).",
            ratio, 1 - 3 * se))
    return m, claims


EXPERIMENT = Experiment(
    id="fig5-linear-rank-images",
    title="Linear denoisers with rank-K bottlenecks on faces: rank K, Sigma_K, lost detail (Thm 4)",
    paper="Restricting the capacity acts similarly to a dimensionality reduction process ... the generated "
          "images lose fine details and sharp edges (Sec. 3.1, Fig. 5; Theorem 4: samples follow "
          "N(mu, Sigma_K)).",
    scales={"quick": QUICK, "paper": {**QUICK, "data": None, "n_train": 1000, "image_size": 64,
                                      "ranks": [10, 50], "fine_steps": 10000}},
    run=run,
    uses_images=True,
)
