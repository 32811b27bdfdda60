"""Which samples of a global batch each process loads.

Data-parallel training keeps the global batch of one process (the paper's 32) and splits every
batch across the K processes: process ``r`` takes the ``r``-th of K contiguous pieces, the first
``B mod K`` pieces one sample longer (``numpy.array_split``'s rule)::

    batch of B = 10 over K = 4:   [0 1 2 | 3 4 5 | 6 7 | 8 9]

So each epoch uses every image exactly once across the processes, in the order one process would
use them (the loader draws the global order from ``(seed, epoch)`` alone), and a batch that does
not divide evenly (``B mod K != 0``, or the last batch of an epoch) is handled. A piece is empty
only when ``B < K``; the loader refuses such a batch, since every process must run every step.
"""

from __future__ import annotations


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """``(start, stop)`` of process ``rank``'s piece of ``n`` items split over ``size``
    processes: ``items[start:stop]``, as ``numpy.array_split(items, size)[rank]``."""
    if not (isinstance(size, int) and size >= 1 and isinstance(rank, int) and 0 <= rank < size):
        raise ValueError(f"shard: need 0 <= rank < size, got rank={rank!r}, size={size!r}")
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"shard: need a number of items >= 0, got {n!r}")
    base, longer = divmod(n, size)  # every piece has `base` items, the first `longer` one more
    start = rank * base + min(rank, longer)
    return start, start + base + (rank < longer)


def shard(items, rank: int, size: int):
    """Process ``rank``'s contiguous piece of ``items`` (an array or list of length B)."""
    start, stop = shard_bounds(len(items), rank, size)
    return items[start:stop]


__all__ = ["shard", "shard_bounds"]
