"""Batch parallelism on the CPU: the images of a batch split across threads.

NumPy runs its copies and elementwise loops on one core, OpenBLAS its GEMMs on all of them. The
convolution and pooling kernels do both, so with the default setup one core idles through every
copy. ``over_batch`` instead gives each thread its own share of the images and holds OpenBLAS to
one thread meanwhile: the copies and GEMMs of different images run at the same time on different
cores (NumPy releases the GIL in both), and no core is oversubscribed (OpenBLAS's threads
busy-wait; two of them sharing a core with other work slow down many times over).

    parts = over_batch(xp, n, work, lambda lo, hi: kernel(x[lo:hi], out[lo:hi]))

runs ``kernel`` on contiguous slices ``[lo, hi)`` of the batch and returns their results in
order. It runs serially, as one call ``(0, n)``, on CuPy, for small work (thread start-up would
cost more than it saves), inside another ``over_batch`` call, and where NumPy's OpenBLAS cannot
be found (then the BLAS keeps its own threads). ``MINISSD_NUM_THREADS`` sets the thread count
(default: the CPUs this process may use); 1 turns batch parallelism off.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

#: Below this many multiply-adds (or element visits) per call, run serially.
MIN_PARALLEL_WORK = 1 << 22

_local = threading.local()
_pool = None
_pool_lock = threading.Lock()


def num_threads() -> int:
    value = os.environ.get("MINISSD_NUM_THREADS")
    if value is not None:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"MINISSD_NUM_THREADS must be an integer, got {value!r}") from None
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@functools.lru_cache(maxsize=None)
def openblas_function(name: str):
    """The ctypes function ``name`` (e.g. ``"get_num_threads"``) of the OpenBLAS NumPy loaded,
    whatever its symbol prefix (``scipy_openblas...64_`` in NumPy's wheels), or None."""
    import numpy  # noqa: F401  (loads OpenBLAS)

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""),
                               ("openblas", "64_"), ("openblas", "")):
            function = getattr(lib, f"{prefix}_{name}{suffix}", None)
            if function is not None:
                return function
    return None


def blas_controls():
    """``(get_num_threads, set_num_threads)`` of NumPy's OpenBLAS, or None."""
    get, set_ = openblas_function("get_num_threads"), openblas_function("set_num_threads")
    if get is None or set_ is None:
        return None
    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
    return get, set_


def chunks(n: int, parts: int):
    """``parts`` contiguous ``(lo, hi)`` ranges covering ``range(n)``, sizes differing by <= 1."""
    parts = max(1, min(parts, n))
    bounds = [n * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


@contextlib.contextmanager
def one_blas_thread(xp):
    """Hold NumPy's OpenBLAS to one thread inside the block (no-op on CuPy or another BLAS).

    Also for small GEMMs right before an ``over_batch`` call: after a multi-threaded call,
    OpenBLAS's worker threads keep spinning for a while, and they would share cores with the
    batch threads (measured: +25 ms on a 50 ms Winograd forward)."""
    blas = blas_controls() if xp.__name__ == "numpy" else None
    if blas is None:
        yield
        return
    get, set_ = blas
    saved = get()
    set_(1)
    try:
        yield
    finally:
        set_(saved)


def over_batch(xp, n: int, work: float, fn):
    """``[fn(lo, hi) for (lo, hi) in chunks]`` over the batch, in threads when it pays."""
    threads = min(num_threads(), n)
    blas = blas_controls() if xp.__name__ == "numpy" else None
    if (threads < 2 or blas is None or work < MIN_PARALLEL_WORK
            or getattr(_local, "inside", False)):
        return [fn(0, n)]
    with one_blas_thread(xp):
        pool = _executor(threads)
        futures = [pool.submit(_run_inside, fn, lo, hi) for lo, hi in chunks(n, threads)]
        return [f.result() for f in futures]


def _run_inside(fn, lo, hi):
    _local.inside = True
    try:
        return fn(lo, hi)
    finally:
        _local.inside = False


def _executor(threads):
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="minissd-batch")
        return _pool
