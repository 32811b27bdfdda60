"""Batch parallelism (``minissd.autograd._threads``): splitting the images of a batch across
threads changes no result. conv2d and max_pool2d, forward and backward, are compared between one
thread and several (with the work threshold at zero, so that even tiny batches split), on
hypothesis-drawn shapes; the gradients are also checked numerically while threads are on."""

import contextlib
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minissd.autograd import Tensor, _threads, gradcheck
from minissd.autograd import functional as F


@given(n=st.integers(1, 40), parts=st.integers(1, 8))
def test_chunks_cover_the_batch_in_order(n, parts):
    ranges = _threads.chunks(n, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [hi - lo for lo, hi in ranges]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1 and len(ranges) == min(parts, n)


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("MINISSD_NUM_THREADS", "3")
    assert _threads.num_threads() == 3
    monkeypatch.setenv("MINISSD_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="MINISSD_NUM_THREADS"):
        _threads.num_threads()


@contextlib.contextmanager
def threads(count):
    """``count`` threads and no minimum work (hypothesis refuses function-scoped fixtures)."""
    saved = os.environ.get("MINISSD_NUM_THREADS"), _threads.MIN_PARALLEL_WORK
    os.environ["MINISSD_NUM_THREADS"], _threads.MIN_PARALLEL_WORK = str(count), 0
    try:
        yield
    finally:
        if saved[0] is None:
            del os.environ["MINISSD_NUM_THREADS"]
        else:
            os.environ["MINISSD_NUM_THREADS"] = saved[0]
        _threads.MIN_PARALLEL_WORK = saved[1]


def _run(fn, count, *arrays):
    with threads(count):
        leaves = [Tensor(a.copy(), requires_grad=True) for a in arrays]
        out = fn(*leaves)
        g = np.random.default_rng(1).standard_normal(out.shape)
        (out * Tensor(g)).sum().backward()
    return [out.data] + [t.grad for t in leaves]


def _same(fn, *arrays):
    one = _run(fn, 1, *arrays)
    for count in (2, 3):
        many = _run(fn, count, *arrays)
        for a, b in zip(one, many):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), c=st.integers(1, 4), o=st.integers(1, 5), hw=st.integers(5, 12),
       k=st.sampled_from([1, 2, 3]), stride=st.integers(1, 2), padding=st.integers(0, 2),
       dilation=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_conv2d_gives_the_same_numbers_on_any_thread_count(n, c, o, hw, k, stride, padding,
                                                           dilation, seed):
    if hw + 2 * padding < dilation * (k - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s) for s in ((n, c, hw, hw), (o, c, k, k), (o,)))
    _same(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation), x, w, b)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), c=st.integers(1, 3), hw=st.integers(3, 11), k=st.integers(1, 3),
       stride=st.integers(1, 3), ceil=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_max_pool2d_gives_the_same_numbers_on_any_thread_count(n, c, hw, k, stride, ceil, seed):
    x = np.random.default_rng(seed).integers(0, 4, (n, c, hw, hw)).astype(np.float64)  # ties
    _same(lambda x: F.max_pool2d(x, k, stride, k // 2, ceil), x)


def test_gradients_are_right_with_threads_on():
    rng = np.random.default_rng(0)
    x, w = (Tensor(rng.standard_normal(s), requires_grad=True) for s in ((3, 2, 7, 7),
                                                                         (3, 2, 3, 3)))
    with threads(2):
            gradcheck(lambda x, w: F.max_pool2d(F.conv2d(x, w, padding=1), 2, 2, ceil_mode=True),
                  x, w)


def test_work_really_splits_across_threads():
    import threading

    if _threads.blas_controls() is None:
        pytest.skip("NumPy's BLAS is not OpenBLAS: batch parallelism stays off")
    seen = []
    with threads(2):
        parts = _threads.over_batch(np, 5, 1.0, lambda lo, hi: seen.append(
            (lo, hi, threading.current_thread().name)) or hi - lo)
    assert parts == [2, 3]
    assert [s[:2] for s in sorted(seen)] == [(0, 2), (2, 5)]
    assert all(name.startswith("minissd-batch") for _, _, name in seen)
    assert _threads.over_batch(np, 5, 1.0, lambda lo, hi: (lo, hi)) == [(0, 5)]  # small: serial
