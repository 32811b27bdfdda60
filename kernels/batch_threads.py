"""Batch parallelism on the CPU: the images of a batch split across threads, in fixed chunks.

NumPy runs its copies and elementwise loops on one core, OpenBLAS its GEMMs on all of them. The
convolution and pooling kernels do both, so with the default setup one core idles through every
copy. ``over_batch`` instead cuts the batch into chunks of images, lets each thread take chunks
in turn, and holds OpenBLAS to one thread meanwhile: the copies and GEMMs of different images run
at the same time on different cores (NumPy releases the GIL in both), and no core is
oversubscribed (OpenBLAS's threads busy-wait; two of them sharing a core with other work slow
down many times over).

**The numbers do not depend on the thread count.** A GEMM's bits depend on its shape and on how
many threads OpenBLAS gives it (measured on this project's machine, OpenBLAS 0.3.31, Haswell
kernels: float32 ``A @ B`` on one OpenBLAS thread and on two differ in the last bits of 8-43% of
the elements for the shapes tried, float64 for some shapes; the first ``n`` columns of ``A @ B``
and ``A @ B[:, :n]`` differ too), and a floating-point sum's bits depend on its order. So that a
run gives bitwise the same numbers with ``MINISSD_NUM_THREADS`` 1, 2 or 64 (a training run
resumed with another thread count continues exactly as it would have):

* the chunks depend only on the batch size and the ``size`` a kernel asks for (from the layer's
  shape: Winograd groups images so that its GEMMs get enough columns), never on the thread count;
  a chunk is computed the same way whichever thread takes it, and alone: no GEMM spans two chunks;
* every chunk's GEMMs run on one OpenBLAS thread, also when the chunks run one after the other
  (one thread, or too little work to pay for threads). A call that is a single chunk (batch 1,
  small maps with large chunks) runs in the caller's thread; the forward kernels (im2col,
  1x1, by offset, Winograd) and the Winograd and by-offset backward then spread that chunk's
  own pieces (bands, channel shares, tile positions, kernel offsets) over the batch threads,
  one OpenBLAS thread each (``split_one_chunk``), so their numbers do not depend on
  ``OPENBLAS_NUM_THREADS`` either; the im2col backward of a single chunk (batch 1) leaves its
  GEMMs to OpenBLAS as it is, on every ``MINISSD_NUM_THREADS`` alike;
* sums over the batch (weight gradients) are formed per chunk, and the chunk sums are added in
  chunk order, ``((s0 + s1) + s2) + ...`` (``sum_over_chunks``), as they arrive.

What that costs: where a layer has fewer chunks than there are threads (batch 8: fc6 and the
19x19 Winograd layers have 2 chunks of 4 images), the other threads wait; a chunk's sum waits
until those before it are added (a few partial sums alive at a time); and
``MINISSD_NUM_THREADS=1`` means one core for the kernels' GEMMs too. What it does not cover:
OpenBLAS's own thread count where single-chunk work leaves the GEMMs to it (see above) and for
GEMMs outside these kernels, and another CPU or OpenBLAS build (other kernels).

The interface::

    over_batch(xp, n, work, lambda lo, hi: kernel(x[lo:hi], out[lo:hi]), size)

calls ``kernel`` on each chunk ``[lo, hi)`` of the batch and returns the results in chunk order.
``over_chunks`` / ``sum_over_chunks`` take a *worker* instead: a generator function that gets an
iterable of chunks and yields one result per chunk, so that each thread sets up its buffers once
and reuses them for all the chunks it takes. Everything runs serially, in the caller's thread: for
small work (thread start-up would cost more than it saves), inside another call, and with one
thread; on CuPy and where NumPy's OpenBLAS cannot be found (then the BLAS keeps its own threads)
the whole batch is one chunk. ``MINISSD_NUM_THREADS`` sets the thread count (default: the CPUs
this process may use); 1 turns batch parallelism off.
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


def batch_chunks(n: int, size: int = 1):
    """The chunks of a batch of ``n``: ``(lo, hi)`` ranges of ``size`` images in order, the last
    one shorter where ``size`` does not divide ``n``. They depend on ``n`` and ``size`` only."""
    size = max(1, size)
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


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


def split_one_chunk(xp) -> bool:
    """Whether the chunk being computed here is a call's only chunk (one image, or a batch that
    fits one chunk), in the caller's thread, on NumPy with its OpenBLAS found: then a kernel
    spreads the chunk's own pieces (bands, tile positions, channel shares) over the batch
    threads with ``over_batch``, one OpenBLAS thread each, instead of leaving the chunk's GEMMs
    to OpenBLAS's threads. Those busy-wait between GEMMs and for a while after (next to another
    busy process a batch-1 SSD300 forward took 1.7 s instead of 0.7; split, 1.0 s; at batch 2 a
    512 -> 512 Winograd backward right after fc6's took 36-44 ms instead of 24-26 while fc6's
    left its GEMMs to OpenBLAS's two threads), and their results depend on
    OpenBLAS's thread count; the pieces are fixed by the layer's shape, so the numbers are the
    same on every thread count, ``OPENBLAS_NUM_THREADS`` included. False inside a batch
    thread (the other threads are busy with other chunks) and on CuPy."""
    return (xp.__name__ == "numpy" and blas_controls() is not None
            and not getattr(_local, "inside", False))


def over_batch(xp, n: int, work: float, fn, size: int = 1):
    """``[fn(lo, hi) for (lo, hi) in batch_chunks(n, size)]``, in threads when it pays."""
    return over_chunks(xp, n, work, each_chunk(fn), size)


def each_chunk(fn):
    """The worker that calls ``fn(lo, hi)`` on each chunk it is given (nothing set up once)."""
    def worker(chunks):
        for lo, hi in chunks:
            yield fn(lo, hi)
    return worker


def over_chunks(xp, n: int, work: float, worker, size: int = 1):
    """Run ``worker`` over the chunks ``batch_chunks(n, size)`` and return its results in chunk
    order. ``worker(chunks)`` is a generator function: for each ``(lo, hi)`` it takes from
    ``chunks`` it does that chunk's work and yields its result, before it takes the next."""
    results = {}
    _run(xp, n, work, worker, size, results.__setitem__)
    return [results[i] for i in range(len(results))]


def sum_over_chunks(xp, n: int, work: float, worker, size: int = 1):
    """The sum of ``worker``'s results (see ``over_chunks``) over the chunks, added in chunk
    order whatever the thread count. Each result must be a fresh array (it becomes the total or
    waits for the chunks before it); at most a few wait at a time, as threads take the chunks in
    order."""
    total = _OrderedSum()
    _run(xp, n, work, worker, size, total.add)
    return total.total


class _OrderedSum:
    """``add(i, part)`` in any order of ``i``; the parts are summed in the order 0, 1, 2, ..."""

    def __init__(self):
        self.total, self._next, self._waiting = None, 0, {}
        self._lock = threading.Lock()

    def add(self, index, part):
        with self._lock:
            self._waiting[index] = part
            while self._next in self._waiting:
                part = self._waiting.pop(self._next)
                if self.total is None:
                    self.total = part
                else:
                    self.total += part
                self._next += 1


class _Queue:
    """The chunks of one call, handed out in order to whichever thread asks next."""

    def __init__(self, chunks):
        self.chunks, self._next, self._lock = chunks, 0, threading.Lock()

    def take(self):
        with self._lock:
            index = self._next
            if index == len(self.chunks):
                return None
            self._next += 1
            return index


def _run(xp, n, work, worker, size, sink):
    """Run ``worker`` over the chunks, calling ``sink(index, result)`` for each chunk."""
    blas = blas_controls() if xp.__name__ == "numpy" else None
    if blas is None:  # CuPy (no threads; bigger GEMMs are better there) or another BLAS
        size = n
    chunks = batch_chunks(n, size)
    if len(chunks) <= 1:
        _drain(worker, _Queue(chunks), sink)
        return
    threads = min(num_threads(), len(chunks))
    with one_blas_thread(xp):
        queue = _Queue(chunks)
        if threads < 2 or work < MIN_PARALLEL_WORK or getattr(_local, "inside", False):
            _run_inside(worker, queue, sink)
            return
        pool = _executor(threads)
        futures = [pool.submit(_run_inside, worker, queue, sink) for _ in range(threads)]
        for future in futures:
            future.result()


def _run_inside(worker, queue, sink):
    saved = getattr(_local, "inside", False)
    _local.inside = True
    try:
        _drain(worker, queue, sink)
    finally:
        _local.inside = saved


def _drain(worker, queue, sink):
    """One thread's share: ``worker`` over the chunks it takes from ``queue``."""
    taken = []

    def chunks():
        while (index := queue.take()) is not None:
            taken.append(index)
            yield queue.chunks[index]

    done = 0
    for result in worker(chunks()):
        done += 1
        if done != len(taken):
            raise RuntimeError("over_chunks: a worker must yield once per chunk it takes")
        sink(taken[-1], result)
    if done != len(taken):
        raise RuntimeError("over_chunks: a worker must yield once per chunk it takes")


def _executor(threads):
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="minissd-batch")
        return _pool
