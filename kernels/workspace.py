"""Scratch memory that a kernel reuses from call to call (one buffer per name and thread).

Why: glibc's malloc serves every block above 32 MiB (its largest ``mmap`` threshold) with fresh
pages from the kernel, and hands them back when the block is freed; so a temporary that big
costs one page fault per 4 KiB page on every call. F(4x4, 3x3)'s transformed weights of a
512 -> 512 layer are 36 MiB: measured (2 threads, median of 20) 8.2 ms a transform into a fresh
array, 2.8 ms into a reused one. Smaller blocks come back from malloc's own free lists and gain
nothing from this.

A buffer holds garbage when it is handed out, and stays valid until the next ``scratch`` call
with the same name in the same thread: only for temporaries that die before the kernel returns.
Its memory stays with the process (the largest size asked for under that name). On CuPy, whose
memory pool already reuses blocks, ``scratch`` is a plain ``empty``.
"""

from __future__ import annotations

import math
import threading

_local = threading.local()


def scratch(xp, name: str, shape, dtype):
    """An array of ``shape`` and ``dtype`` in the buffer called ``name`` of this thread."""
    if xp.__name__ != "numpy":
        return xp.empty(shape, dtype=dtype)
    nbytes = math.prod(shape if isinstance(shape, tuple) else (shape,)) * xp.dtype(dtype).itemsize
    buffers = _local.__dict__.setdefault("buffers", {})
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[name] = xp.empty(nbytes, dtype=xp.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)
