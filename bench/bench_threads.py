"""The thread policy's effect: small experiments on a quiet CPU and with one core kept busy.

Prints one table: wall seconds of ``archdiff run ID --scale quick`` (a fresh process each time, so the
policy is applied as a user gets it) for
    old policy   ``--threads 0``: torch's own default, one thread per core (what archdiff did before)
    new policy   no option: ``archdiff.threads.DEFAULT_THREADS``
each on a quiet machine and while another process keeps one core busy (a Python spin loop), in one run.

    python bench/bench_threads.py [--experiments fig2-linear-gmm fig5-linear-rank-images] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from archdiff.threads import DEFAULT_THREADS

POLICIES = {"old (torch default)": ["--threads", "0"], f"new ({DEFAULT_THREADS} thread)": []}


@contextmanager
def busy_core(on: bool):
    """While active (and ``on``), one process spins on a core."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        time.sleep(0.5 if on else 0)
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def seconds(exp_id: str, options: list[str], out: str) -> float:
    """Wall seconds of one ``archdiff run`` in a fresh process (imports included)."""
    cmd = [sys.executable, "-m", "archdiff.cli", "run", exp_id, "--quiet", "--device", "cpu", "--out", out,
           *options]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "ARCHDIFF_THREADS": ""})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="+", default=["fig2-linear-gmm", "fig5-linear-rank-images"])
    parser.add_argument("--repeats", type=int, default=2, help="runs per cell; the table shows the fastest")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for exp_id in args.experiments:
            seconds(exp_id, [], out)  # warm-up: data caches, compiled bytecode
            for load, busy in (("quiet", False), ("one core busy", True)):
                with busy_core(busy):
                    times = {name: min(seconds(exp_id, opt, out) for _ in range(args.repeats))
                             for name, opt in POLICIES.items()}
                rows.append((exp_id, load, *times.values()))
    names = list(POLICIES)
    print(f"| experiment | machine | {names[0]} s | {names[1]} s | old / new |")
    print("|---|---|---|---|---|")
    for exp_id, load, old, new in rows:
        print(f"| {exp_id} | {load} | {old:.1f} | {new:.1f} | {old / new:.2f} |")


if __name__ == "__main__":
    main()
