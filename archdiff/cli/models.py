"""The commands for a user's own models and data: ``archdiff train | fit | sample | measure``.

    archdiff train unet --data folder:faces --image-size 32 --out models/unet --set epochs=100
    archdiff fit linear --data folder:faces --image-size 32 --out models/linear --set rank=20
    archdiff sample models/unet --n 64 --steps 50 --out unet.npz          (also writes unet.png)
    archdiff measure unet.npz --train folder:faces

Each is a thin layer over the Python API (``training.train``, the closed-form denoisers' ``fit`` and
``save``, ``denoisers.load``, ``samplers.sample``, ``metrics.measure``); settings are checked against the
defaults' types as the experiments' are (``experiments.base.checked_setting``).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archdiff.data.images import MAX_BAD_FILES
from archdiff.errors import UserError

TRAIN_EXAMPLES = """examples:
  archdiff train unet --data lfw --out models/unet --set epochs=200 --set conditioning=time
  archdiff train image_mlp --data folder:faces --image-size 32 --net-set width=64 --out models/mlp
  archdiff train mypkg.nets:MyNet --data npz:train.npz --out models/mine --set epochs=50
  archdiff train unet --data lfw --out models/unet --set epochs=400   (extends a finished run)

NET is a registered network (unet, image_mlp, mlp2d, ...) or a user's nn.Module as module:Class.
Constructor arguments the data decide (in_channels, shape) are filled in from the data unless given.
--set takes TrainConfig's fields: epochs, batch_size, lr, optimizer, lr_schedule, conditioning
(per-level | time), schedule, steps, levels, antithetic, engine, precision, channels_last, compile,
checkpoint_every. Training into a folder that holds a checkpoint resumes it (or extends a finished
constant-rate run to more epochs)."""

FIT_EXAMPLES = """examples:
  archdiff fit linear --data lfw --out models/linear
  archdiff fit linear --data lfw --out models/rank10 --set rank=10
  archdiff fit polynomial --data lfw --out models/poly3 --set degree=3 --set steps=50
  archdiff fit memorizing --data lfw --out models/memorizer
  archdiff fit local-score --data lfw --out models/els5 --set patch=5 --set padding=circular
  archdiff fit local-score --data lfw --out models/els --set calibrate_on=models/unet   (Kamb & Ganguli's
      calibration: per level, the patch size whose output best matches the saved network's)"""

SAMPLE_EXAMPLES = """examples:
  archdiff sample models/unet --n 64 --steps 50 --out unet.npz
  archdiff sample models/linear --steps 10 --sampler ddpm --seed 3 --out linear.npz
  archdiff sample diffusers:my_pipeline --steps 50 --out theirs.npz   (a diffusers UNet + scheduler)

Writes OUT (an .npz holding 'samples' [N, *shape] and 'about', the settings as JSON) and a PNG beside it
(a grid of the first 64 images, or a scatter plot of 2-D points). The same seed gives the same initial
noise for every model, so samples of different models compare one to one."""

MEASURE_EXAMPLES = """examples:
  archdiff measure unet.npz --train lfw
  archdiff measure unet.npz --train folder:faces --n-train 1000 --json unet_metrics.json

SAMPLES is an .npz written by 'archdiff sample' (key 'samples'), or any image data spec. The training
images are resized to the samples' size unless --image-size says otherwise. Measured: copy fraction
(nearest training image < 1/3 of the second nearest), nearest-neighbour distances and their ratio,
distance from the linear model's Gaussian N(mean, Cov) of the training set (mean and covariance errors
beside their RMS for as many Gaussian draws), sliced Wasserstein to the training set and to that
Gaussian, intrinsic dimension, effective rank and (images) high-frequency energy."""


def add_commands(sub: argparse._SubParsersAction, common) -> None:
    """Add the train / fit / sample / measure sub-commands (``common`` adds --device, --seed, ...)."""
    fmt = argparse.RawDescriptionHelpFormatter
    train = sub.add_parser("train", help="train a network denoiser on your data", epilog=TRAIN_EXAMPLES,
                           formatter_class=fmt)
    train.add_argument("net", help="registered network name or module:Class")
    _data_options(train, "--data", required=True)
    train.add_argument("--out", required=True, help="folder for the saved model and its checkpoints")
    train.add_argument("--net-set", action="append", default=[], metavar="KEY=VALUE",
                       help="a constructor argument of the network (TOML value; repeatable)")
    _settings_options(train, "TrainConfig field")
    common(train)

    kinds = "\n".join(f"  {k}: " + (", ".join(f"{n}={v!r}" for n, v in d.items()) or "no settings")
                      for k, d in FIT_KINDS.items())
    fit = sub.add_parser("fit", help="fit a closed-form denoiser on your data and save it",
                         epilog=f"{FIT_EXAMPLES}\n\nsettings (--set) and their defaults:\n{kinds}\n"
                                f"(rank 0: the data's full rank; steps / schedule: the sampling levels a "
                                f"per-level fit is fitted at before it is saved)", formatter_class=fmt)
    fit.add_argument("kind", help="linear | memorizing | polynomial | local-score")
    _data_options(fit, "--data", required=True)
    fit.add_argument("--out", required=True, help="folder for the saved model")
    fit.add_argument("--force", action="store_true", help="replace the model a non-empty --out holds")
    _settings_options(fit, "setting of the kind")
    common(fit)

    sample = sub.add_parser("sample", help="sample any saved denoiser", epilog=SAMPLE_EXAMPLES,
                            formatter_class=fmt)
    sample.add_argument("model", help="a saved-model folder, or diffusers:FOLDER")
    sample.add_argument("--out", required=True, help="the .npz to write (a PNG is written beside it)")
    sample.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    sample.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    sample.add_argument("--sampler", choices=("ddim", "ddpm"), default="ddim")
    sample.add_argument("--schedule", choices=("cosine", "linear"), default="cosine")
    sample.add_argument("--batch-size", type=int, default=None, help="denoiser calls in chunks of this size")
    sample.add_argument("--force", action="store_true", help="replace OUT if it exists")
    common(sample)

    measure = sub.add_parser("measure", help="measure samples against their training data",
                             epilog=MEASURE_EXAMPLES, formatter_class=fmt)
    measure.add_argument("samples", help="an .npz from 'archdiff sample', or an image data spec")
    _data_options(measure, "--train", required=True)
    measure.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    common(measure)


def _data_options(p: argparse.ArgumentParser, flag: str, required: bool) -> None:
    p.add_argument(flag, required=required, metavar="SPEC",
                   help="lfw | digits | celeba:PATH | folder:PATH | npz:PATH")
    p.add_argument("--n-train", type=int, default=None, metavar="N", help="a seeded subset of N images")
    p.add_argument("--image-size", type=int, default=None, metavar="S", help="resize images to S x S")
    p.add_argument("--max-bad-files", type=int, default=MAX_BAD_FILES, metavar="N",
                   help=f"unreadable files of an image folder to skip, each named in a warning, before "
                        f"loading it is an error (default {MAX_BAD_FILES})")


def _settings_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help=f"a {what} (TOML value; repeatable; applied after --config)")
    p.add_argument("--config", default=None, metavar="FILE", help=f"{what}s from a TOML file")


# ------------------------------------------------------------------------------------------- train


def data_filled(factory, kwargs: dict[str, Any], data: torch.Tensor) -> dict[str, Any]:
    """The constructor arguments with those the data decide filled in when the constructor takes them and
    they are not given: ``in_channels`` (images' C), ``shape`` (one sample's shape), ``dim`` (vectors' D)."""
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not takes_any]
    if unknown:
        named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise UserError(f"unknown --net-set argument(s) {', '.join(unknown)} for "
                        f"{getattr(factory, '__name__', factory)}: it takes {', '.join(named) or 'none'}")
    known = {"in_channels": int(data.shape[1]), "shape": list(data.shape[1:])}
    if data.ndim == 2:
        known["dim"] = int(data.shape[1])
    return {**{k: v for k, v in known.items() if k in params and k not in kwargs}, **kwargs}


def train_config(settings: dict[str, Any], seed: int):
    """A TrainConfig from --set / --config settings, each checked against the field's default."""
    from archdiff.experiments.base import checked_setting
    from archdiff.training import TrainConfig

    defaults = dataclasses.asdict(TrainConfig())
    unknown = [k for k in settings if k not in defaults or k == "seed"]
    if unknown:
        raise UserError(f"unknown training setting(s) {', '.join(unknown)}: use {', '.join(defaults)} "
                        f"(the seed is --seed)")
    checked = {k: checked_setting(f"training setting {k}", defaults[k], v) for k, v in settings.items()}
    try:
        return TrainConfig(**{**checked, "seed": seed})
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None


def train_command(args: argparse.Namespace) -> None:
    """archdiff train: a network on the user's data, saved with its checkpoints in --out."""
    from archdiff.cli import settings
    from archdiff.data.images import load_images
    from archdiff.denoisers.networks import NetSpec, factory
    from archdiff.threads import policy
    from archdiff.training import CHECKPOINT_FILE, train

    config = train_config(settings(args.settings, args.config), args.seed)
    data = load_images(args.data, n=args.n_train, size=args.image_size, seed=args.seed,
                       max_bad_files=args.max_bad_files)
    net_kwargs = settings(args.net_set, None, "--net-set")
    try:
        spec = NetSpec(args.net, data_filled(factory(args.net), net_kwargs, data))
    except (ValueError, ImportError) as e:
        raise UserError(str(e)) from None
    out = Path(args.out)
    check_training_folder(out)
    if (out / CHECKPOINT_FILE).exists():
        print(f"resuming from the checkpoint in {out}")
    with policy(args.threads):
        try:
            result = train(spec, data, config, out=out, resume=True, device=args.device,
                           progress=not args.quiet)
        except ValueError as e:
            raise UserError(str(e)) from None
    print(f"trained {spec.name} ({config.conditioning}, {config.epochs} epochs, final mean loss "
          f"{float(result.losses[-1].mean()):.4g}); saved model: {out}/ (sample it: archdiff sample {out} "
          f"--out samples.npz)")


def saved_kind(folder: Path) -> str | None:
    """The kind of the saved model in a folder (None when it holds none, or an unreadable config)."""
    from archdiff.denoisers.saved import CONFIG_FILE, NETWORK

    try:
        return json.loads((folder / CONFIG_FILE).read_text()).get("kind", NETWORK)
    except (OSError, ValueError, AttributeError):
        return None


def check_training_folder(out: Path) -> None:
    """Refuse to train into a folder that holds a fitted closed-form model (training would resume from or
    mix with files that are not a training run's)."""
    from archdiff.denoisers.saved import NETWORK

    kind = saved_kind(out)
    if kind not in (None, NETWORK):
        raise UserError(f"{out} holds a fitted {kind!r} model, not a training run: choose another --out")


# --------------------------------------------------------------------------------------------- fit


# kind -> its settings with their defaults (``rank`` 0: the data's full rank; ``steps`` / ``schedule``: the
# sampling levels fitted before saving, for the kinds fitted per level; local-score: ``patch`` one size for
# every level, unless ``calibrate_on`` names a saved model to calibrate a size per level on, at the
# ``steps``-step grid, among ``patch_sizes``, on its DDIM trajectories from ``calibration_samples`` noises;
# ``padding`` "clipped" is the boundary-aware machine, the one closest to zero-padded UNets)
FIT_KINDS: dict[str, dict[str, Any]] = {
    "linear": {"rank": 0},
    "memorizing": {},
    "polynomial": {"degree": 3, "width": 1024, "draws": 1, "ridge": 1e-5, "recipe": "authors", "steps": 50,
                   "schedule": "cosine"},
    "local-score": {"patch": 5, "equivariant": True, "padding": "clipped", "calibrate_on": "",
                    "patch_sizes": [1, 3, 5, 7, 9, 11, 13, 15, 19, 23, 31], "calibration_samples": 4,
                    "steps": 10, "schedule": "cosine"},
}


def fit_settings(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The kind's settings with ``settings`` applied, each checked against FIT_KINDS (else a UserError)."""
    from archdiff.experiments.base import check_range, checked_setting

    if kind not in FIT_KINDS:
        raise UserError(f"unknown closed-form kind {kind!r}: use {', '.join(FIT_KINDS)}")
    defaults = FIT_KINDS[kind]
    unknown = [k for k in settings if k not in defaults]
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)} for {kind}: its settings are "
                        f"{', '.join(defaults) or 'none'}")
    chosen = {k: checked_setting(f"{kind} setting {k}", defaults[k], v) for k, v in settings.items()}
    for k, v in chosen.items():
        check_range(f"{kind} setting {k}", defaults[k], v)
    if kind == "linear" and chosen.get("rank", 0) < 0:
        raise UserError(f"linear setting rank = {chosen['rank']}: expected 0 (the data's full rank) or more")
    if kind == "local-score":
        check_local_score(chosen)
    return {**defaults, **chosen}


def check_local_score(chosen: dict[str, Any]) -> None:
    """Refuse local-score settings that cannot make a machine, before any data is loaded."""
    from archdiff.denoisers.local_score import PADDINGS

    if chosen.get("padding", "clipped") not in PADDINGS:
        raise UserError(f"local-score setting padding = {chosen['padding']!r}: use one of "
                        f"{', '.join(PADDINGS)}")
    if "patch_sizes" in chosen and not chosen["patch_sizes"]:
        raise UserError("local-score setting patch_sizes = []: give the candidate sizes, e.g. [1, 3, 5, 7]")
    if chosen.get("calibrate_on") and "patch" in chosen:
        raise UserError("local-score: give either patch (one size for every level) or calibrate_on (a size "
                        "per level calibrated on a saved model), not both")


def fit_closed_form(kind: str, data: torch.Tensor, s: dict[str, Any], seed: int = 0):
    """A closed-form denoiser of ``kind`` fitted on data with the settings ``fit_settings`` checked."""
    from archdiff.denoisers import EmpiricalOptimal, LinearDenoiser, PolynomialDenoiser
    from archdiff.schedule import sampling_levels

    try:
        if kind == "linear":
            return LinearDenoiser.fit(data, rank=s["rank"] or None)
        if kind == "memorizing":
            return EmpiricalOptimal(data)
        if kind == "local-score":
            return fit_local_score(data, s, seed)
        model = PolynomialDenoiser(data, s["degree"], width=s["width"], draws=s["draws"], ridge=s["ridge"],
                                   seed=seed, recipe=s["recipe"])
        for level in sampling_levels(s["schedule"], s["steps"])[:-1].tolist():
            model.fit_at(level)
        return model
    except ValueError as e:
        raise UserError(f"{kind}: {e}") from None


def fit_local_score(data: torch.Tensor, s: dict[str, Any], seed: int):
    """The local-score machine of the settings: one patch size, or calibrated per level on a saved model."""
    from archdiff.denoisers import LocalScore
    from archdiff.denoisers.local_score import calibrate, calibration_inputs
    from archdiff.samplers import initial_noise
    from archdiff.schedule import sampling_levels

    machine = {"equivariant": s["equivariant"], "padding": s["padding"]}
    if not s["calibrate_on"]:
        return LocalScore(data, s["patch"], **machine)
    network = load_model(s["calibrate_on"], data.device)
    shape = tuple(data.shape[1:])
    if tuple(network.shape) != shape:
        raise UserError(f"calibrate_on: {s['calibrate_on']} denoises samples of shape {list(network.shape)}, "
                        f"the data are {list(shape)}: give the data it was trained on (--image-size)")
    x_T = initial_noise(s["calibration_samples"], shape, seed, data.device, stream="calibration")
    inputs = calibration_inputs(network, x_T, sampling_levels(s["schedule"], s["steps"]))
    cal = calibrate(data, network, inputs, s["patch_sizes"], **machine)
    print(f"calibrated patch size per level, noisy to clean: {' '.join(map(str, cal.chosen))}")
    return LocalScore(data, cal.schedule(), **machine)


def check_fit_folder(out: Path, force: bool) -> None:
    """Refuse to replace what a folder holds unless forced; forced, drop a training run's files from it
    (a later 'archdiff train' there must not resume a run the fitted model replaced)."""
    from archdiff.training import RUN_FILES

    if out.is_file():
        raise UserError(f"--out {out} is a file: give a folder for the saved model")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UserError(f"{out} is not empty ({saved_kind(out) or 'no'} saved model in it); pass --force "
                            f"to replace its model, or choose another --out")
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)


def fit_command(args: argparse.Namespace) -> None:
    """archdiff fit: a closed-form denoiser on the user's data, saved in --out."""
    from archdiff.cli import settings
    from archdiff.data.images import load_images
    from archdiff.threads import policy

    chosen = fit_settings(args.kind, settings(args.settings, args.config))  # before the data load
    check_fit_folder(Path(args.out), args.force)
    data = load_images(args.data, n=args.n_train, size=args.image_size, seed=args.seed,
                       max_bad_files=args.max_bad_files)
    with policy(args.threads):
        model = fit_closed_form(args.kind, data.to(_device(args)), chosen, seed=args.seed)
        model.save(args.out)
    print(f"fitted {args.kind} on {data.shape[0]} images; saved model: {args.out}/ (sample it: archdiff "
          f"sample {args.out} --out samples.npz)")


# ------------------------------------------------------------------------------------------ sample


def load_model(spec: str, device: torch.device):
    """A saved denoiser folder, or ``diffusers:FOLDER`` (a diffusers UNet + scheduler, adapted)."""
    from archdiff.denoisers import load

    kind, sep, rest = spec.partition(":")
    if sep and kind == "diffusers":
        from archdiff.interop import load_diffusers

        return load_diffusers(rest, device=device)
    if not Path(spec).is_dir():
        raise UserError(f"model {spec!r} is not a folder: give a folder written by 'archdiff train' or "
                        f"'archdiff fit' (or Denoiser.save), or diffusers:FOLDER")
    try:
        return load(spec, device=device)
    except (FileNotFoundError, ValueError, ImportError, KeyError) as e:
        raise UserError(f"cannot load the model in {spec}: {e}") from None


def sample_command(args: argparse.Namespace) -> None:
    """archdiff sample: N samples of a saved denoiser from seeded noise, as .npz and PNG."""
    from archdiff import seeding
    from archdiff.samplers import initial_noise, sample
    from archdiff.schedule import sampling_levels
    from archdiff.threads import policy

    out = Path(args.out)
    if out.suffix != ".npz":
        raise UserError(f"--out {out}: name the samples file *.npz")
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; pass --force to replace it, or choose another --out")
    if args.n < 1 or args.steps < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise UserError("--n, --steps and --batch-size must be >= 1")
    device = _device(args)
    model = load_model(args.model, device)
    shape = tuple(getattr(model, "shape", ()) or ())
    if not shape:
        raise UserError(f"the model in {args.model} does not say its data shape; it cannot be sampled here")
    warn_unfitted_levels(model, sampling_levels(args.schedule, args.steps), args.model)
    x_T = initial_noise(args.n, shape, seeding.check_seed(args.seed), device)
    extra = {"generator": seeding.generator(args.seed, "sampler")} if args.sampler == "ddpm" else {}
    with policy(args.threads):
        try:
            x = sample(model, x_T, args.steps, schedule=args.schedule, sampler=args.sampler,
                       batch_size=args.batch_size, progress=not args.quiet, **extra)
        except ValueError as e:  # e.g. samples that diverged to NaN / inf: nothing is written
            raise UserError(f"sampling {args.model} failed: {e}") from None
    about = {"model": str(args.model), "n": args.n, "steps": args.steps, "sampler": args.sampler,
             "schedule": args.schedule, "seed": args.seed}
    write_samples(out, x.cpu(), about)
    png = picture(out.with_suffix(".png"), x.cpu(), f"{args.model}: {args.sampler}, {args.steps} steps")
    print(f"wrote {out} ({args.n} samples of shape {list(shape)})" + (f" and {png}" if png else ""))


def warn_unfitted_levels(model, levels: torch.Tensor, name: str) -> None:
    """Warn when a model that holds fixed levels (a per-level network's, a calibrated local machine's) is
    sampled at levels it does not hold: those calls use its nearest level."""
    known = getattr(model, "levels", None)  # [L]: a per-level network's, a calibrated machine's
    if known is None:
        return
    known = known.to(torch.float64).cpu()
    wanted = levels[:-1].to(torch.float64).cpu()  # the levels the sampler calls the denoiser at
    missing = int(((wanted[:, None] - known[None]).abs().min(1).values > 1e-12).sum())
    if missing:
        warnings.warn(f"{name} holds {len(known)} noise levels; {missing} of the {len(wanted)} sampling "
                      f"levels are not among them and use the nearest one (sample with the steps and "
                      f"schedule it was trained or calibrated with to match)", stacklevel=2)


def write_samples(path: Path, samples: torch.Tensor, about: dict) -> None:
    """The samples .npz ('samples' float32 [N, *shape], 'about' JSON), written through a temporary file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, samples=samples.float().numpy(), about=np.array(json.dumps(about)))
    os.replace(tmp, path)


def picture(path: Path, x: torch.Tensor, title: str) -> Path | None:
    """A grid of the first 64 images (rows of 8), or a scatter plot of 2-D points; else no picture."""
    from archdiff import plots

    if x.ndim == 4:
        rows = [(f"{i + 1}-{min(i + 8, len(x))}", x[i:i + 8]) for i in range(0, min(len(x), 64), 8)]
        return plots.image_grid(path, rows, title=title)
    if x.ndim == 2 and x.shape[1] == 2:
        return plots.scatter_panels(path, [(title, x)])
    return None


# ----------------------------------------------------------------------------------------- measure


def read_samples(spec: str) -> torch.Tensor:
    """Samples from an .npz written by 'archdiff sample' (as they are), or from an image data spec."""
    from archdiff.data.images import load_images

    path = Path(spec)
    if path.suffix == ".npz" and not path.exists():
        raise UserError(f"samples file {path} does not exist (write one with 'archdiff sample')")
    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if "samples" in z:
                    raw = z["samples"]
                    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
                        raise UserError(f"{path}: 'samples' hold values of type {raw.dtype}; expected real "
                                        f"numbers")
                    x = torch.from_numpy(np.asarray(raw, dtype=np.float32))
                    if x.ndim < 2 or x.shape[0] < 2 or not torch.isfinite(x).all():
                        raise UserError(f"{path}: 'samples' must hold two or more finite samples [N, ...]")
                    return x
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise UserError(f"cannot read {path} as an .npz file ({type(e).__name__}: {e})") from None
        return load_images(f"npz:{path}")
    return load_images(spec)


def measure_command(args: argparse.Namespace) -> None:
    """archdiff measure: the standard measurements of samples against their training data."""
    from archdiff import metrics
    from archdiff.threads import policy

    x = read_samples(args.samples)
    size = args.image_size or (x.shape[-1] if x.ndim == 4 and x.shape[-1] == x.shape[-2] else None)
    train = _training_images(args, size)
    if tuple(train.shape[1:]) != tuple(x.shape[1:]):
        raise UserError(f"samples have shape {list(x.shape[1:])} but the training images "
                        f"{list(train.shape[1:])}: give --image-size the samples' side and training data "
                        f"with as many channels")
    with policy(args.threads):
        m = metrics.measure(x.to(_device(args)), train.to(_device(args)))
    width = max(map(len, m))
    print("\n".join(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                    for k, v in m.items()))
    if args.json:
        from archdiff.runner import write_atomic

        record = {"samples": args.samples, "train": args.train, **m}
        write_atomic(Path(args.json), json.dumps(record, indent=1))
        print(f"wrote {args.json}")


def _training_images(args: argparse.Namespace, size: int | None) -> torch.Tensor:
    from archdiff.data.images import load_images

    return load_images(args.train, n=args.n_train, size=size, seed=args.seed,
                       max_bad_files=args.max_bad_files)


def _device(args: argparse.Namespace) -> torch.device:
    from archdiff.errors import resolve_device

    return resolve_device(args.device)


COMMANDS = {"train": train_command, "fit": fit_command, "sample": sample_command, "measure": measure_command}
