"""Keep freed memory in the process (glibc malloc), so that big NumPy temporaries reuse pages.

glibc serves every block above 32 MiB with a fresh ``mmap`` and hands it back to the kernel when
it is freed. A training step makes hundreds of such blocks (activations, gradients, the ReLU
masks of SSD300's 300x300 maps), and the first touch of every page of each one is a page fault.
On this project's 2-core VM the faults cost more than the arithmetic. Over one SSD300 step
(batch 8), ReLU's backward took 0.9 s with fresh pages and 0.13 s with reused ones, and the
whole step went from 9.7 to 7.4 s (``benchmarks/bench_ssd.py --keep-freed-memory``).

``keep_freed_memory()`` raises malloc's mmap and trim thresholds to 2 GiB, so that big blocks
come from the heap and freed ones are reused. The cost: the process keeps its peak resident
size instead of shrinking between steps; the SSD300 step's peak hardly moved (2524 -> 2534 MiB).

The trainer calls this (``minissd train``, ``minissd demo``). ``MINISSD_KEEP_FREED_MEMORY=0``
turns it off. It is a no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
THRESHOLD = 2**31 - 1  # the largest value mallopt takes (an int): 2 GiB


def keep_freed_memory() -> bool:
    """Make glibc reuse freed big blocks; returns whether the setting took effect."""
    if os.environ.get("MINISSD_KEEP_FREED_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD) and mallopt(M_TRIM_THRESHOLD, THRESHOLD))
