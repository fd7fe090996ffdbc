"""The paper's sizes on one GPU, in one short run: closed-form sampling, training throughput, experiments.

A GPU is lent for minutes at a time, so everything it should measure is here, rehearsed on the CPU with
``--smoke`` (tiny sizes, every code path; run in the tests). Writes ``OUT/<date>-<device>.json`` and a
Markdown table beside it after every section, so a run stopped by its time limit keeps what it measured, and
each experiment's figures and metrics into ``<date>-<device>-runs.tar.gz``. ``bench/gpu_paper.sh`` wraps it
with the GPU-only tests for a machine that has the project's files but not its install.

Keys (seconds include the fits; the paper's sizes unless ``--smoke``):
    patch_poly_10step_s, patch_poly_peak_gb  10-step patch-polynomial sampling of 16 images, 1000 training
                                             images 64x64x3, the paper's patch / width schedule
    global_poly_50step_s                     degree-27 global polynomial, 64 images, 50 DDIM steps
    linear_10step_s                          linear (Wiener) denoiser, 64 images, 10 DDIM steps
    els_step_s, ls_step_s, memorizer_step_s  one sampling step (a = 0.5) of 2 images: the clipped ELS machine
                                             (patch 7, every training patch at every position), the LS
                                             machine (patch 7, same position), the memorizing denoiser;
                                             ``bench/bench_local_score.py`` measures the same on the CPU
    perlevel_unet_img_per_s                  fig1's default UNet, 50 levels trained together by the engine
                                             (training images x levels per second)
    plainloop_unet_img_per_s                 the same UNet, one level, a plain loop (engine "loop")
    fig1_perlevel_projected_min              5 variants x 50 levels x 500 epochs x 1000 images at the
                                             engine's rate (bf16)
    fig1_time_projected_min                  5 variants x 500 epochs x 1000 images, one time-conditioned
                                             network per variant (bf16)
    training_img_per_s                       the rate of each training switch (precision, channels-last,
                                             torch.compile, CUDA graphs), or why it failed
    experiments                              per experiment id: seconds, claims holding / total, failing
                                             claims; ``skipped`` lists those the time budget left out

    python bench/gpu_paper.py --data celeba:PATH [--budget-s 420] [--out bench/results]
    python bench/gpu_paper.py --smoke --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from archdiff.data.images import load_images
from archdiff.denoisers import EmpiricalOptimal, LinearDenoiser, LocalScore, PolynomialDenoiser
from archdiff.denoisers.networks import NetSpec
from archdiff.denoisers.patch import PatchPolynomialDenoiser, scaled_schedule
from archdiff.errors import resolve_device
from archdiff.experiments import get
from archdiff.runner import run_experiment, write_atomic
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels
from archdiff.threads import keep_freed_memory
from archdiff.training import TrainConfig, train

PAPER = {"n_train": 1000, "size": 64, "patch_samples": 16, "samples": 64, "local_samples": 2,
         "local_patch": 7, "poly_degree": 27, "poly_steps": 50, "linear_steps": 10, "unet_levels": 50,
         "unet_images": 1000, "unet_batch": 128, "unet_channels": 32, "unet_blocks": 3, "scale": "paper",
         "experiments": ["fig7-poly-images", "fig8-patch-poly", "fig1-unet-variants-time", "fig9-mlp-width"]}
SMOKE = {"n_train": 24, "size": 16, "patch_samples": 4, "samples": 8, "local_samples": 2, "local_patch": 3,
         "poly_degree": 3, "poly_steps": 5, "linear_steps": 4, "unet_levels": 3, "unet_images": 16,
         "unet_batch": 8, "unet_channels": 4, "unet_blocks": 1, "scale": "quick",
         "experiments": ["fig2-linear-gmm"]}
FIG1_IMAGES = 5 * 500 * 1000  # variants x epochs x images: one network's passes in the paper's fig1 training
FIG1_LEVELS = 50  # per level: one network per sampling step
PROJECTED = {"fig1-unet-variants": "fig1_perlevel_projected_min",
             "fig1-unet-variants-time": "fig1_time_projected_min"}


class Report:
    """The results so far, rewritten as JSON and Markdown after every section."""

    def __init__(self, out: Path, device: torch.device, smoke: bool):
        name = torch.cuda.get_device_name(device).replace(" ", "-") if device.type == "cuda" else "cpu"
        stem = f"{datetime.date.today().isoformat()}-{name}{'-smoke' if smoke else ''}"
        self.json, self.md = out / f"{stem}.json", out / f"{stem}.md"
        self.data: dict = {"device": name, "smoke": smoke, "torch": torch.__version__, "experiments": {},
                           "skipped": []}

    def put(self, **values) -> None:
        self.data.update(values)
        self.write()

    def write(self) -> None:
        write_atomic(self.json, json.dumps(self.data, indent=2) + "\n")
        cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
        rows = [f"| {k} | {cell(v)} |" for k, v in self.data.items() if not isinstance(v, (dict, list))]
        rows += [f"| training {name} (img/s) | {cell(v)} |"
                 for name, v in self.data.get("training_img_per_s", {}).items()]
        rows += [f"| {i} | {e['holding']} claims, {e['seconds']:.0f} s, failing: {e['failing'] or 'none'} |"
                 for i, e in self.data["experiments"].items()]
        rows += [f"| skipped | {', '.join(self.data['skipped']) or 'none'} |"]
        write_atomic(self.md, "| key | value |\n|---|---|\n" + "\n".join(rows) + "\n")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Seconds of fn() (synchronized on CUDA)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def peak_gb(device: torch.device) -> float:
    """Peak memory so far: allocated on the GPU, or the process's max RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def images(args, s: dict, device: torch.device) -> torch.Tensor:
    """The training images: the data spec's, or seeded random smooth ones for the smoke run."""
    if args.data and not args.smoke:
        return load_images(args.data, n=s["n_train"], size=s["size"]).to(device)
    g = torch.Generator().manual_seed(0)
    low = torch.randn(s["n_train"], 3, 4, 4, generator=g)
    up = torch.nn.functional.interpolate(low, size=(s["size"], s["size"]), mode="bilinear")
    return up.tanh().to(device)


def closed_form(report: Report, data: torch.Tensor, s: dict, device: torch.device) -> None:
    """The closed-form samplings: patch polynomial, degree-27 global polynomial, linear."""
    shape = tuple(data.shape[1:])
    schedule = scaled_schedule(s["size"])
    levels = sampling_levels("cosine", len(schedule))
    x = initial_noise(s["patch_samples"], shape, seed=0, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    patch = PatchPolynomialDenoiser(data, schedule, levels[:-1])
    report.put(patch_poly_10step_s=timed(lambda: ddim(patch, x, levels, progress=False), device),
               patch_poly_peak_gb=peak_gb(device))
    x = initial_noise(s["samples"], shape, seed=0, device=device)
    poly = PolynomialDenoiser(data, s["poly_degree"])
    steps = sampling_levels("cosine", s["poly_steps"])
    report.put(global_poly_50step_s=timed(lambda: ddim(poly, x, steps, progress=False), device))
    steps = sampling_levels("cosine", s["linear_steps"])
    linear = timed(lambda: ddim(LinearDenoiser.fit(data), x, steps, progress=False), device)  # fit included
    report.put(linear_10step_s=linear)


def local_score(report: Report, data: torch.Tensor, s: dict, device: torch.device) -> None:
    """One sampling step of the local-score machines (ELS clipped, LS) beside the memorizer's (a failure is
    recorded as the value, so the training and experiments still run)."""
    x = initial_noise(s["local_samples"], tuple(data.shape[1:]), seed=0, device=device)
    models = {"els_step_s": LocalScore(data, s["local_patch"], padding="clipped"),
              "ls_step_s": LocalScore(data, s["local_patch"], equivariant=False, padding="zeros"),
              "memorizer_step_s": EmpiricalOptimal(data)}
    for name, model in models.items():
        try:
            report.put(**{name: timed(lambda m=model: m(x, 0.5), device)})
        except Exception as e:  # noqa: BLE001 - a failure is a result here; the sections after it still run
            report.put(**{name: f"failed: {type(e).__name__}: {e}"})


def epoch_rate(spec: NetSpec, imgs: torch.Tensor, config: TrainConfig, device: torch.device) -> float:
    """Training images x levels per second in a run's second epoch (the first pays warm-up and compiles)."""
    marks: list[float] = []
    train(spec, imgs, replace(config, epochs=2), device=device, progress=False,
          callback=lambda *_: marks.append(time.perf_counter()))  # after each epoch's losses reach the host
    levels = 1 if config.conditioning == "time" else len(config.levels)
    return len(imgs) * levels / (marks[1] - marks[0])


def switches(s: dict, levels: list[float]) -> dict[str, TrainConfig]:
    """The training configurations measured, each one switch from its neighbour; the first of each group is
    the baseline: the engine (all levels at once), a plain loop (one level), the time-conditioned network."""
    b = {"batch_size": s["unet_batch"]}
    engine, loop = dict(b, levels=levels, engine="batched"), dict(b, levels=levels[:1], engine="loop")
    time_cond = dict(b, conditioning="time")
    return {
        "engine fp32": TrainConfig(**engine, precision="fp32"),
        "engine bf16": TrainConfig(**engine),  # precision "auto": bf16 on CUDA (what the experiments use)
        "loop fp32": TrainConfig(**loop, precision="fp32"),  # the plain loop, as the authors would write it
        "loop bf16": TrainConfig(**loop),
        "loop bf16 channels-last": TrainConfig(**loop, channels_last=True),
        "time bf16": TrainConfig(**time_cond),
        "time bf16 channels-last": TrainConfig(**time_cond, channels_last=True),
        "engine bf16 compiled": TrainConfig(**engine, compile="default"),
        "loop bf16 channels-last graphs": TrainConfig(**loop, channels_last=True, compile="reduce-overhead"),
    }


def training(report: Report, data: torch.Tensor, s: dict, device: torch.device) -> None:
    """UNet training throughput per switch: the engine on all levels, a plain loop on one level, and the
    time-conditioned network; then fig1's projected training time in both conditioning modes."""
    spec = NetSpec("unet", {"in_channels": data.shape[1], "base_channels": s["unet_channels"],
                            "num_blocks": s["unet_blocks"], "norm": "batch", "bias": False})
    levels = sampling_levels("cosine", s["unet_levels"])[:-1].tolist()
    imgs = data[: s["unet_images"]]
    rates: dict[str, float | str] = {}
    for name, config in switches(s, levels).items():
        try:
            rates[name] = epoch_rate(spec, imgs, config, device)
        except Exception as err:  # noqa: BLE001 - a switch that fails on this machine is reported, not fatal
            rates[name] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}"
        report.put(training_img_per_s=rates)
    engine, time_rate = rates["engine bf16"], rates["time bf16"]
    report.put(perlevel_unet_img_per_s=engine, plainloop_unet_img_per_s=rates["loop fp32"],
               fig1_perlevel_projected_min=FIG1_IMAGES * FIG1_LEVELS / engine / 60,
               fig1_time_projected_min=FIG1_IMAGES / time_rate / 60)


def pack(runs: Path, archive: Path) -> None:
    """Every finished run's figures, metrics.json and config.toml in one archive (no saved models)."""
    tmp = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for f in sorted(runs.glob("*/*")):
            if f.suffix in (".png", ".json", ".toml") and not f.parent.name.startswith("."):
                tar.add(f, arcname=f.relative_to(runs))
    tmp.replace(archive)


def experiments(report: Report, args, s: dict, start: float) -> None:
    """The experiments at the scale, in order, while the time budget lasts (each written when done, its
    figures and metrics added to ``<stem>-runs.tar.gz`` beside the table)."""
    with tempfile.TemporaryDirectory() as runs:
        for i, exp_id in enumerate(s["experiments"]):
            left = args.budget_s - (time.perf_counter() - start)
            projected = report.data.get(PROJECTED.get(exp_id, ""), 0) * 60
            if left <= 0 or projected > left:
                report.put(skipped=s["experiments"][i:] if left <= 0 else [*report.data["skipped"], exp_id])
                if left <= 0:
                    return
                continue
            t = time.perf_counter()
            rec = run_experiment(get(exp_id), s["scale"], device=args.device, out=runs, progress=False,
                                 data=None if args.smoke else args.data)
            holding = sum(c["holds"] for c in rec["claims"])
            report.data["experiments"][exp_id] = {
                "seconds": time.perf_counter() - t, "holding": f"{holding}/{len(rec['claims'])}",
                "failing": [c["id"] for c in rec["claims"] if not c["holds"]]}
            report.write()
            pack(Path(runs), report.json.with_name(report.json.stem + "-runs.tar.gz"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="the paper's images, e.g. celeba:PATH (not for --smoke)")
    ap.add_argument("--out", default="bench/results", help="folder for the JSON and the Markdown table")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="wall seconds after which no experiment starts")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, every code path, on any device")
    args = ap.parse_args()
    if not args.smoke and not args.data:
        ap.error("the paper's run needs --data celeba:PATH (or --smoke)")
    start = time.perf_counter()
    keep_freed_memory()
    device = resolve_device(args.device)
    args.device = device.type
    s = SMOKE if args.smoke else PAPER
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, device, args.smoke)
    data = images(args, s, device)
    for section in (closed_form, local_score, training):
        section(report, data, s, device)
    experiments(report, args, s, start)
    report.put(total_s=time.perf_counter() - start)
    print(report.md.read_text())


if __name__ == "__main__":
    main()
