"""Figure 6: a linear denoiser retrained on its own samples generates (nearly) the same images.

Theorem 3: a linear denoiser depends on its training set only through the mean mu and covariance
Sigma, and samples N(mu, Sigma). A set drawn from it has, up to sampling error, the same mu and
Sigma, so a second linear denoiser fitted on that set is (nearly) the same map, and from the same
initial noise the two give (nearly) the same images.

Sampling: the paper's 10 DDIM steps, and ``fine_steps`` drawn through DDIM's exact affine form
(``theory.linear_ddim``). With 10 steps the first model's samples follow the sampler's shrunk law
N(m, V diag(g^2) V^T) (``theory.py``), not N(mu, Sigma); the second model then learns that law, so
at 10 steps its moments are compared with the first model's *sampled* law, and at fine_steps with
(mu, Sigma) themselves.

"The same images": the memorization criterion's ratio (a sample is a copy when its distance to the
nearest training image is below 1/3 of that to the next) applied to the pair -- the median over
samples of |first - second| / |first - an unrelated first-model sample| must be at most 1/3.

"The same moments": the second model's mean and covariance are those of its n synthetic images, so they
differ from the target law by sampling error alone -- which, for n images in many dimensions, is large (a
relative covariance error near 0.35 for 100 LFW faces) but concentrated: independent sets of n draws from
the target law itself all land near the same error. The threshold is that null's mean + ``metrics.NULL_SDS``
SD over ``metrics.NULL_SETS`` such sets (``metrics.moment_null``). On 100 LFW faces it fails a second model
whose covariance has rank 1 or is the target's scaled by 2 or 1/2 (a multiple of the sampling RMS, 4 x 0.35,
let every one of them pass); a covariance within about 30 % of the target's still passes: 100 images cannot
resolve it (a scaled-down covariance also has a smaller sampling error).
"""

from __future__ import annotations

import torch

from archdiff import metrics, seeding, theory
from archdiff.denoisers import LinearDenoiser
from archdiff.experiments.base import Claim, Context, Experiment, Result, key, keyed
from archdiff.experiments.figures import grid_figure, nearest_figure, plural
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels
from archdiff.theory import GaussianPrediction

DIRECT_MAX_STEPS = 100  # longer grids are drawn through DDIM's exact affine form
QUICK = {"data": "lfw", "n_train": None, "image_size": None, "n_samples": 1000, "steps": 10,
         "fine_steps": 1000, "schedule": "cosine", "grid_columns": 8}


def draw(model: LinearDenoiser, noise: torch.Tensor, levels: torch.Tensor, gains: torch.Tensor | None = None,
         progress: bool = False) -> torch.Tensor:
    """DDIM samples of a linear model: the sampler itself on short grids, its exact affine form on
    long ones (``gains``: the model's ``theory.ddim_gains`` on ``levels``, if at hand)."""
    if len(levels) - 1 <= DIRECT_MAX_STEPS:
        return ddim(model, noise, levels, progress=progress)
    return theory.linear_ddim(model, noise, levels, gains)


def retrain(model: LinearDenoiser, noise: torch.Tensor, levels: torch.Tensor,
            gains: torch.Tensor | None = None, progress: bool = False) -> tuple[torch.Tensor, LinearDenoiser]:
    """Sample a synthetic set from ``model`` (one image per noise row) and fit a second model on it."""
    synthetic = draw(model, noise, levels, gains, progress)
    return synthetic, LinearDenoiser.fit(synthetic)


def moment_claims(errors: tuple[float, float], null: torch.Tensor, law: str, steps: int,
                  n: int) -> list[Claim]:
    """The mean and covariance claims at one step count: each error of the second model against the
    target ``law`` (words), below the null's mean + NULL_SDS SD (``null``: ``metrics.moment_null``)."""
    limit = metrics.null_limit(null)
    at = f"{plural(steps, 'DDIM step')}: the retrained model's"
    null_text = (f"threshold: mean + {metrics.NULL_SDS:g} SD of the same error for {metrics.NULL_SETS} "
                 f"independent sets of {n} draws from that law itself, i.e. what sampling error alone gives")
    return [
        Claim.at_most(
            f"mean-reproduced@{steps}",
            f"{at} mean (that of its {n} synthetic images) matches the mean of {law}: |error| / "
            f"sqrt(tr Sigma); {null_text} (null mean {float(null[:, 0].mean()):.3g}; 1 / sqrt(n) = "
            f"{n ** -0.5:.3g}).",
            errors[0], float(limit[0])),
        Claim.at_most(
            f"cov-reproduced@{steps}",
            f"{at} covariance (that of its {n} synthetic images) matches the covariance of {law}: relative "
            f"Frobenius error; {null_text} (null mean {float(null[:, 1].mean()):.3g}).",
            errors[1], float(limit[1])),
    ]


def run(ctx: Context) -> Result:
    """Fit, sample a new training set, refit, and compare both models from the same noise."""
    c = ctx.config
    data = ctx.images()
    n_train, shape, n = data.shape[0], tuple(data.shape[1:]), c["n_samples"]
    first = LinearDenoiser.fit(data)
    x_T = initial_noise(n, shape, ctx.seed, ctx.device)
    x_other = initial_noise(n, shape, ctx.seed, ctx.device, stream="unrelated")  # the unrelated-pair scale
    x_synth = initial_noise(n_train, shape, ctx.seed, ctx.device, stream="synthetic")
    theorem = GaussianPrediction.of(first)
    m: dict = {"n_train": n_train, "data_rank": first.rank}
    claims, rows = [], []
    for steps in (c["steps"], c["fine_steps"]):
        levels = sampling_levels(c["schedule"], steps)
        g = theory.ddim_gains(first.eigvals, levels)
        synthetic, second = retrain(first, x_synth, levels, g, ctx.progress)
        a, b = draw(first, x_T, levels, g, ctx.progress), draw(second, x_T, levels, None, ctx.progress)
        unrelated = draw(first, x_other, levels, g, ctx.progress)
        ratio = metrics.paired_distance(a, b) / metrics.paired_distance(a, unrelated)
        sampled, lam = theory.ddim_prediction(first, levels, g), first.eigvals
        shrunk = f"the law of the first model's {steps}-step samples (DDIM's shrunk Gaussian)"
        target, law = ((sampled, shrunk) if steps == c["steps"]
                       else (theorem, "the first model's N(mu, Sigma) (Theorem 3)"))
        errors = metrics.moment_errors(synthetic, target)
        null = metrics.moment_null(target, n_train,
                                   seeding.generator(ctx.seed, "moment-null", f"steps-{steps}"))
        m.update(keyed({
            "median_pair_ratio": float(ratio.median()),
            "second_rank": second.rank,
            "mean_error_vs_target": errors[0],
            "cov_error_vs_target": errors[1],
            "mean_error_null_mean": float(null[:, 0].mean()),
            "mean_error_null_sd": float(null[:, 0].std()),
            "cov_error_null_mean": float(null[:, 1].mean()),
            "cov_error_null_sd": float(null[:, 1].std()),
            "cov_sampling_rms": metrics.covariance_error_scale(target.eigvals, n_train),
            "cov_error_vs_sigma": metrics.moment_errors(synthetic, theorem)[1],
            "ddim_cov_bias": float((sampled.eigvals - lam).norm() / lam.norm()),
        }, f"steps_{steps}"))
        claims += [
            Claim.at_most(
                f"same-images@{steps}",
                f"From the same noise the first and the retrained linear denoiser give nearly the same "
                f"images ({plural(steps, 'DDIM step')}): median of |first - second| / |first - unrelated "
                f"sample|, threshold 1/3 (the memorization criterion's ratio).",
                m[key("median_pair_ratio", f"steps_{steps}")], metrics.COPY_RATIO),
            *moment_claims(errors, null, law, steps, n_train),
        ]
        rows += [(f"first\n{plural(steps, 'DDIM step')}", a), (f"retrained\n{plural(steps, 'DDIM step')}", b)]
    for model, (_, samples) in zip(("first", "retrained"), rows[:2]):
        m.update(keyed(metrics.copy_stats(samples, data), model, f"steps_{c['steps']}"))
    figures = [
        grid_figure(ctx, "fig6_grid.png", rows,
                    title=f"Fig. 6: a linear denoiser fitted on {n_train} faces (first) and one fitted on "
                          f"{n_train} of its own samples (retrained), from the same noise (one per column)"),
        nearest_figure(ctx, "fig6_nearest.png", rows[:2], data,
                       f"The first and the retrained linear denoiser, {plural(c['steps'], 'DDIM step')}"),
    ]
    return Result(m, claims, figures)


EXPERIMENT = Experiment(
    id="fig6-linear-retrain",
    title="A linear denoiser retrained on its own samples gives the same images (Thm 3)",
    paper="We trained an initial linear denoiser on the CelebA dataset and sampled an entirely new dataset "
          "... trained a second linear denoiser exclusively on this newly synthesized dataset ... the two "
          "models yield remarkably similar visual outputs (Sec. 3.1, Fig. 6).",
    scales={"quick": QUICK, "paper": {**QUICK, "data": None, "n_train": 1000, "image_size": 64,
                                      "fine_steps": 10000}},
    run=run,
    uses_images=True,
)
