"""The CPU policy, decided once: how many threads torch uses for archdiff's work, and how freed memory
is kept.

Policy: ``--threads N`` (CLI), else the environment variable ``ARCHDIFF_THREADS``, else DEFAULT_THREADS.
``0`` leaves torch's own default (one thread per core). The runner applies it for the length of a run
(``policy``) and restores the caller's setting afterwards; nothing else in archdiff sets threads.

Why: on cores shared with other processes, torch's worker threads spin-wait on every small operation;
on the 2-core machines archdiff is developed on, a run of fig2 took 1.2 s on a quiet machine and 61 s
while another process kept one core busy. ``bench/bench_threads.py`` measures the policies side by side.

Freed memory: closed-form fits allocate and free working arrays of 10^8 bytes per chunk. glibc hands
every allocation above its mmap threshold back to the kernel when freed, and the next one is faulted
in and zeroed page by page: in a paper-size patch-polynomial step a third of the CPU time went to the
kernel. ``keep_freed_memory`` (applied by ``policy``, once per process, glibc only) raises the threshold
so freed arrays stay in the heap for reuse; the process keeps its peak memory instead of returning it.
Measured on 2 cores (patch 35 / 256 features, 1000 images 64x64): 11.8 s -> 9.4 s, kernel time 6.8 s ->
3.5 s; patch 7 / 16: 2.1 s -> 1.5 s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from archdiff.errors import UserError

ENV = "ARCHDIFF_THREADS"
DEFAULT_THREADS = 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


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


@functools.cache  # process-wide: applied once
def keep_freed_memory() -> bool:
    """Keep freed memory in the heap for reuse instead of returning it to the kernel (glibc's mallopt:
    mmap threshold 2 GiB, no trimming); process-wide, applied once. False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, 2**31 - 1)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):  # no C library, or one without mallopt (not glibc)
        return False


@contextmanager
def policy(threads: int | None = None) -> Iterator[int]:
    """Run the block with the policy's thread count (see ``resolve``) and freed memory kept for reuse
    (``keep_freed_memory``); yields the thread count in force."""
    n = resolve(threads)
    keep_freed_memory()
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
