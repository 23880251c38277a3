"""Giving the C heap's free memory back to the system, now and then.

Why: the 2 000 000-event soak with the alert index on (``bench/soak.py``) showed the
worker's RSS outside RocksDB growing by ~44 MB per million events while Python's
own live objects shrank (allocated blocks 1.74 M -> 1.44 M). The growth is native:
glibc's ``malloc`` keeps freed memory in the main heap, and a worker frees and
allocates millions of records, alert bodies and RocksDB buffers of varied sizes, so
free space in the middle of the heap is never returned. ``malloc_trim(0)`` returns
every free page of it. It costs a walk of the heap (milliseconds for a few hundred
MB), so a worker runs it on a timer, not per event. Not glibc (musl, macOS): no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_trim = _malloc_trim()


def available() -> bool:
    """Whether this C library can give free heap memory back (glibc)."""
    return _trim is not None


def give_back() -> bool:
    """Return the C heap's free pages to the system; True if any were returned."""
    if _trim is None:
        return False
    return bool(_trim(0))
