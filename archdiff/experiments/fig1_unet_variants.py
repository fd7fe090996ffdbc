"""Figure 1: five UNet variants trained on the same images and sampled from the same noise.

Variants (paper Sec. 1, Fig. 1): the default UNet; more pooling (one more encoder block: a larger
receptive field); less pooling (one fewer); fewer channels; circular instead of zero padding. Each
variant's receptive field is computed exactly (``networks.unet.receptive_field``) and reported.

Measures, each against a bound derived from the samples themselves:
- copying: copy fraction (nearest training image < 1/3 of the second nearest); a model "copies" when
  most of its samples are copies (fraction >= 1/2) and "does not copy" when most are not.
- sharpness: mean over samples of ``metrics.high_frequency_energy`` (fraction of spectral energy above
  1/4 cycle per pixel); "loses sharpness" when lower than the default's by more than 3 standard errors
  of the difference of the two means.
- location: with circular padding the network commutes with circular shifts by multiples of
  P = 2**num_blocks, and the initial noise is shift-invariant in law, so the expected mean sample is
  P-periodic. Split the training mean image t into its P-periodic part (its average over those shifts,
  an orthogonal projection) and the rest, u: the location structure no P-periodic image has. The
  location signal of a model is the component of its mean sample along u, as a fraction of u:
  <mean sample, u> / |u|^2 (1: all of the training mean's location structure; 0 in expectation for any
  location-blind model). It is a mean over samples of <sample, u> / |u|^2, so its standard error is
  their SD / sqrt(n). "Loses location": at most 3 standard errors above 0; "keeps location": more than 3
  above 0. (The Pearson correlation of the mean sample with t, and its jackknife standard error, are
  reported too; for a nearly flat mean sample that correlation is ill-conditioned -- its standard error
  can exceed 0.3 -- so the claims do not use it.)

Scales: ``paper`` trains one network per noise level (the authors' setting) on 1000 CelebA 64x64 images
with the paper's 500 epochs, Adam lr 1e-4, 50 DDIM steps. Settings the paper does not give, chosen here:
batch size 64 (16 Adam steps per epoch); the authors' file's defaults for the UNet (3 blocks, 32 base
channels, bias-free convolutions, BatchNorm); "fewer channels" = 8 base channels (a quarter of 32: few
enough that the network visibly loses detail, still every layer); 256 samples. ``fig1-unet-variants-time``
is the same figure at paper scale with ONE time-conditioned network per variant (the level as an input
channel) trained for the same 500 epochs, so the two conditioning modes can be compared on the same data.
``quick`` (2 CPU cores, minutes) trains ONE
time-conditioned network per variant (the level as an extra input channel) on 16 of the bundled LFW faces
at 16x16. (Measured over seeds 0-4 with 1500 epochs: on 32 faces the largest-field variant copied only
33-45 % of its samples, short of "most"; on 16 faces 64-84 %, while the default copied none.)
Its block counts keep the paper's receptive-field-to-image ratios: at 64 px, 2 / 3 / 4 blocks
give fields of 48 / 100 / 204 px (0.75 / 1.6 / 3.2 images); at 16 px, 0 / 1 / 2 blocks give 7 / 20 / 48
px (0.44 / 1.25 / 3.0 images).
"""

from __future__ import annotations

import math

import torch

from archdiff import metrics
from archdiff.denoisers.networks import NetSpec
from archdiff.denoisers.networks.unet import receptive_field
from archdiff.experiments.base import MAJORITY, Claim, Context, Experiment, Result, key, keyed
from archdiff.experiments.figures import grid_figure, nearest_figure, plural
from archdiff.experiments.trained import SPEED_SWITCHES, train_and_sample
from archdiff.samplers import initial_noise

N_SE = 3.0  # standard errors a sharpness drop (or a location signal) must exceed
JACKKNIFE_GROUPS = 8
QUICK = {"data": "lfw", "n_train": 16, "image_size": 16, "base_channels": 16, "num_blocks": 1,
         "fewer_channels": 4, "norm": "batch", "conditioning": "time", "epochs": 1500, "batch_size": 16,
         "lr": 2e-3, "lr_schedule": "cosine", "schedule": "cosine", "steps": 50, "n_samples": 64,
         "sample_batch": 64, "grid_columns": 8, "save_models": False, **SPEED_SWITCHES}
# the paper: one network per level, 1000 CelebA 64x64 images (pass --data celeba:PATH), 500 epochs, Adam 1e-4
PAPER = {**QUICK, "data": None, "n_train": 1000, "image_size": 64, "base_channels": 32, "num_blocks": 3,
         "fewer_channels": 8, "conditioning": "per-level", "epochs": 500, "batch_size": 64, "lr": 1e-4,
         "lr_schedule": "constant", "n_samples": 256, "save_models": True}


def variants(c: dict, channels: int) -> dict[str, dict]:
    """Name -> UNet kwargs of the five variants (``channels``: image channels), in the paper's row order."""
    base = dict(in_channels=channels, base_channels=c["base_channels"], num_blocks=c["num_blocks"],
                padding_mode="zeros", norm=c["norm"], bias=False)
    return {  # the paper's row order
        "more pooling": {**base, "num_blocks": c["num_blocks"] + 1},
        "default": base,
        "less pooling": {**base, "num_blocks": c["num_blocks"] - 1},
        "fewer channels": {**base, "base_channels": c["fewer_channels"]},
        "circular padding": {**base, "padding_mode": "circular"},
    }


def sharpness(samples: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error over samples of their high-frequency energy fraction."""
    hf = torch.tensor([metrics.high_frequency_energy(s[None]) for s in samples.cpu()], dtype=torch.float64)
    return float(hf.mean()), float(hf.std() / math.sqrt(hf.numel()))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two images over their pixels."""
    return float(metrics.correlations(a[None], b[None])[0])


def correlation_se(samples: torch.Tensor, target: torch.Tensor, groups: int = JACKKNIFE_GROUPS) -> float:
    """Jackknife standard error of ``correlation(samples.mean(0), target)``: delete one of ``groups``
    groups of samples at a time."""
    parts = samples.chunk(groups)
    total = samples.sum(0)
    theta = torch.tensor([correlation((total - p.sum(0)) / (len(samples) - len(p)), target) for p in parts],
                         dtype=torch.float64)
    g = len(parts)
    return float(((g - 1) / g * (theta - theta.mean()).square().sum()).sqrt())


def location_signal(samples: torch.Tensor, target: torch.Tensor, period: int) -> tuple[float, float]:
    """The samples' location signal (module docstring) against the training mean ``target`` and its
    standard error: the mean and SE over samples of <sample, u> / |u|^2, u = target - its periodic part."""
    u = (target - periodic_part(target, period)).double()
    per_sample = (samples.double() * u).flatten(1).sum(1) / u.square().sum()
    return float(per_sample.mean()), float(per_sample.std() / math.sqrt(per_sample.numel()))


def periodic_part(image: torch.Tensor, period: int) -> torch.Tensor:
    """Average of image [C, H, W] over its circular shifts by multiples of ``period`` (a P-periodic image)."""
    h, w = image.shape[-2:]
    shifts = [torch.roll(image, (i, j), (-2, -1)) for i in range(0, h, period) for j in range(0, w, period)]
    return torch.stack(shifts).mean(0)


def run(ctx: Context) -> Result:
    """Train the five variants on one image set, sample each from the same noise, measure."""
    c = ctx.config
    data = ctx.images()
    x_T = initial_noise(c["n_samples"], tuple(data.shape[1:]), ctx.seed, ctx.device)
    nets = variants(c, data.shape[1])
    m: dict = {"n_train": data.shape[0], "image_size": data.shape[-1]}
    m["hf_energy.train"], _ = sharpness(data)
    samples = {}
    period = 2 ** nets["circular padding"]["num_blocks"]
    for name, kw in nets.items():
        s, trained = train_and_sample(ctx, NetSpec("unet", kw), data, x_T, name)
        samples[name] = s.cpu()
        m[key("receptive_field", name)] = receptive_field(kw["num_blocks"])
        m[key("final_loss", name)] = float(trained.losses[-1].mean())
        m.update(keyed(metrics.copy_stats(s, data), name))
        m[key("hf_energy", name)], m[key("hf_energy_se", name)] = sharpness(s)
        m[key("mean_corr", name)] = correlation(s.mean(0), data.mean(0))
        m[key("mean_corr_se", name)] = correlation_se(s.cpu(), data.mean(0).cpu())
        m[key("location_signal", name)], m[key("location_signal_se", name)] = location_signal(
            s.cpu(), data.mean(0).cpu(), period)
    m["mean_corr.periodic_bound"] = correlation(periodic_part(data.mean(0).cpu(), period), data.mean(0))
    size = data.shape[-1]
    rows = [(row_label(name, m[key("receptive_field", name)], size), samples[name]) for name in nets]
    figures = [
        grid_figure(ctx, "fig1.png", rows, title=f"Fig. 1: five UNet variants trained on the same "
                    f"{data.shape[0]} images, sampled from the same noise (one initial noise per column)"),
        nearest_figure(ctx, "fig1_nearest.png", rows, data.cpu(), "UNet variants"),
    ]
    return Result(m, claims(m, c), figures)


def row_label(name: str, field: int, size: int) -> str:
    """A variant's row label: its name and its receptive field, also as a multiple of the image side."""
    return f"{name}\nfield {field} px\n({field / size:.2f} x image side)"


def claims(m: dict, c: dict) -> list[Claim]:
    """The four measured claims of Figure 1."""
    se = math.hypot(m["hf_energy_se.fewer_channels"], m["hf_energy_se.default"])
    size = m["image_size"]
    return [
        Claim.at_least(
            "largest-field-copies",
            f"The variant with the largest receptive field (more pooling, "
            f"{m['receptive_field.more_pooling']} px on {size} px images) copies training images: copy "
            f"fraction (nearest < 1/3 second nearest) of its {plural(c['n_samples'], 'sample')}, holds at "
            f">= 1/2 (most samples are copies).",
            m["copy_fraction.more_pooling"], MAJORITY),
        Claim.at_most(
            "default-does-not-copy",
            f"The default UNet ({plural(c['num_blocks'], 'block')}, field {m['receptive_field.default']} px) "
            f"does not copy: its copy fraction, holds at <= 1/2 (most samples are new).",
            m["copy_fraction.default"], MAJORITY),
        Claim.at_most(
            "fewer-channels-lose-sharpness",
            f"Fewer channels ({c['fewer_channels']} instead of {c['base_channels']}) lose sharpness: mean "
            f"high-frequency energy fraction (above 1/4 cycle/px) of its samples divided by the default's; "
            f"holds below 1 - {N_SE:g} standard errors of the difference (relative to the default's).",
            m["hf_energy.fewer_channels"] / m["hf_energy.default"], 1 - N_SE * se / m["hf_energy.default"]),
        Claim.at_most(
            "circular-loses-location",
            f"Circular padding loses location information: its location signal (the component of its mean "
            f"sample along the training mean's non-periodic part, shifts by 2**num_blocks, as a fraction of "
            f"it: 1 = all of the training mean's location structure, 0 in expectation for a location-blind "
            f"model), holds at most at {N_SE:g} standard errors (over its samples).",
            m["location_signal.circular_padding"], N_SE * m["location_signal_se.circular_padding"]),
        Claim.at_least(
            "default-keeps-location",
            f"Zero padding keeps location information: the default UNet's location signal (as above), holds "
            f"above {N_SE:g} standard errors (over its samples).",
            m["location_signal.default"], N_SE * m["location_signal_se.default"]),
    ]


EXPERIMENT = Experiment(
    id="fig1-unet-variants",
    title="Five UNet variants on one training set: copying, blur and location depend on the architecture",
    paper="Each row of figure 1 presents samples from a diffusion model trained on exactly the same "
          "dataset ... When the receptive field is too large (top), the samples are exact copies of the "
          "training images ... changing the number of channels (now the samples lose their sharpness) ... "
          "circular padding ... makes the samples ignore the location information (Sec. 1, Fig. 1).",
    scales={"quick": QUICK, "paper": PAPER},
    run=run,
    uses_images=True,
)

EXPERIMENTS = [EXPERIMENT, EXPERIMENT.time_conditioned()]
