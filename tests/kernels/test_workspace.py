"""Scratch buffers reused from call to call (``minissd.kernels.workspace``): one memory per name
and thread, grown on demand; and a kernel's numbers do not depend on what a scratch buffer held
before (Winograd's transformed weights and weight-gradient sums live in them)."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minissd.kernels import winograd as _winograd
from minissd.kernels import workspace

from minissd.autograd import Tensor
from minissd.autograd import functional as F


def test_a_name_gives_the_same_memory_each_call_and_grows_on_demand():
    a = workspace.scratch(np, "test.a", (3, 4), np.float32)
    assert a.shape == (3, 4) and a.dtype == np.float32 and a.flags.c_contiguous
    b = workspace.scratch(np, "test.a", 12, np.float32)
    assert np.shares_memory(a, b)
    big = workspace.scratch(np, "test.a", (100, 100), np.float64)
    assert big.shape == (100, 100) and big.dtype == np.float64
    small = workspace.scratch(np, "test.a", 5, np.int32)  # fits the grown buffer
    assert np.shares_memory(big, small)
    other = workspace.scratch(np, "test.b", (3, 4), np.float32)
    assert not np.shares_memory(other, small)


def test_each_thread_has_its_own_buffers():
    mine = workspace.scratch(np, "test.thread", 1000, np.float32)
    theirs = []
    t = threading.Thread(target=lambda: theirs.append(
        workspace.scratch(np, "test.thread", 1000, np.float32)))
    t.start()
    t.join()
    assert not np.shares_memory(mine, theirs[0])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([1, 2]), f4=st.booleans(),
       poison=st.sampled_from([np.nan, np.inf, 1e30]))
def test_winograd_does_not_read_what_its_scratch_held(seed, n, f4, poison):
    """The transformed weights (``winograd.U``) and a one-chunk call's weight-gradient sum
    (``winograd.dU``) are written before they are read: with the buffers filled with ``poison``
    beforehand, forward and gradients are bitwise those computed with fresh arrays."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6, 9, 9)).astype(np.float32)
    w = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)
    g = rng.standard_normal((n, 5, 9, 9)).astype(np.float32)

    def run():
        xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
        out = F.conv2d(xt, wt, None, 1, 1)
        out.backward(g)
        return out.data, xt.grad, wt.grad

    with pytest.MonkeyPatch.context() as m:  # (hypothesis refuses function-scoped fixtures)
        m.setattr(_winograd, "MIN_CHANNELS", 0)
        side = 0 if f4 else 10**9
        m.setattr(_winograd, "MIN_F4_SIDE", side)
        m.setattr(_winograd, "MIN_F4_TILES", side)
        for name, size in (("winograd.U", 36 * 6 * 6), ("winograd.dU", 36 * 6 * 6)):
            workspace.scratch(np, name, size, np.float64).fill(poison)
        poisoned = run()
        m.setattr(workspace, "scratch", lambda xp, name, shape, dtype: xp.empty(shape, dtype))
        fresh = run()
    for a, b, what in zip(poisoned, fresh, ("output", "input grad", "weight grad")):
        assert np.isfinite(a).all(), what
        np.testing.assert_array_equal(a, b, err_msg=what)


def test_cupy_gets_plain_arrays():
    class FakeCupy:
        __name__ = "cupy"

        @staticmethod
        def empty(shape, dtype):
            return ("fresh", shape, dtype)

    assert workspace.scratch(FakeCupy, "test.cupy", (2, 3), np.float32) == (
        "fresh", (2, 3), np.float32)


if __name__ == "__main__":
    pytest.main([__file__])
