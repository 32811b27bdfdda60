"""Bad input gets a clear error naming the op and the shapes, not a traceback from NumPy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minissd import autograd as ag
from minissd.autograd import Tensor


def t(*shape, dtype=np.float32):
    return Tensor(np.ones(shape, dtype=dtype))


def test_conv2d_wrong_rank():
    with pytest.raises(ValueError, match=r"conv2d: input must be \(N, C, H, W\), got shape "
                                         r"\(3, 8, 8\)"):
        ag.conv2d(t(3, 8, 8), t(4, 3, 3, 3))


def test_conv2d_mismatched_channels():
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels \(shape \(1, 3, 8, 8\)\)"
                                         r" but weight expects 5"):
        ag.conv2d(t(1, 3, 8, 8), t(4, 5, 3, 3))


def test_conv2d_kernel_larger_than_input():
    with pytest.raises(ValueError, match="too small for kernel"):
        ag.conv2d(t(1, 1, 2, 2), t(1, 1, 3, 3))


def test_conv2d_dtype_mismatch():
    with pytest.raises(TypeError, match="conv2d: input is float32 but weight is float64"):
        ag.conv2d(t(1, 1, 4, 4), t(1, 1, 3, 3, dtype=np.float64))


def test_float16_is_refused_with_shape():
    with pytest.raises(TypeError, match=r"float16 is not supported.*shape \(1, 1, 4, 4\)"):
        ag.conv2d(Tensor(np.ones((1, 1, 4, 4), np.float16)), t(1, 1, 3, 3))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_conv2d_and_pool_reject_non_finite(bad):
    x = np.ones((1, 2, 4, 4), np.float32)
    x[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match=r"conv2d: input of shape \(1, 2, 4, 4\) contains NaN"):
        ag.conv2d(Tensor(x), t(1, 2, 3, 3))
    with pytest.raises(ValueError, match=r"max_pool2d: input of shape \(1, 2, 4, 4\) contains"):
        ag.max_pool2d(Tensor(x), 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_is_found_next_to_huge_values(bad):
    """Huge finite values (their float32 sum overflows) are not refused; NaN or inf beside them
    is."""
    x = np.full((1, 2, 4, 4), 3e38, np.float32)  # the float32 sum overflows to inf
    ag.max_pool2d(Tensor(x), 2)  # finite: accepted
    x[0, 0, 0, 0] = -3e38
    ag.max_pool2d(Tensor(x), 2)
    x[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match=r"max_pool2d: input of shape \(1, 2, 4, 4\) contains"):
        ag.max_pool2d(Tensor(x), 2)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), slice_=st.sampled_from([1, 7, 64, 1 << 18]),
       bad=st.sampled_from([None, np.nan, np.inf, -np.inf]), where=st.floats(0, 1),
       contiguous=st.booleans(), threads=st.booleans())
def test_all_finite_by_slices_equals_isfinite_all(n, slice_, bad, where, contiguous, threads):
    """The sliced check (any slice size, threads or not, a transposed view) answers as
    ``isfinite(a).all()``, wherever the bad value sits (first, last, at a slice's edge)."""
    from minissd.kernels import batch_threads

    from minissd.autograd import functional as F

    a = np.full((2, n), 3e38, np.float32)  # huge but finite
    if bad is not None:
        a.flat[int(where * (a.size - 1))] = bad
    a = a if contiguous else a.T
    saved = F.FINITE_CHECK_SLICE, batch_threads.MIN_PARALLEL_WORK
    F.FINITE_CHECK_SLICE = slice_
    batch_threads.MIN_PARALLEL_WORK = 0 if threads else saved[1]
    try:
        assert F.all_finite(np, a) is bool(np.isfinite(a).all())
    finally:
        F.FINITE_CHECK_SLICE, batch_threads.MIN_PARALLEL_WORK = saved


def test_cross_entropy_bad_target():
    with pytest.raises(ValueError, match=r"cross_entropy: target must be integers of shape "
                                         r"\(4,\)"):
        ag.cross_entropy(t(4, 3), np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 3\)"):
        ag.cross_entropy(t(4, 3), np.array([0, 1, 2, 3]))


def test_matmul_needs_matrices():
    with pytest.raises(ValueError, match=r"matmul: both inputs need >= 2 dims"):
        t(3) @ t(3, 2)


def test_backward_on_non_scalar_needs_grad():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"grad must be given .* shape \(3,\)"):
        (x * 2).backward()


def test_no_grad_records_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    with ag.no_grad():
        y = x * 2
    assert not y.requires_grad


def test_detach_and_accumulation():
    x = Tensor(np.ones(2), requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()  # gradients accumulate until zero_grad
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])
    y = x.detach()
    assert not y.requires_grad and y.data is x.data
