"""Summing gradients over processes, and checking that the weights stay identical.

**Why a sum.** Process ``r`` computes the loss ``L_r`` of its shard of the global batch, divided
by the number of positives of the *whole* batch (``multibox_loss(num_positives=...)``), so the
loss of the global batch is ``L = L_0 + L_1 + ... + L_{K-1}`` and its gradient is the sum of the
processes' gradients. After the sum every process holds the gradient one process would compute
on the whole batch, applies the same optimiser step to the same weights, and the weights stay
identical without ever being sent.

**Why buckets.** Every allreduce call costs a latency (microseconds inside a machine, tens of
them across a network) on top of its bytes. SSD300 has 71 parameter tensors, so one call per
tensor pays 71 latencies; one call for all 26M floats can start only when the whole backward
pass is done. ``GradientAllreduce`` packs the gradients, in order, into a few flat buffers of
about ``BUCKET_BYTES`` (PyTorch's DistributedDataParallel uses 25 MiB), one allreduce each.
(Starting each bucket's sum while the backward pass still computes the earlier layers' gradients
would hide most of the communication; see the README's scaling model. Here the sums run after
the backward pass.)

**The check.** ``check_identical`` compares a digest of every parameter and buffer across the
processes; any difference (a bug, a non-deterministic reduction, a process that skipped a step)
stops the run with a ``DistributedError`` naming the first tensor that differs.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from ..backend import get_array_module, to_numpy
from .communicator import DistributedError, on_every_rank

#: Bytes of gradient per allreduce call (a tensor larger than this is a bucket of its own).
BUCKET_BYTES = 25 * 2**20

#: Iterations between weight checks in the trainer (and the first and last iteration).
CHECK_EVERY = 100

#: Bytes of each tensor's digest in the weight check.
DIGEST_BYTES = 8


class GradientAllreduce:
    """Sum the gradients of ``params`` over the processes of ``comm``, bucket by bucket.

    Args:
        params: the Parameters (the same list, in the same order, on every process).
        comm: a communicator (``minissd.distributed.world()``).
        bucket_bytes: the size of a bucket.

    Calling it after ``loss.backward()`` replaces each ``param.grad`` (any shape) by the sum over
    the processes, as a view into a bucket's flat buffer (so it stays valid until the next call).
    A parameter without a gradient counts as a zero gradient. ``seconds`` holds the time spent in
    the last call's allreduces.
    """

    def __init__(self, params, comm, bucket_bytes: int = BUCKET_BYTES):
        self.params, self.comm = list(params), comm
        self.buckets = _buckets(self.params, bucket_bytes)  # lists of parameter indices
        self._buffers = [None] * len(self.buckets)
        self.seconds = 0.0

    def __call__(self) -> None:
        self.seconds = 0.0
        if self.comm.size == 1:
            return
        for b, indices in enumerate(self.buckets):
            flat = self._buffer(b, indices)
            views, offset = [], 0
            for i in indices:
                p = self.params[i]
                view = flat[offset:offset + p.size].reshape(p.shape)
                if p.grad is None:
                    view[...] = 0
                else:
                    view[...] = p.grad
                views.append(view)
                offset += p.size
            tic = time.perf_counter()
            self.comm.allreduce_sum_(flat)
            self.seconds += time.perf_counter() - tic
            for i, view in zip(indices, views):
                self.params[i].grad = view

    def _buffer(self, b, indices):
        """Bucket ``b``'s flat buffer (made once, on the parameters' device and in their dtype)."""
        if self._buffers[b] is None:
            first = self.params[indices[0]].data
            xp = get_array_module(first)
            self._buffers[b] = xp.empty(sum(self.params[i].size for i in indices), first.dtype)
        return self._buffers[b]


def _buckets(params, bucket_bytes):
    """Consecutive runs of parameter indices of one dtype and about ``bucket_bytes`` each."""
    buckets, current, size, dtype = [], [], 0, None
    for i, p in enumerate(params):
        nbytes = p.size * p.dtype.itemsize
        if current and (p.dtype != dtype or size + nbytes > bucket_bytes):
            buckets.append(current)
            current, size = [], 0
        current.append(i)
        size += nbytes
        dtype = p.dtype
    if current:
        buckets.append(current)
    return buckets


def tensor_digests(model) -> list[tuple[str, str]]:
    """``(name, digest of the bytes)`` of every parameter and buffer of ``model``."""
    named = [(n, p.data) for n, p in model.named_parameters()]
    named += [(n, b) for n, _, _, b in model.named_buffers()]
    return [(n, hashlib.blake2b(np.ascontiguousarray(to_numpy(a)),
                                digest_size=DIGEST_BYTES).hexdigest()) for n, a in named]


def check_identical(model, comm, iteration: int) -> None:
    """Raise ``DistributedError`` (on every process) when some process's parameters or buffers
    are not bitwise those of rank 0; a collective: every process must call it."""
    if comm.size == 1:
        return
    everyone = comm.allgather(tensor_digests(model))
    reference = everyone[0]
    for rank, digests in enumerate(everyone[1:], start=1):
        differ = [name for (name, d), (_, d0) in zip(digests, reference) if d != d0]
        if differ or len(digests) != len(reference):
            raise on_every_rank(DistributedError(
                f"after iteration {iteration} the weights of rank {rank} differ from rank 0's "
                f"in {len(differ)} of {len(reference)} tensors (first: "
                f"{differ[0] if differ else 'the tensor lists differ'}): the processes no "
                f"longer train one model; the last checkpoint holds rank 0's weights"))


__all__ = ["GradientAllreduce", "check_identical", "tensor_digests", "BUCKET_BYTES",
           "CHECK_EVERY"]
