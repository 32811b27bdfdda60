"""Batch parallelism (``minissd.kernels.batch_threads``): the results do not depend on the thread
count, bit for bit. conv2d (im2col, by offset, Winograd) and max_pool2d, forward and all
gradients, float32 and float64, are compared between 1, 2, 3 and 4 threads (with the work
threshold at zero, so that even tiny batches split) on hypothesis-drawn shapes, chunk and band
sizes; a few training steps of the small model give the same weights on 1 and 2 threads. The
gradients are also checked numerically while threads are on."""

import contextlib
import os
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minissd.kernels import batch_threads as _threads
from minissd.kernels import conv as _conv
from minissd.kernels import winograd as _winograd

from minissd.autograd import Tensor, gradcheck
from minissd.autograd import functional as F

THREAD_COUNTS = (2, 3, 4)  # each compared with one thread


@given(n=st.integers(0, 40), size=st.integers(1, 9))
def test_chunks_cover_the_batch_in_order(n, size):
    ranges = _threads.batch_chunks(n, size)
    assert [i for lo, hi in ranges for i in range(lo, hi)] == list(range(n))
    assert all(hi - lo == size for lo, hi in ranges[:-1]) and all(hi > lo for lo, hi in ranges)


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("MINISSD_NUM_THREADS", "3")
    assert _threads.num_threads() == 3
    monkeypatch.setenv("MINISSD_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="MINISSD_NUM_THREADS"):
        _threads.num_threads()


@contextlib.contextmanager
def threads(count, **module_settings):
    """``count`` threads, no minimum work, and ``module_settings`` (``"module.NAME": value`` for
    ``kernels.conv``, ``kernels.winograd``) for the block (hypothesis refuses function-scoped
    fixtures: no monkeypatch)."""
    modules = {"conv": _conv, "winograd": _winograd}
    targets = [(modules[key.split(".")[0]], key.split(".")[1], value)
               for key, value in module_settings.items()]
    saved = ([(m, name, getattr(m, name)) for m, name, _ in targets],
             os.environ.get("MINISSD_NUM_THREADS"), _threads.MIN_PARALLEL_WORK)
    for m, name, value in targets:
        setattr(m, name, value)
    os.environ["MINISSD_NUM_THREADS"], _threads.MIN_PARALLEL_WORK = str(count), 0
    try:
        yield
    finally:
        for m, name, value in saved[0]:
            setattr(m, name, value)
        if saved[1] is None:
            del os.environ["MINISSD_NUM_THREADS"]
        else:
            os.environ["MINISSD_NUM_THREADS"] = saved[1]
        _threads.MIN_PARALLEL_WORK = saved[2]


def _run(fn, count, arrays, module_settings):
    with threads(count, **module_settings):
        leaves = [Tensor(a.copy(), requires_grad=True) for a in arrays]
        out = fn(*leaves)
        g = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
        out.backward(g)
    return [out.data] + [t.grad for t in leaves]


def _bitwise_same(fn, arrays, **module_settings):
    one = _run(fn, 1, arrays, module_settings)
    for count in THREAD_COUNTS:
        many = _run(fn, count, arrays, module_settings)
        for name, a, b in zip(("output", "input grad", "weight grad", "bias grad"), one, many):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: 1 vs {count} threads")


dtypes = st.sampled_from([np.float32, np.float64])


@st.composite
def conv_case(draw):
    """A conv2d case and the kernel path it takes: ``winograd`` (3x3 stride 1, forced on), or
    im2col / by offset by the padding share (``BY_OFFSET_PADDING_SHARE`` -1: always by offset,
    2: never; 0.25, the default: by the shape; the flipped-kernel input gradient may differ)."""
    winograd = draw(st.booleans())
    if winograd:
        k, stride, dilation = 3, 1, 1
        padding = draw(st.integers(0, 2))
        share = 0.25
    else:
        k, stride, dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)),
                               draw(st.integers(1, 3)))
        padding = draw(st.integers(0, 3))
        share = draw(st.sampled_from([-1.0, 0.25, 2.0]))
    span = dilation * (k - 1) + 1
    hw = draw(st.integers(max(1, span - 2 * padding, 4 - 2 * padding if winograd else 1), 13))
    n = draw(st.sampled_from([1, 2, 3, 4, 5, 7, 8]))
    c, o = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays = [rng.standard_normal(s).astype(dtype) for s in ((n, c, hw, hw), (o, c, k, k), (o,))]
    module_settings = {
        "winograd.MIN_CHANNELS": 0 if winograd else 10**9,
        "conv.BY_OFFSET_PADDING_SHARE": share,
        # images per chunk: one, a few (often not dividing the batch), or all
        "winograd.MIN_GEMM_COLUMNS": draw(st.sampled_from([1, 20, 384])),
        "conv.BY_OFFSET_MIN_COLUMNS": draw(st.sampled_from([1, 60, 1000])),
        # bands: one output row (or tile row) each, a few, or the whole image
        "winograd.CPU_BAND_BYTES": draw(st.sampled_from([1, 3000, 1 << 20])),
        "conv.CPU_BAND_BYTES": draw(st.sampled_from([1, 3000, 1 << 20])),
    }
    return arrays, (stride, padding, dilation), module_settings


@settings(max_examples=60, deadline=None)
@given(case=conv_case())
def test_conv2d_gives_bitwise_the_same_numbers_on_any_thread_count(case):
    arrays, (stride, padding, dilation), module_settings = case
    _bitwise_same(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation), arrays,
                  **module_settings)


@pytest.mark.parametrize("n, c, o, hw, k, padding, dilation", [
    (3, 96, 96, 19, 3, 1, 1),  # Winograd, conv4-like: two images per chunk
    (5, 64, 128, 19, 3, 6, 6),  # by offset, fc6-like
    (3, 128, 128, 19, 1, 0, 1),  # 1x1
    (3, 32, 16, 38, 3, 1, 1),  # 3x3 im2col (few output channels)
    (3, 64, 32, 13, 3, 0, 3),  # im2col, its flipped-kernel input gradient by offset
    (3, 32, 64, 20, 3, 1, 1),  # im2col, col2im input gradient (more output channels)
], ids=["winograd", "by-offset", "1x1", "im2col", "flipped-by-offset", "col2im"])
def test_ssd_sized_layers_give_bitwise_the_same_numbers_on_any_thread_count(
        n, c, o, hw, k, padding, dilation):
    """Layers big enough that OpenBLAS itself would split their GEMMs across threads, float32,
    at the default settings."""
    rng = np.random.default_rng(0)
    arrays = [(rng.standard_normal(s) * 0.1).astype(np.float32)
              for s in ((n, c, hw, hw), (o, c, k, k), (o,))]
    _bitwise_same(lambda x, w, b: F.conv2d(x, w, b, 1, padding, dilation), arrays)


@pytest.mark.parametrize("c, o, hw, k, padding, dilation, path", [
    (128, 128, 38, 3, 1, 1, "winograd"),
    (64, 64, 96, 3, 1, 1, "im2col"),
    (256, 512, 38, 1, 0, 1, "1x1"),
    (256, 512, 19, 3, 6, 6, "by offset"),  # fc6
])
def test_a_one_chunk_call_does_not_depend_on_openblas_threads(c, o, hw, k, padding, dilation,
                                                              path):
    """A call that is one chunk (batch 1) spreads its own bands, tile GEMMs or output-channel
    shares over the batch threads, one OpenBLAS thread each (``split_one_chunk``): its output is
    bitwise the same on any OpenBLAS thread count and any ``MINISSD_NUM_THREADS`` (OpenBLAS's
    own threads, which ran these GEMMs before, give other bits on 1 and 2 threads)."""
    if _threads.blas_controls() is None:
        pytest.skip("NumPy's OpenBLAS not found")
    get, set_ = _threads.blas_controls()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1, c, hw, hw)) * 0.1).astype(np.float32)
    w = (rng.standard_normal((o, c, k, k)) * 0.1).astype(np.float32)
    forced = {"winograd.MIN_CHANNELS": 0 if path == "winograd" else 10**9}
    outputs, saved = {}, get()
    try:
        for blas_threads in (1, 2):
            for ours in (1, 2):
                set_(blas_threads)
                with threads(ours, **forced):
                    outputs[blas_threads, ours] = F.conv2d(Tensor(x), Tensor(w), None, 1,
                                                           padding, dilation).data
    finally:
        set_(saved)
    for key, out in outputs.items():
        np.testing.assert_array_equal(out, outputs[1, 1], err_msg=f"OpenBLAS, batch threads {key}")


@pytest.mark.parametrize("n, c, o, hw, padding, dilation", [
    (1, 128, 128, 38, 1, 1),  # Winograd
    (2, 128, 128, 38, 1, 1),  # Winograd: batch 2 on 38x38 is one chunk too
    (1, 256, 512, 19, 6, 6),  # by offset (fc6)
    (2, 256, 512, 19, 6, 6),  # by offset: fc6's chunks hold 4 images
    (2, 256, 256, 3, 1, 1),  # by offset, a tiny map
], ids=["winograd-1", "winograd-2", "by-offset-1", "by-offset-2", "by-offset-3x3"])
def test_a_one_chunk_backward_does_not_depend_on_openblas_threads(n, c, o, hw, padding,
                                                                  dilation):
    """The backward of a one-chunk call splits the same way: Winograd's bands (transforms by
    channel shares, the dU and dV GEMMs per tile position), by offset the weight gradient's
    offsets and the input gradient's channel shares. The gradients are bitwise the same on any
    OpenBLAS and batch thread count (OpenBLAS's own threads give other bits on 1 and 2)."""
    if _threads.blas_controls() is None:
        pytest.skip("NumPy's OpenBLAS not found")
    get, set_ = _threads.blas_controls()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((n, c, hw, hw)) * 0.1).astype(np.float32)
    w = (rng.standard_normal((o, c, 3, 3)) * 0.1).astype(np.float32)
    g = rng.standard_normal((n, o, hw, hw)).astype(np.float32)
    forced = {"winograd.MIN_CHANNELS": 0 if dilation == 1 and hw > 3 else 10**9}
    grads, saved = {}, get()
    try:
        for blas_threads in (1, 2):
            for ours in (1, 2):
                set_(blas_threads)
                with threads(ours, **forced):
                    xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
                    F.conv2d(xt, wt, None, 1, padding, dilation).backward(g)
                    grads[blas_threads, ours] = (xt.grad, wt.grad)
    finally:
        set_(saved)
    for key, (gx, gw) in grads.items():
        np.testing.assert_array_equal(gx, grads[1, 1][0], err_msg=f"input grad {key}")
        np.testing.assert_array_equal(gw, grads[1, 1][1], err_msg=f"weight grad {key}")


@settings(max_examples=25, deadline=None)
@given(n=st.sampled_from([1, 2, 3, 5, 8]), c=st.integers(1, 3), hw=st.integers(3, 11),
       k=st.integers(1, 3), stride=st.integers(1, 3), ceil=st.booleans(), dtype=dtypes,
       seed=st.integers(0, 2**32 - 1))
def test_max_pool2d_gives_bitwise_the_same_numbers_on_any_thread_count(n, c, hw, k, stride, ceil,
                                                                       dtype, seed):
    x = np.random.default_rng(seed).integers(0, 4, (n, c, hw, hw)).astype(dtype)  # ties
    _bitwise_same(lambda x: F.max_pool2d(x, k, stride, k // 2, ceil), [x])


def test_gradients_are_right_with_threads_on():
    rng = np.random.default_rng(0)
    x, w = (Tensor(rng.standard_normal(s), requires_grad=True) for s in ((3, 2, 7, 7),
                                                                         (3, 2, 3, 3)))
    with threads(2):
        assert gradcheck(lambda x, w: F.max_pool2d(F.conv2d(x, w, padding=1), 2, 2,
                                                   ceil_mode=True), x, w)


def test_work_really_splits_across_threads():
    if _threads.blas_controls() is None:
        pytest.skip("NumPy's BLAS is not OpenBLAS: batch parallelism stays off")
    seen = []
    both = threading.Barrier(2, timeout=30)  # the first two chunks must run at the same time

    def kernel(lo, hi):
        if lo < 4:
            both.wait()
        seen.append((lo, hi, threading.current_thread().name))
        return hi - lo

    with threads(2):
        assert _threads.over_batch(np, 5, 1.0, kernel, size=2) == [2, 2, 1]
    assert sorted(s[:2] for s in seen) == [(0, 2), (2, 4), (4, 5)]
    assert all(name.startswith("minissd-batch") for _, _, name in seen)
    assert len({name for _, _, name in seen}) == 2
    seen.clear()  # small work: serially, in this thread, in the same chunks
    assert _threads.over_batch(np, 5, 1.0, lambda lo, hi: seen.append(
        (lo, hi, threading.current_thread().name)) or hi - lo, size=2) == [2, 2, 1]
    assert seen == [(0, 2, threading.current_thread().name), (2, 4, seen[0][2]),
                    (4, 5, seen[0][2])]


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_sums_over_chunks_add_in_chunk_order(count):
    """The chunks finish in reverse order (the first sleeps longest), yet the parts are added
    first to last: ``((1e16 + 1) - 1e16) + 1 == 1``, where any other order gives 0 or 2."""
    parts = [1e16, 1.0, -1e16, 1.0]

    def worker(chunks):
        for lo, _ in chunks:
            time.sleep(0.02 * (len(parts) - lo))
            yield np.array([parts[lo]])

    with threads(count):
        total = _threads.sum_over_chunks(np, len(parts), 1.0, worker)
    assert total[0] == 1.0


def test_a_worker_must_yield_once_per_chunk():
    def greedy(chunks):
        yield sum(hi - lo for lo, hi in chunks)  # takes every chunk, yields once

    with threads(1), pytest.raises(RuntimeError, match="once per chunk"):
        _threads.over_chunks(np, 4, 1.0, greedy)


def test_training_steps_give_bitwise_the_same_weights_on_one_and_two_threads(tmp_path,
                                                                           monkeypatch):
    """The issue this guards against: a run resumed with another MINISSD_NUM_THREADS went on
    with other numbers. Every conv and pool call splits here (no minimum work)."""
    from minissd.data import SYNTHETIC_CLASSES, make_synthetic_voc
    from minissd.train import TrainConfig, train

    make_synthetic_voc(tmp_path / "data", num_train=6, num_test=1, image_size=128, seed=3)
    monkeypatch.setattr(_threads, "MIN_PARALLEL_WORK", 0)
    weights = {}
    for count in (1, 2):
        monkeypatch.setenv("MINISSD_NUM_THREADS", str(count))
        model, _ = train(TrainConfig(
            data_root=str(tmp_path / "data"), train_split="train",
            class_names=SYNTHETIC_CLASSES, model="small", iterations=2, batch_size=3,
            lr=1e-3, milestones=(), checkpoint_every=10, out_dir=str(tmp_path / f"run{count}"),
            progress=False, seed=1))
        weights[count] = {name: p.data.copy() for name, p in model.named_parameters()}
    assert weights[1].keys() == weights[2].keys()
    for name in weights[1]:
        np.testing.assert_array_equal(weights[1][name], weights[2][name], err_msg=name)
