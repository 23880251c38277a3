"""The heap trim: on this machine's glibc it exists and gives freed memory back."""

from __future__ import annotations

import ctypes
import platform

import pytest

from fraudapp.engine import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_memory_is_given_back() -> None:
    assert heap.available()
    # Many small C allocations freed again leave free pages inside the heap,
    # which only a trim returns.
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(20_000)]
    for block in blocks[:-1]:
        libc.free(block)
    assert heap.give_back() is True
    libc.free(blocks[-1])
