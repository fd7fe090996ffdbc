"""The CPU thread policy, decided once: how many threads torch uses for archdiff's work.

Policy: ``--threads N`` (CLI), else the environment variable ``ARCHDIFF_THREADS``, else DEFAULT_THREADS.
``0`` leaves torch's own default (one thread per core). The runner applies it for the length of a run
(``policy``) and restores the caller's setting afterwards; nothing else in archdiff sets threads.

Why: on cores shared with other processes, torch's worker threads spin-wait on every small operation;
on the 2-core machines archdiff is developed on, a run of fig2 took 1.2 s on a quiet machine and 61 s
while another process kept one core busy. ``bench/bench_threads.py`` measures the policies side by side.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from archdiff.errors import UserError

ENV = "ARCHDIFF_THREADS"
DEFAULT_THREADS = 1


def resolve(threads: int | None = None) -> int:
    """The thread count to use: ``threads`` if given, else $ARCHDIFF_THREADS, else DEFAULT_THREADS."""
    if threads is None:
        raw = os.environ.get(ENV, "").strip()
        if not raw:
            return DEFAULT_THREADS
        try:
            threads = int(raw)
        except ValueError:
            raise UserError(f"{ENV}={raw!r} is not a whole number: set it to a thread count, or 0 for "
                            f"torch's default") from None
    if threads < 0:
        raise UserError(f"thread count {threads} is negative: use a positive count, or 0 for torch's default")
    return threads


@contextmanager
def policy(threads: int | None = None) -> Iterator[int]:
    """Run the block with the policy's thread count (see ``resolve``); yields the count in force."""
    n = resolve(threads)
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
