"""The pieces of data-parallel training, in one process (no MPI): K "processes" are K threads
with a communicator that sums through shared memory. Synchronised batch norm, the global loss
normaliser and the bucketed gradient sum each give, on K shards, the numbers of one process on
the whole batch; the weight check catches drift."""

import sys
import threading

import numpy as np
import pytest

from minissd.autograd import Tensor
from minissd.autograd.functional import batch_norm
from minissd.distributed import (
    DistributedError,
    GradientAllreduce,
    SingleProcess,
    check_identical,
    shard,
    sync_batch_norm,
    world,
)
from minissd.nn import BatchNorm2d, Conv2d, Parameter, Sequential
from minissd.ssd.multibox_loss import multibox_loss

#: Seconds a thread waits for the others at a collective before the test calls it a hang.
BARRIER_TIMEOUT_S = 30


class ThreadComm(SingleProcess):
    """Rank ``rank`` of ``size`` threads sharing ``slots``: every collective is an allgather
    (sums are added in rank order, so every rank gets bitwise the same result)."""

    def __init__(self, rank, size, slots, barrier):
        self.rank, self.size, self.slots, self.barrier = rank, size, slots, barrier

    def allgather(self, obj):
        self.slots[self.rank] = obj
        self.barrier.wait()
        gathered = list(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before everyone has read it
        return gathered

    def allreduce_sum_(self, array):
        total = None
        for part in self.allgather(array.copy()):
            total = part if total is None else total + part
        array[...] = total
        return array

    def allreduce(self, value):
        parts = self.allgather(value)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    def bcast(self, obj, root=0):
        return self.allgather(obj)[root]


def run_ranks(size, fn):
    """``[fn(comm of rank 0), fn(comm of rank 1), ...]``, each in its own thread."""
    slots, barrier = [None] * size, threading.Barrier(size, timeout=BARRIER_TIMEOUT_S)
    results, errors = [None] * size, []

    def run(rank):
        try:
            results[rank] = fn(ThreadComm(rank, size, slots, barrier))
        except BaseException as exc:  # noqa: B036 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("size", [2, 3])
def test_sync_batch_norm_on_shards_is_batch_norm_of_the_whole_batch(rng, size):
    x = rng.normal(2.0, 3.0, (5, 4, 3, 2))  # 5 images: uneven shards
    w, b = rng.normal(size=4), rng.normal(size=4)
    upstream = rng.normal(size=x.shape)
    X, W, B = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), \
        Tensor(b, requires_grad=True)
    y, mean, var = batch_norm(X, W, B, eps=1e-5)
    y.backward(upstream)

    def one_rank(comm):
        xs = Tensor(shard(x, comm.rank, size), requires_grad=True)
        ws, bs = Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
        ys, mean_s, var_s, count = sync_batch_norm(xs, ws, bs, 1e-5, comm)
        ys.backward(shard(upstream, comm.rank, size))
        return ys.data, xs.grad, ws.grad, bs.grad, mean_s, var_s, count

    out = run_ranks(size, one_rank)
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([o[0] for o in out]), y.data, **tol)
    np.testing.assert_allclose(np.concatenate([o[1] for o in out]), X.grad, **tol)
    # weight and bias gradients are per shard: their sum (the gradient allreduce) is the whole's
    np.testing.assert_allclose(sum(o[2] for o in out), W.grad, **tol)
    np.testing.assert_allclose(sum(o[3] for o in out), B.grad, **tol)
    for o in out:
        np.testing.assert_allclose(o[4], mean, **tol)
        np.testing.assert_allclose(o[5], var, **tol)
        assert o[6] == x.size // x.shape[1]


def test_batch_norm_layer_with_comm_updates_running_statistics_globally(rng):
    x = rng.normal(1.0, 2.0, (4, 3, 2, 2))
    whole = BatchNorm2d(3, dtype=np.float64)
    whole(Tensor(x))

    def one_rank(comm):
        layer = BatchNorm2d(3, dtype=np.float64)
        layer.comm = comm
        layer(Tensor(shard(x, comm.rank, comm.size)))
        return layer._buffers["running_mean"], layer._buffers["running_var"]

    for mean, var in run_ranks(2, one_rank):
        np.testing.assert_allclose(mean, whole._buffers["running_mean"], rtol=1e-12)
        np.testing.assert_allclose(var, whole._buffers["running_var"], rtol=1e-12)


def test_shard_losses_with_the_global_normaliser_add_up_to_the_batch_loss(rng):
    n, p, c = 5, 30, 4
    loc, conf = rng.normal(size=(n, p, 4)), rng.normal(size=(n, p, c))
    loc_t = rng.normal(size=(n, p, 4))
    labels = np.where(rng.random((n, p)) < 0.2, rng.integers(1, c, (n, p)), 0)
    L, C = Tensor(loc, requires_grad=True), Tensor(conf, requires_grad=True)
    whole = multibox_loss(L, C, loc_t, labels)[0]
    whole.backward()
    total, grads_loc, grads_conf = 0.0, [], []
    for rank in range(2):
        Ls = Tensor(shard(loc, rank, 2), requires_grad=True)
        Cs = Tensor(shard(conf, rank, 2), requires_grad=True)
        part = multibox_loss(Ls, Cs, shard(loc_t, rank, 2), shard(labels, rank, 2),
                             num_positives=int((labels > 0).sum()))[0]
        part.backward()
        total += part.item()
        grads_loc.append(Ls.grad)
        grads_conf.append(Cs.grad)
    assert total == pytest.approx(whole.item(), rel=1e-12)
    np.testing.assert_allclose(np.concatenate(grads_loc), L.grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.concatenate(grads_conf), C.grad, rtol=1e-12, atol=1e-15)


def test_gradient_allreduce_sums_in_few_buckets(rng):
    shapes = [(3, 4), (5,), (2, 2, 2), (7,)]
    grads = [[rng.normal(size=s) for s in shapes] for _ in range(3)]  # per rank
    grads[1][1] = None  # a parameter without a gradient counts as zeros

    def one_rank(comm):
        params = [Parameter(np.zeros(s)) for s in shapes]
        for p, g in zip(params, grads[comm.rank]):
            p.grad = None if g is None else g.copy()
        reduce = GradientAllreduce(params, comm, bucket_bytes=8 * 16)  # 16 float64s a bucket
        reduce()
        return reduce.buckets, [p.grad for p in params]

    out = run_ranks(3, one_rank)
    buckets = out[0][0]
    assert buckets == [[0], [1, 2], [3]]  # in order, no parameter split, <= 16 values or one
    for i in range(len(shapes)):
        want = sum(g[i] for g in grads if g[i] is not None)
        for _, summed in out:
            np.testing.assert_array_equal(summed[i], out[0][1][i])  # the same on every rank
            np.testing.assert_allclose(summed[i], want, rtol=1e-15)
            assert summed[i].shape == shapes[i]


def test_weight_check_names_the_drifted_tensor_and_rank():
    def one_rank(comm):
        model = Sequential(Conv2d(1, 2, 3, rng=np.random.default_rng(0), dtype=np.float64),
                           BatchNorm2d(2, dtype=np.float64))
        check_identical(model, comm, iteration=5)  # identical: passes
        if comm.rank == 2:
            model[1].weight.data[0] += 1e-12
        try:
            check_identical(model, comm, iteration=6)
        except DistributedError as exc:
            return str(exc), getattr(exc, "on_every_rank", False)
        return None

    for message, on_every_rank in run_ranks(3, one_rank):
        assert "after iteration 6 the weights of rank 2 differ from rank 0's in 1 of 6" in message
        assert "first: 1.weight" in message and on_every_rank


def test_a_plain_process_is_a_single_process_without_mpi():
    comm = world()
    assert isinstance(comm, SingleProcess) and (comm.rank, comm.size) == (0, 1)
    assert "mpi4py.MPI" not in sys.modules  # MPI is never started outside mpiexec
