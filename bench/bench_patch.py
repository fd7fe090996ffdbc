"""Bench: a full 10-step patch-polynomial DDIM sampling, vectorized vs the per-pixel loop.

The per-pixel loop is the reference kept in ``tests/test_patch.py`` (one least squares per pixel on
its clamped patch, predicting the centre pixel only -- already cheaper than a loop that fits every
output of the patch and keeps the centre). It is timed on ``--loop-pixels`` pixels per step and
extrapolated to all H x W pixels; the vectorized denoiser is timed end to end (fits + applies).

    python bench/bench_patch.py                                  # 100 random 32x32x3 images, CPU
    python bench/bench_patch.py --data lfw                       # the 100 LFW faces, 25x25 grey
    python bench/bench_patch.py --n-train 1000 --size 64 --device cuda        # the paper's size
    python bench/bench_patch.py --data celeba:PATH --n-train 1000 --device cuda
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

from archdiff.data.images import load_images
from archdiff.denoisers.patch import PatchPolynomialDenoiser, scaled_schedule
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_patch import pixel_estimate, reference_inputs  # noqa: E402  (the reference lives in the tests)


def training_images(args) -> torch.Tensor:
    """The data spec's images, or seeded random smooth images of the requested shape."""
    if args.data:
        return load_images(args.data, n=args.n_train, size=args.size)
    g = torch.Generator().manual_seed(0)
    low = torch.randn(args.n_train, args.channels, 8, 8, generator=g)
    up = torch.nn.functional.interpolate(low, size=(args.size, args.size), mode="bilinear")
    return (up + 0.1 * torch.randn(up.shape, generator=g)).tanh()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_vectorized(data, x_T, levels, schedule, device, chunk_bytes):
    """Seconds for the whole sampling (every fit included) and the per-step schedule used."""
    den = PatchPolynomialDenoiser(data, schedule, levels=levels[:-1], max_chunk_bytes=chunk_bytes)
    sync(device)
    t = time.perf_counter()
    out = ddim(den, x_T, levels, progress=True)
    sync(device)
    return time.perf_counter() - t, out


def time_loop(data, x_T, levels, schedule, device, n_pixels: int) -> list[float]:
    """Per step: the loop's set-up plus its seconds per pixel (timed on n_pixels) times H x W."""
    h, w = data.shape[2:]
    g = torch.Generator().manual_seed(1)
    per_step = []
    for (p, f), a in zip(schedule, levels[:-1].tolist()):
        pix = torch.randint(0, min(h, w), (n_pixels, 2), generator=g).tolist()
        sync(device)
        t = time.perf_counter()
        inputs = reference_inputs(data, a, p, f)
        sync(device)
        t1 = time.perf_counter()
        for i, j in pix:
            pixel_estimate(inputs, x_T, i, j, p)
        sync(device)
        per_step.append(t1 - t + (time.perf_counter() - t1) / n_pixels * h * w)
    return per_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="an image spec (lfw, celeba:PATH, ...); default random")
    ap.add_argument("--n-train", type=int, default=100)
    ap.add_argument("--size", type=int, default=None, help="image side (default 32, or the data's own)")
    ap.add_argument("--channels", type=int, default=3, help="channels of the random images")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--loop-pixels", type=int, default=2, help="pixels per step timed for the loop")
    ap.add_argument("--chunk-gb", type=float, default=1.0, help="working memory of one chunk of patches")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data is None and args.size is None:
        args.size = 32
    device = torch.device(args.device)
    data = training_images(args).to(device)
    n, c, h, w = data.shape
    schedule = scaled_schedule(min(h, w))
    levels = sampling_levels("cosine", args.steps)
    if args.steps != len(schedule):
        raise SystemExit(f"the paper's schedule has {len(schedule)} steps; use --steps {len(schedule)}")
    x_T = initial_noise(args.samples, (c, h, w), seed=0, device=device)
    print(f"{n} training images {c}x{h}x{w}, {args.samples} samples, {args.steps} DDIM steps, "
          f"device {device}, torch threads {torch.get_num_threads()}")
    print("schedule (patch, width): " + " ".join(f"({p},{f})" for p, f in schedule))

    if device.type == "cuda":
        time_vectorized(data[:8], x_T[:2], levels, [(3, 8)] * args.steps, device, 2**26)  # warm-up
        torch.cuda.reset_peak_memory_stats(device)
    vec_s, _ = time_vectorized(data, x_T, levels, schedule, device, int(args.chunk_gb * 2**30))
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (GPU, allocated)"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process max RSS)"
    loop = time_loop(data, x_T, levels, schedule, device, args.loop_pixels)

    print(f"\n{'step':>4} {'patch':>5} {'width':>5} {'per-pixel loop (s, extrapolated)':>34}")
    for i, ((p, f), s) in enumerate(zip(schedule, loop)):
        print(f"{i:>4} {p:>5} {f:>5} {s:>34.2f}")
    print(f"\n{'implementation':<34} {'10-step sampling (s)':>21}")
    print(f"{'per-pixel loop (extrapolated)':<34} {sum(loop):>21.2f}")
    print(f"{'vectorized (measured)':<34} {vec_s:>21.2f}")
    print(f"speed-up {sum(loop) / vec_s:.0f}x; peak memory of the vectorized run: {peak}")


if __name__ == "__main__":
    main()
