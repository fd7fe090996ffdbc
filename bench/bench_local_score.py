"""Bench: the local-score machines' time per sampling step, beside the memorizing denoiser's, in one run.

One sampling step is one denoiser call on all samples at one level (a = 0.5; the work does not depend on the
level). Rows: the ELS machine with each padding and the LS machine at chosen patch sizes ("whole": the
window that sees the whole image from every pixel, computed from cross-correlations, or as LS when
clipped), the memorizing denoiser (``EmpiricalOptimal``) on the same samples, and a calibration step: every
candidate size in one pass (nested windows) against one call per size. Columns:
    s/step      seconds for the step (best of ``--repeat``)
    x memorizer that over the memorizing denoiser's step
    loop s      quick size only: the per-pixel reference loop of ``tests/test_local_score.py`` (each
                candidate's patch distance summed in Python), timed on ``--loop-pixels`` random pixels of
                one sample and extrapolated to all pixels of all samples

    python bench/bench_local_score.py                       # quick (16 x 1x16x16, 32 samples) and paper size
    python bench/bench_local_score.py --sizes quick --threads 2
    python bench/bench_local_score.py --paper-samples 2 --paper-patches 3 7 15

Paper size: 1000 random smooth 3x64x64 images (``--data celeba:PATH`` for the real ones), ``--paper-samples``
samples (the work is linear in the number of samples).
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch

from archdiff.data.images import load_images
from archdiff.denoisers import EmpiricalOptimal
from archdiff.denoisers.local_score import covering_size, local_means
from archdiff.samplers import initial_noise
from archdiff.threads import keep_freed_memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_local_score import _reference  # noqa: E402  (the reference lives in the tests)

LEVEL = 0.5
QUICK_SIZES = [1, 3, 5, 7, 9, 11, 13, 15, 19, 23, 31]  # els-unet-agreement's quick candidates


def images(data: str | None, n: int, channels: int, size: int) -> torch.Tensor:
    """The data spec's images, or seeded random smooth images in [-1, 1]."""
    if data:
        return load_images(data, n=n, size=size)
    g = torch.Generator().manual_seed(0)
    low = torch.randn(n, channels, 8, 8, generator=g)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear")
    return (up + 0.1 * torch.randn(up.shape, generator=g)).tanh()


def best_time(fn, repeat: int) -> float:
    """The fastest of ``repeat`` runs of fn(), in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def loop_time(data: torch.Tensor, x: torch.Tensor, p: int, padding: str, equivariant: bool,
              pixels: int) -> float:
    """The reference loop's seconds for all pixels of all samples, extrapolated from ``pixels`` random
    pixels of one sample (border pixels of a clipped machine have fewer candidates: random, not a corner)."""
    h, w = data.shape[-2:]
    flat = torch.randperm(h * w, generator=torch.Generator().manual_seed(0))[:pixels].tolist()
    t = time.perf_counter()
    _reference(data.double(), x[:1].double(), LEVEL, p, padding, equivariant, [divmod(i, w) for i in flat])
    return (time.perf_counter() - t) / pixels * x.shape[0] * h * w


def machine_time(data, x, sizes: list[int], equivariant: bool, padding: str, repeat: int) -> float:
    """Seconds of one ``local_means`` call (best of ``repeat``)."""
    call = partial(local_means, data, x, LEVEL, sizes, equivariant=equivariant, padding=padding)
    return best_time(call, repeat)


def cases_for(name: str, shape, patches: list[int]) -> list[tuple[str, str, int]]:
    """(machine, padding, size) rows. Quick: every padding at every size and the whole window, LS at every
    size. Paper (minutes a step): the zero-padded ELS at every size and the whole window, clipped ELS and LS
    at the largest size, circular ELS at the whole window."""
    whole = {pad: covering_size(shape, pad) for pad in ("zeros", "clipped", "circular")}
    if name == "quick":
        return ([("ELS", pad, p) for pad in whole for p in [*patches, whole[pad]]]
                + [("LS", "zeros", p) for p in patches])
    return ([("ELS", "zeros", p) for p in [*patches, whole["zeros"]]]
            + [("ELS", "clipped", patches[-1]), ("ELS", "circular", whole["circular"]),
               ("LS", "zeros", patches[-1])])


def rows_for(name: str, data: torch.Tensor, x: torch.Tensor, patches: list[int], args) -> list[tuple]:
    """(size, machine, padding, patch, s/step, x memorizer, loop s) for one problem size."""
    memorizer = EmpiricalOptimal(data)
    t_mem = best_time(lambda: memorizer(x, LEVEL), args.repeat)
    out = [(name, "memorizer", "", "", t_mem, 1.0, None)]
    print(*out[-1], file=sys.stderr, flush=True)  # progress; the table goes to stdout
    for machine, padding, p in cases_for(name, data.shape, patches):
        eq = machine == "ELS"
        t = machine_time(data, x, [p], eq, padding, args.repeat)
        whole = " (whole)" if eq and p == covering_size(data.shape, padding) else ""
        loop = loop_time(data, x, p, padding, eq, args.loop_pixels) if name == "quick" else None
        out.append((name, machine, padding, f"{p}{whole}", t, t / t_mem, loop))
        print(*out[-1], file=sys.stderr, flush=True)  # progress; the table goes to stdout
    if name == "quick":  # a calibration step: every candidate size of els-unet-agreement's quick scale
        sizes = [q for q in QUICK_SIZES if q <= covering_size(data.shape, "clipped")]
        t_all = machine_time(data, x, sizes, True, "clipped", 1)
        t_each = sum(machine_time(data, x, [q], True, "clipped", 1) for q in sizes)
        span = f"{sizes[0]}-{sizes[-1]}"
        out += [(name, f"ELS calibration, {len(sizes)} sizes in one pass", "clipped", span, t_all,
                 t_all / t_mem, None),
                (name, f"ELS calibration, {len(sizes)} calls", "clipped", span, t_each, t_each / t_mem, None)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["quick", "paper"], choices=["quick", "paper"])
    parser.add_argument("--data", default=None, help="image data spec (default: random smooth images)")
    parser.add_argument("--quick-samples", type=int, default=32)
    parser.add_argument("--quick-patches", type=int, nargs="+", default=[3, 7, 15])
    parser.add_argument("--paper-samples", type=int, default=1)
    parser.add_argument("--paper-patches", type=int, nargs="+", default=[3, 7])  # ascending
    parser.add_argument("--loop-pixels", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    rows = []
    if "quick" in args.sizes:
        data = images(args.data, 16, 1, 16)
        x = initial_noise(args.quick_samples, (1, 16, 16), 0)
        rows += rows_for("quick", data, x, args.quick_patches, args)
    if "paper" in args.sizes:
        args.repeat = 1
        data = images(args.data, 1000, 3, 64)
        x = initial_noise(args.paper_samples, (3, 64, 64), 0)
        rows += rows_for("paper", data, x, args.paper_patches, args)
    print(f"\ntorch threads {torch.get_num_threads()}, level a = {LEVEL}; quick: 16 images 1x16x16, "
          f"{args.quick_samples} samples; paper: 1000 images 3x64x64, {args.paper_samples} sample(s)\n")
    print("| size | machine | padding | patch | s/step | x memorizer | loop s (extrap.) |")
    print("|---|---|---|---|---|---|---|")
    for name, machine, padding, p, t, ratio, loop in rows:
        print(f"| {name} | {machine} | {padding} | {p} | {t:.3g} | {ratio:.3g} | "
              f"{'' if loop is None else f'{loop:.3g}'} |")


if __name__ == "__main__":
    main()
