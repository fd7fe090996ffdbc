"""Figure 4: a bottleneck MLP denoiser generates samples on an h-dimensional manifold (Theorem 6).

Notation (paper Sec. 2.3): H is the hidden width, h the bottleneck width of
Linear(2,H) LReLU, Linear(H,h) LReLU, Linear(h,H) LReLU, Linear(H,2), one network per noise level.
The last DDIM step returns the denoiser's output x0_hat, a function of h numbers, so every sample lies
on the image of R^h under the decoder: a curve for h = 1, a 2-D region for h = 2 (in the plane).

Measure: TwoNN intrinsic dimension (``metrics.intrinsic_dimension``, duplicates removed) of each model's
samples, scaled to unit RMS first (TwoNN is scale-free; the scaling makes its duplicate rounding
relative). A claim holds when the estimate rounds to h (|ID - h| <= 0.5, half the gap between adjacent
integer dimensions). The estimator is calibrated on sets of the same size whose dimension is known --
points on a circle (1-D) and the 3GMM training data (2-D) -- and its error there is reported, so a
reader can see how much of the 0.5 margin estimator bias uses up.
"""

from __future__ import annotations

import math

import torch

from archdiff import metrics, plots, seeding
from archdiff.data import toy2d
from archdiff.denoisers.networks import NetSpec
from archdiff.denoisers.networks.mlp import PRESETS_2D
from archdiff.experiments.base import Claim, Context, Experiment, Result, key
from archdiff.experiments.figures import plural
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels
from archdiff.theory import bottleneck_prediction
from archdiff.training import TrainConfig, train

ROUNDING = 0.5  # |ID - h| below this: the estimate rounds to h
QUICK = {"models": ["h2", "h1"], "n_train": 2000, "n_samples": 2000, "epochs": 40, "batch_size": 128,
         "lr": 1e-3, "steps": 50, "schedule": "cosine"}


def circle(n: int, radius: float, seed: int) -> torch.Tensor:
    """n points at uniformly random angles on a circle: a known 1-D set [n, 2]."""
    theta = torch.rand(n, generator=seeding.generator(seed, "circle"), dtype=torch.float64) * 2 * math.pi
    return radius * torch.stack([theta.cos(), theta.sin()], 1)


def dimension(x: torch.Tensor) -> float:
    """TwoNN dimension of x [N, 2] scaled to unit RMS, so the duplicate rounding (1e-6) is relative."""
    x = x.double()
    return metrics.intrinsic_dimension((x - x.mean(0)) / (x - x.mean(0)).square().mean().sqrt())


def calibration(n: int, seed: int) -> dict[str, float]:
    """The TwoNN estimate on known 1-D and 2-D sets of n points, and its largest error."""
    id1 = dimension(circle(n, toy2d.R3, seed))
    id2 = dimension(toy2d.gmm3(n, seeding.derive(seed, "calibration")))
    return {"intrinsic_dimension.known_1d": id1, "intrinsic_dimension.known_2d": id2,
            "intrinsic_dimension.calibration_error": max(abs(id1 - 1), abs(id2 - 2))}


def run(ctx: Context) -> Result:
    """Train each bottleneck MLP per level on the 3GMM, sample with DDIM from the same noise, measure ID."""
    c = ctx.config
    data = toy2d.gmm3(c["n_train"], ctx.seed).float()
    ctx.record(data_source="toy2d 3GMM", n_train=c["n_train"], data_shape=[2])
    x_T = initial_noise(c["n_samples"], (2,), ctx.seed, ctx.device)
    levels = sampling_levels(c["schedule"], c["steps"])
    cfg = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"], schedule=c["schedule"],
                      steps=c["steps"], seed=ctx.seed, checkpoint_every=max(c["epochs"] // 5, 1))
    m: dict = calibration(c["n_samples"], ctx.seed)
    panels = [("3GMM data", data)]
    claims = []
    for name in c["models"]:
        kw = PRESETS_2D[name]
        trained = train(NetSpec("mlp2d", kw), data, cfg, out=ctx.out / "models" / name, resume=True,
                        device=ctx.device, progress=ctx.progress)
        samples = ddim(trained.denoiser, x_T, levels, progress=ctx.progress).cpu()
        h = kw["bottleneck"]
        dim = m[key("intrinsic_dimension", name)] = dimension(samples)
        m[key("final_loss", name)] = float(trained.losses[-1].mean())
        distinct = torch.unique(samples.double().round(decimals=6), dim=0)
        m[key("distinct_samples", name)] = int(distinct.shape[0])
        panels.append((f"H={kw['hidden']}, h={h}: ID {dim:.2f}", samples))
        claims.append(Claim.at_most(
            f"samples-on-{h}d-manifold-{name}",
            f"Samples of the bottleneck MLP with h={h} (H={kw['hidden']}) lie on an h-dimensional manifold: "
            f"|TwoNN dimension - {h}| <= {ROUNDING} (the estimate rounds to h; the estimator's error on "
            f"known 1-D/2-D sets of the same size is reported as intrinsic_dimension.calibration_error).",
            abs(dim - bottleneck_prediction(h)), ROUNDING))
    lim = 3.2 * toy2d.R3 / math.sqrt(2) * 1.2
    fig = plots.scatter_panels(
        ctx.out / "fig4.png", panels, lim=lim,
        title=f"Fig. 4: bottleneck MLP denoisers (hidden width H, bottleneck h) trained on the 3GMM, "
              f"sampled from the same noise ({plural(c['steps'], 'DDIM step')}); ID: TwoNN intrinsic "
              f"dimension of the samples")
    return Result(m, claims, [fig.name])


EXPERIMENT = Experiment(
    id="fig4-bottleneck-2d",
    title="Bottleneck MLP denoisers on the 3GMM: samples on an h-dimensional manifold (Thm 6)",
    paper="When training a bottleneck architecture, samples lie on an h-dimensional manifold: the "
          "intrinsic dimensionality of the generated output is strictly correlated with the bottleneck "
          "dimension h (Theorem 6, Fig. 4; H=256, h=2 and H=64, h=1).",
    scales={"quick": QUICK,
            "paper": {**QUICK, "n_train": 10000, "n_samples": 10000, "epochs": 500, "lr": 1e-4}},
    run=run,
)
