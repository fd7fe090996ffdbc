"""Bench: a 10-step patch-polynomial sampling, per step and in all, against its compute floor.

Columns, per sampling step (one fit at the step's level on all training images plus its application to
the samples), all measured in this one run:
    floor      the step's floating-point work (``PatchPolynomialDenoiser.flops``: the cheaper of direct
               and FFT first-layer projections, the Gram or dual matrices and their factors, the solves,
               the output) at the rate this machine reaches on a large float64 matmul
    new        the denoiser as it is (``method="auto"``: first layer by an FFT along the rows, or the
               plain product where one patch covers the image)
    gemm       the denoiser with ``method="gemm"`` (first layer from copied-out patches, one product)
    filed      the implementation when the speed-up was asked for: per block of patches, the patches
               gathered from the images and multiplied by R (again for the samples), the ridge solved
               on normal equations scaled by 1/M (copies of every Gram matrix); centred as the recipe
               says, so that its output equals the others' (the filed code predates the centring)
    per-pixel  the reference loop kept in ``tests/test_patch.py`` (one least squares per pixel on its
               clamped patch), timed on ``--loop-pixels`` pixels and extrapolated to all H x W pixels

    python bench/bench_patch.py                                  # 100 random 32x32x3 images, CPU
    python bench/bench_patch.py --data lfw                       # the 100 LFW faces, 25x25 grey
    python bench/bench_patch.py --n-train 1000 --size 64         # the paper's size (random images)
    python bench/bench_patch.py --data celeba:PATH --n-train 1000 --size 64 --device cuda
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import torch

from archdiff.data.images import load_images
from archdiff.denoisers.patch import PatchPolynomialDenoiser, blocks, scaled_schedule
from archdiff.denoisers.polynomial import Recipe, fit_noise
from archdiff.linalg import cholesky_solve, flatten, jacobi, solve_psd
from archdiff.samplers import initial_noise
from archdiff.schedule import noisy, sampling_levels
from archdiff.threads import keep_freed_memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_patch import RECIPES, pixel_estimate, reference_inputs  # noqa: E402  (the reference lives in the tests)


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


def matmul_rate(device: torch.device, n: int = 2048) -> float:
    """Float64 flop/s of a large matmul on the device (the best of three)."""
    a = torch.randn(n, n, dtype=torch.float64, device=device)
    best = float("inf")
    for _ in range(3):
        sync(device)
        t = time.perf_counter()
        a @ a
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def time_step(data, x, level: float, p: int, f: int, method: str, device) -> tuple[float, torch.Tensor]:
    """Seconds to fit one level with (patch p, width f) and apply it to x, and the output."""
    den = PatchPolynomialDenoiser(data, [(p, f)], method=method)
    sync(device)
    t = time.perf_counter()
    out = den(x, level)
    sync(device)
    return time.perf_counter() - t, out


def gathered(img: torch.Tensor, u: torch.Tensor, v: torch.Tensor, p: int) -> torch.Tensor:
    """The p x p patches at starts (u, v) [Q] of images [N, C, H, W]: [Q, N, C p p], by indexing."""
    k = torch.arange(p, device=img.device)
    t = img[:, :, (u[:, None] + k)[:, :, None], (v[:, None] + k)[:, None, :]]  # [N, C, Q, p, p]
    return t.movedim(2, 0).reshape(len(u), img.shape[0], -1)


def filed_solve(phi: torch.Tensor, target: torch.Tensor, ridge: float, recipe: Recipe) -> torch.Tensor:
    """The filed ridge solve, with the recipe's free offset done as today (centred data, then the solve)."""
    relative = recipe.relative_ridge
    if not recipe.centred:
        return filed_ridge(phi, target, ridge, relative)
    m = phi.shape[-2]
    mean_phi, mean_target = phi[..., :-1].mean(-2, keepdim=True), target.mean(-2, keepdim=True)
    scaled = ridge if relative else ridge * (m - 1) / m  # as ridge_solve_batched(intercept=True)
    w = filed_ridge(phi[..., :-1] - mean_phi, target - mean_target, scaled, relative)
    return torch.cat([w, mean_target - mean_phi @ w], -2)


def filed_ridge(phi: torch.Tensor, target: torch.Tensor, ridge: float, relative: bool) -> torch.Tensor:
    """The filed solver: scaled normal equations (F <= M), or the scaled dual system, by Cholesky."""
    m, f = phi.shape[-2:]
    if f <= m:
        return solve_psd(phi.mT @ phi / m, phi.mT @ target / m, ridge, "cholesky", relative)
    d = jacobi(phi.square().sum(-2) / m, relative)
    psi = phi / (d[..., None, :] * math.sqrt(m))
    k = psi @ psi.mT + ridge * torch.eye(m, dtype=phi.dtype, device=phi.device)
    if f < target.shape[-1]:
        w = cholesky_solve(k, psi).mT @ (target / math.sqrt(m))
    else:
        w = psi.mT @ cholesky_solve(k, target / math.sqrt(m))
    return w / d[..., :, None]


def time_filed(data, x, level: float, p: int, f: int, device) -> tuple[float, torch.Tensor]:
    """The filed implementation's seconds for one step (see the module docstring), and its output."""
    den = PatchPolynomialDenoiser(data, [(p, f)])
    r, b = den.layers[(p, f)]
    n, c, h, w = den.data.shape
    chunk = max(1, 2**30 // (8 * (n * (3 * c * p * p + 3 * (f + 1)) + 3 * min(f + 1, n) ** 2)))  # as filed
    sync(device)
    t = time.perf_counter()
    noise = fit_noise(den.seed, level, tuple(flatten(den.data).shape)).to(device).reshape(den.data.shape)
    y, xq = noisy(den.data, level, noise), x.double()
    out = torch.empty_like(x)
    for blk in blocks(h, w, p, chunk, device):
        uu, vv = torch.meshgrid(torch.arange(blk.u.start, blk.u.stop), torch.arange(blk.v.start, blk.v.stop),
                                indexing="ij")
        u, v = uu.reshape(-1).to(device), vv.reshape(-1).to(device)
        phi = den.features(gathered(y, u, v, p) @ r.T + b, None)  # [Q, N, F + 1]
        weights = filed_solve(phi, blk.pixels(den.data), den.ridge, den.recipe)  # [Q, F + 1, C r c]
        blk.put(out, den.features(gathered(xq, u, v, p) @ r.T + b, None) @ weights)
    sync(device)
    return time.perf_counter() - t, out


def time_loop(data, x, level: float, p: int, f: int, device, n_pixels: int) -> float:
    """The per-pixel loop's set-up plus its seconds per pixel (timed on n_pixels) times H x W."""
    h, w = data.shape[2:]
    pix = torch.randint(0, min(h, w), (n_pixels, 2), generator=torch.Generator().manual_seed(1)).tolist()
    sync(device)
    t = time.perf_counter()
    inputs = reference_inputs(data, level, p, f, 0, RECIPES["authors"])
    t1 = time.perf_counter()
    for i, j in pix:
        pixel_estimate(inputs, x, i, j, p, RECIPES["authors"])
    sync(device)
    return t1 - t + (time.perf_counter() - t1) / n_pixels * h * w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="an image spec (lfw, celeba:PATH, ...); default random")
    ap.add_argument("--n-train", type=int, default=100)
    ap.add_argument("--size", type=int, default=None, help="image side (default 32, or the data's own)")
    ap.add_argument("--channels", type=int, default=3, help="channels of the random images")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--loop-pixels", type=int, default=2, help="pixels per step timed for the loop")
    ap.add_argument("--no-baselines", action="store_true", help="time only the new implementation")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as a run does (archdiff.threads.policy); every column below runs with it
    if args.data is None and args.size is None:
        args.size = 32
    device = torch.device(args.device)
    data = training_images(args).to(device)
    n, c, h, w = data.shape
    schedule = scaled_schedule(min(h, w))
    levels = sampling_levels("cosine", len(schedule))[:-1].tolist()
    x = initial_noise(args.samples, (c, h, w), seed=0, device=device).double()
    rate = matmul_rate(device)
    print(f"{n} training images {c}x{h}x{w}, {args.samples} samples, {len(schedule)} DDIM steps, device "
          f"{device}, torch threads {torch.get_num_threads()}, float64 matmul {rate / 1e9:.1f} GFLOP/s")
    if device.type == "cuda":
        time_step(data[:8], x[:2], levels[-1], 3, 8, "auto", device)  # warm-up
        torch.cuda.reset_peak_memory_stats(device)
    rows = []
    for step, ((p, f), a) in enumerate(zip(schedule, levels)):
        floor = PatchPolynomialDenoiser(data, [(p, f)]).flops(0, args.samples)["total"] / rate
        new, out = time_step(data, x, a, p, f, "auto", device)
        gemm = filed = loop = float("nan")
        if not args.no_baselines:
            gemm, other = time_step(data, x, a, p, f, "gemm", device)
            filed, old = time_filed(data, x, a, p, f, device)
            for o in (other, old):  # every implementation computes the same denoiser
                torch.testing.assert_close(o, out, rtol=1e-6, atol=1e-6)
            loop = time_loop(data, x, a, p, f, device, args.loop_pixels)
        rows.append((step, p, f, floor, new, gemm, filed, loop))
        print(f"step {step}: patch {p}, width {f}: floor {floor:.2f} s, new {new:.2f} s, gemm {gemm:.2f} s, "
              f"filed {filed:.2f} s, per-pixel {loop:.1f} s", flush=True)
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (GPU, allocated)"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process max RSS)"
    heads = ["step", "patch", "width", "floor s", "new s", "new / floor", "gemm s", "filed s", "per-pixel s"]
    print("\n| " + " | ".join(heads) + " |\n|" + "---|" * len(heads))
    for step, p, f, floor, new, gemm, filed, loop in rows:
        print(f"| {step} | {p} | {f} | {floor:.2f} | {new:.2f} | {new / floor:.1f} | {gemm:.2f} | "
              f"{filed:.2f} | {loop:.1f} |")
    tot = [sum(r[i] for r in rows) for i in range(3, 8)]
    print(f"| all | | | {tot[0]:.2f} | {tot[1]:.2f} | {tot[1] / tot[0]:.1f} | {tot[2]:.2f} | {tot[3]:.2f} | "
          f"{tot[4]:.1f} |")
    print(f"\nnew vs filed: {tot[3] / tot[1]:.1f}x; new vs gemm: {tot[2] / tot[1]:.1f}x; new vs per-pixel "
          f"(extrap.): {tot[4] / tot[1]:.0f}x; new within {tot[1] / tot[0]:.1f}x of the floor; "
          f"peak memory {peak}")


if __name__ == "__main__":
    main()
