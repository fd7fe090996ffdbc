"""Figure 9: image MLPs of three widths; the widest (width = number of training images) copies.

The image MLP (``networks.image_mlp``) is a global bottleneck network: before its Tanh every output is an
affine function of w hidden units, so a width-w network's outputs -- and the last DDIM step returns the
network's output -- lie on a set of dimension at most w (paper Sec. 5, Theorem 6 for bottlenecks). With
w = N training images the network can store every image; narrower ones cannot.

Measures:
- copying: copy fraction (nearest training image < 1/3 of the second nearest); "copies" when most
  samples are copies (>= 1/2), "does not copy" when most are not.
- rank: effective rank (Roy & Vetterli) of each model's samples; it "falls with width" when every step
  to a narrower width lowers it by more than 3x the noise floor, the largest difference between the
  effective ranks of two independent sample sets (different initial noise) of one model.
  The numerical rank (covariance eigenvalues above 1e-4 of the largest) is reported beside it.

Scales: ``paper`` trains one network per noise level (the authors' setting; 500 epochs, Adam lr 1e-4,
50 DDIM steps) on 1000 CelebA 64x64 images, widths 1000, 200, 50. Settings the paper does not give, chosen
here: widths 1000 (= N, able to store every image), 200 (the authors' file's default width) and 50 (a quarter
of it); batch size 64; 256 samples. ``fig9-mlp-width-time`` is the same figure at paper scale with ONE
time-conditioned network per width, for comparing the two conditioning modes on the same data.
``quick`` (2 CPU cores) trains ONE
time-conditioned network per width (the level as one more input) on the 100 bundled LFW faces (25x25),
widths 100, 20, 5: the same fractions 1, 1/5, 1/20 of the number of training images.
"""

from __future__ import annotations

from archdiff import metrics
from archdiff.denoisers.networks import NetSpec
from archdiff.experiments.base import MAJORITY, Claim, Context, Experiment, Result, keyed
from archdiff.experiments.figures import grid_figure, nearest_figure
from archdiff.experiments.trained import SPEED_SWITCHES, train_and_sample
from archdiff.samplers import initial_noise

NOISE_FLOOR_FACTOR = 3.0
QUICK = {"data": "lfw", "n_train": None, "image_size": None, "width_fractions": [1.0, 0.2, 0.05],
         "conditioning": "time", "epochs": 3000, "batch_size": 100, "lr": 2e-3, "lr_schedule": "cosine",
         "schedule": "cosine", "steps": 50, "n_samples": 300, "sample_batch": None, "grid_columns": 8,
         "save_models": False, **SPEED_SWITCHES}
# the paper: one network per level, 1000 CelebA 64x64 images (pass --data celeba:PATH), 500 epochs, Adam 1e-4
PAPER = {**QUICK, "data": None, "n_train": 1000, "image_size": 64, "conditioning": "per-level", "epochs": 500,
         "batch_size": 64, "lr": 1e-4, "lr_schedule": "constant", "n_samples": 256, "save_models": True}


def widths(c: dict, n_train: int) -> list[int]:
    """Hidden widths, widest first: the config's fractions of the number of training images."""
    return [max(1, round(f * n_train)) for f in c["width_fractions"]]


def run(ctx: Context) -> Result:
    """Train an image MLP per width, sample each from the same noise, measure copying and rank."""
    c = ctx.config
    data = ctx.images()
    shape = tuple(data.shape[1:])
    x_T = initial_noise(2 * c["n_samples"], shape, ctx.seed, ctx.device)  # two independent halves
    ws = widths(c, data.shape[0])
    m: dict = {"n_train": data.shape[0], "widths": ws, "effective_rank.train": metrics.effective_rank(data)}
    rows, floor = [], 0.0
    for w in ws:
        both, trained = train_and_sample(ctx, NetSpec("image_mlp", {"shape": list(shape), "width": w}),
                                        data, x_T, f"width {w}")
        s, other = both[: c["n_samples"]].cpu(), both[c["n_samples"]:].cpu()
        rows.append((f"width {w}", s))
        m[f"final_loss.width_{w}"] = float(trained.losses[-1].mean())
        m.update(keyed(metrics.copy_stats(s, data), f"width_{w}"))
        m[f"effective_rank.width_{w}"] = metrics.effective_rank(s)
        m[f"numerical_rank.width_{w}"] = metrics.numerical_rank(s)
        floor = max(floor, abs(m[f"effective_rank.width_{w}"] - metrics.effective_rank(other)))
    m["effective_rank.noise_floor"] = floor
    ranks = [m[f"effective_rank.width_{w}"] for w in ws]
    m["min_rank_drop"] = min(a - b for a, b in zip(ranks, ranks[1:]))
    figures = [
        grid_figure(ctx, "fig9.png", rows, title=f"Fig. 9: image MLPs of decreasing hidden width trained on "
                    f"the same {data.shape[0]} faces, sampled from the same noise (one per column)"),
        nearest_figure(ctx, "fig9_nearest.png", rows, data.cpu(), "Image MLPs"),
    ]
    return Result(m, claims(m, ws), figures)


def claims(m: dict, ws: list[int]) -> list[Claim]:
    """Copying at full width, none below it, and rank falling with width."""
    narrower = max(m[f"copy_fraction.width_{w}"] for w in ws[1:])
    return [
        Claim.at_least(
            "widest-copies",
            f"The MLP of width {ws[0]} (= the {m['n_train']} training images) copies: copy fraction of its "
            f"samples (nearest < 1/3 second nearest), holds at >= 1/2 (most samples are copies).",
            m[f"copy_fraction.width_{ws[0]}"], MAJORITY),
        Claim.at_most(
            "narrower-do-not-copy",
            f"Narrower MLPs (widths {', '.join(map(str, ws[1:]))}) do not copy: the largest copy fraction "
            f"among them, holds at <= 1/2 (most samples are new).",
            narrower, MAJORITY),
        Claim.at_least(
            "rank-falls-with-width",
            f"Samples of narrower MLPs lie on lower-rank sets: smallest drop of the samples' effective rank "
            f"from one width to the next narrower ({' > '.join(map(str, ws))}); holds above "
            f"{NOISE_FLOOR_FACTOR:g}x the noise floor between two independent sample sets of one model.",
            m["min_rank_drop"], NOISE_FLOOR_FACTOR * m["effective_rank.noise_floor"]),
    ]


EXPERIMENT = Experiment(
    id="fig9-mlp-width",
    title="Image MLPs of three widths: the widest (width = number of images) copies, narrower lose rank",
    paper="Given that our experimental dataset was deliberately small (consisting of exactly 1000 samples), "
          "the network with [width 1000] ... led the model to strictly memorize and reproduce the training "
          "samples ... employing progressively smaller hidden dimensions forces the generated data to lie on "
          "a lower-rank manifold (Sec. 5, Fig. 9).",
    scales={"quick": QUICK, "paper": PAPER},
    run=run,
    uses_images=True,
)

EXPERIMENTS = [EXPERIMENT, EXPERIMENT.time_conditioned()]
