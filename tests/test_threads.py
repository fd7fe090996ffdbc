"""The thread policy: option, environment variable, default; applied for a run and then restored."""

from __future__ import annotations

import pytest
import torch

from archdiff import threads
from archdiff.errors import UserError


def test_policy_resolution_order(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.resolve() == threads.DEFAULT_THREADS
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.resolve() == 3 and threads.resolve(2) == 2  # the option wins over the environment
    monkeypatch.setenv(threads.ENV, "many")
    with pytest.raises(UserError, match=threads.ENV):
        threads.resolve()
    with pytest.raises(UserError, match="negative"):
        threads.resolve(-1)


def test_policy_applies_for_the_block_then_restores():
    outer = torch.get_num_threads()
    torch.set_num_threads(2)  # a caller's setting other than the policy's
    try:
        with threads.policy(1) as n:
            assert n == 1 == torch.get_num_threads()
        assert torch.get_num_threads() == 2
        with threads.policy(0) as n:  # 0: torch's own setting stays
            assert n == 2
    finally:
        torch.set_num_threads(outer)


def test_freed_memory_is_kept_where_the_c_library_is_glibc():
    import platform

    glibc = platform.libc_ver()[0] == "glibc"
    assert threads.keep_freed_memory() is glibc
    assert threads.keep_freed_memory() is glibc  # applied once, the same answer after
