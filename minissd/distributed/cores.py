"""Sharing a machine's CPU cores between the processes that run on it.

Each minissd process uses as many threads as the cores it may run on (``MINISSD_NUM_THREADS``,
default: its CPU affinity; OpenBLAS: all cores). K processes on one machine that each see all
its cores would start K times too many threads, and OpenBLAS's busy-waiting threads slow down
many times over when they share a core. ``share_cpu_cores`` gives each process its share: the
cores it may run on, divided by the number of processes on its machine that may run on them too
(``mpiexec`` binds each process to its own core by default when there are enough cores; with
``--oversubscribe`` or ``--bind-to none`` they all share every core).
"""

from __future__ import annotations

import os
import socket

#: minissd's thread-count variable (``minissd.kernels.batch_threads``).
THREADS_ENV = "MINISSD_NUM_THREADS"


def share_cpu_cores(comm) -> int | None:
    """Set this process's thread count to its share of the cores (a collective: every process
    calls it). Returns the count, or None when there is nothing to share or the user set
    ``MINISSD_NUM_THREADS`` (which then wins)."""
    if comm.size == 1:
        return None
    mine = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else frozenset(range(os.cpu_count() or 1))
    everyone = comm.allgather((socket.gethostname(), mine))
    if THREADS_ENV in os.environ:
        return None
    host = socket.gethostname()
    sharing = sum(1 for h, cores in everyone if h == host and cores & mine)
    threads = max(1, len(mine) // sharing)
    os.environ[THREADS_ENV] = str(threads)
    from ..kernels.batch_threads import blas_controls

    blas = blas_controls()
    if blas is not None:
        blas[1](threads)  # OpenBLAS's own thread count, for the GEMMs outside the batch threads
    return threads


__all__ = ["share_cpu_cores", "THREADS_ENV"]
