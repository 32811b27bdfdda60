"""What the graph keeps alive: ``relu(inplace=True)`` shares its input's array, and ``backward``
lets go of each node's arrays once it has walked past it (as PyTorch frees saved activations)."""

import gc
import weakref

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minissd import autograd as ag
from minissd.autograd import Tensor, gradcheck

seeds = st.integers(0, 2**32 - 1)


def leaf(shape, seed):
    return Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


@given(seed=seeds, n=st.integers(1, 2), c=st.integers(1, 3), o=st.integers(1, 3),
       size=st.integers(3, 6), bias=st.booleans())
def test_inplace_relu_after_conv_has_the_gradient_of_plain_relu(seed, n, c, o, size, bias):
    x, w, b = leaf((n, c, size, size), seed), leaf((o, c, 3, 3), seed + 1), leaf((o,), seed + 2)
    b = b if bias else None

    def net(inplace):
        return lambda x, w: ag.relu(ag.conv2d(x, w, b, padding=1), inplace=inplace)

    assert gradcheck(net(True), x, w)
    plain, inplace = net(False)(x, w), net(True)(x, w)
    np.testing.assert_array_equal(plain.data, inplace.data)
    g = np.random.default_rng(seed + 3).standard_normal(plain.shape)
    grads = []
    for out in (plain, inplace):
        x.zero_grad()
        w.zero_grad()
        out.backward(g)
        grads.append((x.grad, w.grad))
    for a, e in zip(*grads, strict=True):
        np.testing.assert_array_equal(a, e)


def test_inplace_relu_writes_into_the_convolutions_array():
    x, w = leaf((1, 2, 5, 5), 0), leaf((3, 2, 3, 3), 1)
    pre = ag.conv2d(x, w, padding=1)
    before = pre.data.copy()
    out = ag.relu(pre, inplace=True)
    assert out.data is pre.data  # one array for both: the pre-activation is not kept
    np.testing.assert_array_equal(out.data, np.maximum(before, 0))


@pytest.mark.parametrize("make", [
    lambda x: x,                # the caller's own tensor
    lambda x: ag.exp(x),        # exp's backward reads its output
    lambda x: ag.softmax(x),
    lambda x: Tensor(x.data),  # a plain input
], ids=["leaf", "exp", "softmax", "input"])
def test_inplace_relu_refuses_data_that_may_still_be_read(make):
    x = make(leaf((2, 3), 0))
    before = x.data.copy()
    with pytest.raises(ValueError, match=r"relu\(inplace=True\): x must be the output of one of"):
        ag.relu(x, inplace=True)
    np.testing.assert_array_equal(x.data, before)  # untouched


def test_backward_frees_the_arrays_of_nodes_it_has_walked_past():
    """When backward reaches the bottom of a net, the activations of the layers above, which no
    one but the graph held, are gone (the old walk kept every node to the end)."""
    seen = {}

    def watch(t):  # identity; its backward, the last one run, records whether h2 still lives
        def backward(g):
            gc.collect()
            seen["h2 alive"] = upper() is not None
            return (g,)
        return Tensor.from_op(t.data, (t,), backward, "watch")

    x = leaf((1, 2, 6, 6), 0)
    w1, w2 = leaf((2, 2, 3, 3), 1), leaf((2, 2, 3, 3), 2)
    h1 = ag.relu(ag.conv2d(watch(x), w1, padding=1), inplace=True)
    h2 = ag.relu(ag.conv2d(h1, w2, padding=1), inplace=True)
    upper = weakref.ref(h2)
    out = (h2 * h2).sum()
    del h1, h2
    out.backward()
    assert seen == {"h2 alive": False}
    assert x.grad is not None and w1.grad is not None


def _spy(t, log, key):
    """Wrap ``t``'s backward to record the ``g`` it is handed and the arrays it returns."""
    inner = t._backward_fn

    def backward(g):
        log[key + " got"] = g
        out = inner(g)
        log[key + " gave"] = out
        return out
    t._backward_fn = backward
    return t


def test_relu_backward_writes_into_a_gradient_only_the_walk_holds():
    """conv -> relu -> max pool: the pool's fresh input gradient is masked in its own array and
    passed on to the convolution (no new array per ReLU: each one is page faults)."""
    x, w = leaf((2, 2, 6, 6), 0), leaf((3, 2, 3, 3), 1)
    log = {}
    pre = _spy(ag.conv2d(x, w, padding=1), log, "conv")
    pooled = _spy(ag.max_pool2d(ag.relu(pre, inplace=True), 2), log, "pool")
    mask = pre.data > 0
    g = np.random.default_rng(2).standard_normal(pooled.shape)
    pooled.backward(g)
    (from_pool,) = log["pool gave"]
    assert log["conv got"] is from_pool  # the same array, masked in place
    np.testing.assert_array_equal(from_pool, np.where(mask, from_pool, 0))


@given(seed=seeds, twice=st.booleans())
def test_relu_never_overwrites_a_gradient_someone_else_holds(seed, twice):
    """``relu(a) + b``: add hands the same array to both sides; relu must mask a copy, so that
    ``b``'s gradient and the caller's ``grad`` array stay whole (also with ``relu(a)`` twice)."""
    a, b = leaf((3, 4), seed), leaf((3, 4), seed + 1)
    s = ag.relu(a) + (ag.relu(a) if twice else b)
    grad = np.random.default_rng(seed + 2).standard_normal((3, 4))
    given_grad = grad.copy()
    s.backward(grad)
    np.testing.assert_array_equal(grad, given_grad)  # the caller's array is untouched
    mask = a.data > 0
    np.testing.assert_array_equal(a.grad, given_grad * mask + (given_grad * mask if twice else 0))
    if not twice:
        np.testing.assert_array_equal(b.grad, given_grad)


def test_relu_backward_in_place_keeps_a_retained_graph_whole():
    x, w = leaf((1, 2, 5, 5), 0), leaf((2, 2, 3, 3), 1)
    out = ag.max_pool2d(ag.relu(ag.conv2d(x, w, padding=1), inplace=True), 2).sum()
    out.backward(retain_graph=True)
    first = (x.grad.copy(), w.grad.copy())
    out.backward()
    np.testing.assert_array_equal(x.grad, 2 * first[0])
    np.testing.assert_array_equal(w.grad, 2 * first[1])
