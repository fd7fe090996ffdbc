"""Training throughput of per-level mode: L levels batched under vmap vs the naive loops.

Prints one table: for each network, samples/s (training points x levels per second) of
    batched    the L per-level networks run as one vmapped computation (engine "batched")
    loop       the same L networks stepped one after another inside each step (engine "loop")
    separate   the naive baseline: L independent training runs, one level at a time
All three compute the same networks (tests/test_training.py checks that batched == separate).

    python bench/bench_training.py [--device auto|cpu|cuda] [--levels 50] [--epochs 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from archdiff.data import toy2d
from archdiff.denoisers.networks import NetSpec, available
from archdiff.errors import resolve_device
from archdiff.schedule import sampling_levels
from archdiff.training import TrainConfig, train


def timed(spec: NetSpec, data: torch.Tensor, cfg: TrainConfig, device: torch.device) -> float:
    """Seconds for one training run (synchronized on CUDA)."""
    start = time.perf_counter()
    train(spec, data, cfg, device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(name: str, spec: NetSpec, data: torch.Tensor, levels: list[float], epochs: int, batch: int,
          device: torch.device) -> list[tuple[str, str, float]]:
    """Rows (network, mode, samples/s) for the three modes."""
    base = {"epochs": epochs, "batch_size": batch, "levels": levels}
    work = data.shape[0] * len(levels) * epochs
    timed(spec, data[:batch], TrainConfig(**{**base, "epochs": 1}), device)  # warm-up (imports, kernels)
    seconds = {
        "batched": timed(spec, data, TrainConfig(**base, engine="batched"), device),
        "loop": timed(spec, data, TrainConfig(**base, engine="loop"), device),
        "separate": sum(timed(spec, data, TrainConfig(**{**base, "levels": [a]}, engine="loop"), device)
                        for a in levels),
    }
    return [(name, mode, work / s) for mode, s in seconds.items()]


def main() -> None:
    """Parse options, run the benchmarks, print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--levels", type=int, default=50, help="per-level networks (DDIM steps)")
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    device = resolve_device(args.device)
    levels = sampling_levels("cosine", args.levels)[:-1].tolist()
    rows = bench("mlp2d H=256 h=2 (3GMM, 2000 pts)", NetSpec("mlp2d", {"hidden": 256, "bottleneck": 2}),
                 toy2d.gmm3(2000, 0).float(), levels, args.epochs, 128, device)
    if "unet" in available():
        images = torch.rand(128, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
        unet = NetSpec("unet", {"in_channels": 3, "base_channels": 8, "num_blocks": 2, "norm": "batch"})
        rows += bench("unet c=8 blocks=2 (128 imgs 3x16x16)", unet, images, levels, args.epochs, 16, device)
    print(f"device {device}, {args.levels} levels, {args.epochs} epochs; samples/s = points x levels / s")
    print(f"{'network':<38} {'mode':<9} {'samples/s':>12} {'vs separate':>12}")
    for name, mode, speed in rows:
        ref = next(s for n, m, s in rows if n == name and m == "separate")
        print(f"{name:<38} {mode:<9} {speed:>12,.0f} {speed / ref:>11.1f}x")


if __name__ == "__main__":
    main()
