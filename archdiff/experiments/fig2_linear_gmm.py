"""Figure 2: a linear denoiser cannot tell a 3GMM from a 2GMM with the same mean and covariance.

Theorem 3: a linear denoiser samples N(mu, Sigma) of its training data, so two data sets with equal
mean and covariance give the same generated distribution -- and, from the same initial noise, the
same samples.
"""

from __future__ import annotations

import math

import torch

from archdiff import metrics, plots
from archdiff.data import toy2d
from archdiff.denoisers import LinearDenoiser
from archdiff.experiments.base import Claim, Context, Experiment, Result, key
from archdiff.experiments.figures import plural
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels

FLOAT_TOL = 1e-4  # relative distance that counts as float32 round-off
QUICK = {"n_train": 3000, "n_samples": 4000, "steps": [10, 50, 200, 1000], "schedule": "cosine"}


def run(ctx: Context) -> Result:
    """Fit a linear denoiser on each mixture, sample both from the same noise, compare."""
    c = ctx.config
    data = {"3GMM": toy2d.gmm3(c["n_train"], ctx.seed), "2GMM": toy2d.gmm2(c["n_train"], ctx.seed)}
    ctx.record(data_source="toy2d 3GMM and 2GMM", n_train=c["n_train"], data_shape=[2])
    mean, cov = toy2d.population_moments()
    lam, vecs = torch.linalg.eigh(cov)  # the population's Gaussian, N(mean, V diag(lam) V^T)
    x_T = initial_noise(c["n_samples"], (2,), ctx.seed, ctx.device)
    fits = {k: LinearDenoiser.fit(v.to(ctx.device)) for k, v in data.items()}
    scale = math.sqrt(float(cov.trace()))
    m: dict = {"data_scale": scale}
    samples = {}
    for steps in c["steps"]:
        levels = sampling_levels(c["schedule"], steps)
        out = {k: ddim(f, x_T, levels, progress=ctx.progress) for k, f in fits.items()}
        samples[steps] = out
        gap = metrics.paired_distance(out["3GMM"], out["2GMM"]).max() / scale
        m[key("max_paired_distance_rel", f"steps_{steps}")] = float(gap)
        for k, s in out.items():
            m[key("mean_error", k, f"steps_{steps}")] = metrics.mean_error(s.cpu(), mean, lam)
            m[key("cov_error", k, f"steps_{steps}")] = metrics.covariance_error(s.cpu(), vecs, lam)
    n = c["n_samples"]
    steps_paper, steps_fine = c["steps"][0], c["steps"][-1]
    cov_floor = metrics.covariance_error_scale(lam, n)
    claims = [
        Claim.at_most(
            "same-samples-3gmm-2gmm",
            f"Linear denoisers fitted on the 3GMM and the 2GMM give the same samples from the same "
            f"noise (largest per-sample distance / data scale, {plural(steps_paper, 'DDIM step')}).",
            m[key("max_paired_distance_rel", f"steps_{steps_paper}")], FLOAT_TOL),
        *[Claim.at_most(
            f"mean-matches-data-{k}",
            f"{k}: the mean of the linear denoiser's samples matches the {k} training set's (set exactly to "
            f"the mean both mixtures share; {plural(steps_fine, 'DDIM step')}; |error| / sqrt(tr Sigma), "
            f"threshold 4 / sqrt(n) = 4x its sampling RMS for n = {n} samples).",
            m[key("mean_error", k, f"steps_{steps_fine}")], 4 / math.sqrt(n)) for k in data],
        *[Claim.at_most(
            f"cov-matches-data-{k}",
            f"{k}: the covariance of the linear denoiser's samples matches the {k} training set's (set "
            f"exactly to the covariance both mixtures share; {plural(steps_fine, 'DDIM step')}; relative "
            f"Frobenius error, threshold 4x its sampling RMS for n = {n} samples).",
            m[key("cov_error", k, f"steps_{steps_fine}")], 4 * cov_floor) for k in data],
    ]
    lim = 3.2 * scale / math.sqrt(2)
    fig = plots.scatter_panels(ctx.out / "fig2.png", [
        ("3GMM data", data["3GMM"]), ("2GMM data", data["2GMM"]),
        ("linear denoiser on 3GMM", samples[steps_paper]["3GMM"]),
        ("linear denoiser on 2GMM", samples[steps_paper]["2GMM"]),
    ], lim=lim, title=f"Fig. 2: two mixtures with equal mean and covariance, and samples of a linear "
                      f"denoiser fitted on each, from the same noise ({plural(steps_paper, 'DDIM step')})")
    steps_fig = plots.line_plot(
        ctx.out / "fig2_steps.png", c["steps"],
        {f"linear denoiser on {k}": [m[key("cov_error", k, f"steps_{s}")] for s in c["steps"]] for k in data},
        "DDIM steps", "relative covariance error", logy=True, logx=True,
        refs={f"sampling RMS for n = {n}": cov_floor, "claim threshold (4x RMS)": 4 * cov_floor},
        title="Covariance error of the samples against the mixtures' shared covariance, by DDIM steps "
              "(the two models give the same samples, so their lines coincide)")
    return Result(m, claims, [fig.name, steps_fig.name])


EXPERIMENT = Experiment(
    id="fig2-linear-gmm",
    title="Linear denoiser on a 3GMM and a 2GMM with equal mean and covariance (Thm 3)",
    paper="If two distinct target distributions share the exact same mean and covariance, a linear "
          "denoiser will produce an identical generated distribution for both (Theorem 3, Fig. 2).",
    scales={"quick": QUICK, "paper": {**QUICK, "n_train": 10000, "n_samples": 20000}},
    run=run,
)
