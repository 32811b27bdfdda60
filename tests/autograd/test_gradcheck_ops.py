"""Every autograd op, gradient-checked (float64 central differences) on hypothesis-drawn shapes
and hyper-parameters."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

from minissd import autograd as ag
from minissd.autograd import Tensor, gradcheck

seeds = st.integers(0, 2**32 - 1)
small_shapes = array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def leaf(shape, seed, low=None, away_from_zero=0.0):
    """A float64 leaf tensor of standard-normal values (optionally kept away from kinks)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if away_from_zero:
        x = np.where(np.abs(x) < away_from_zero, np.sign(x + 1e-300) * away_from_zero, x)
    if low is not None:
        x = np.abs(x) + low
    return Tensor(x, requires_grad=True)


# ------------------------------------------------------------------ arithmetic

@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3), seed=seeds,
       op=st.sampled_from(["add", "sub", "mul", "div"]))
def test_binary_broadcasting(shapes, seed, op):
    a = leaf(shapes.input_shapes[0], seed)
    b = leaf(shapes.input_shapes[1], seed + 1, low=0.5 if op == "div" else None)
    fn = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
          "mul": lambda a, b: a * b, "div": lambda a, b: a / b}[op]
    assert gradcheck(fn, a, b)


@given(shape=small_shapes, seed=seeds, c=st.floats(-3, 3))
def test_scalar_operands_and_neg(shape, seed, c):
    a = leaf(shape, seed, low=0.5)
    assert gradcheck(lambda a: c - a, a)
    assert gradcheck(lambda a: c / a, a)
    assert gradcheck(lambda a: -a * c + c, a)


@given(shape=small_shapes, seed=seeds, p=st.sampled_from([-1.5, -1, 0.5, 2, 3]))
def test_pow(shape, seed, p):
    assert gradcheck(lambda a: a ** p, leaf(shape, seed, low=0.5))


@given(batch=st.sampled_from([(), (2,), (2, 1)]), n=st.integers(1, 4), k=st.integers(1, 4),
       m=st.integers(1, 4), seed=seeds, broadcast_b=st.booleans())
def test_matmul(batch, n, k, m, seed, broadcast_b):
    a = leaf(batch + (n, k), seed)
    b = leaf((k, m) if broadcast_b else batch + (k, m), seed + 1)
    assert gradcheck(lambda a, b: a @ b, a, b)


# ------------------------------------------------------------------ elementwise

@given(shape=small_shapes, seed=seeds, fn=st.sampled_from(["exp", "log", "sqrt", "abs", "relu"]))
def test_unary(shape, seed, fn):
    positive = fn in ("log", "sqrt")
    a = leaf(shape, seed, low=0.5 if positive else None, away_from_zero=0.05)
    assert gradcheck(getattr(ag, fn), a)


@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3), seed=seeds)
def test_where_and_maximum(shapes, seed):
    a = leaf(shapes.input_shapes[0], seed)
    b = leaf(shapes.input_shapes[1], seed + 1)
    cond = np.random.default_rng(seed).random(shapes.result_shape) > 0.5
    assert gradcheck(lambda a, b: ag.where(cond, a, b), a, b)
    # keep a and b apart so that no element sits on the kink of maximum
    b2 = Tensor(b.data + np.where(np.abs(b.data - a.data.mean()) < 0.05, 0.2, 0.0),
                requires_grad=True)
    assert gradcheck(lambda a, b: ag.maximum(a, b), a, b2)


# ------------------------------------------------------------------ reductions

@st.composite
def shape_and_axis(draw):
    shape = draw(array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
    axes = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                          st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True)
                          .map(tuple)))
    return shape, axes


@given(sa=shape_and_axis(), seed=seeds, keepdims=st.booleans(),
       fn=st.sampled_from(["sum", "mean", "max"]))
def test_reductions(sa, seed, keepdims, fn):
    shape, axis = sa
    a = leaf(shape, seed)
    assert gradcheck(lambda a: getattr(ag, fn)(a, axis=axis, keepdims=keepdims), a)


def test_max_ties_share_gradient():
    a = Tensor(np.array([1.0, 3.0, 3.0]), requires_grad=True)
    ag.max(a).backward()
    np.testing.assert_allclose(a.grad, [0.0, 0.5, 0.5])


# ------------------------------------------------------------------ shapes

@given(shape=array_shapes(min_dims=1, max_dims=4, max_side=4), seed=seeds, data=st.data())
def test_reshape_transpose(shape, seed, data):
    a = leaf(shape, seed)
    perm = data.draw(st.permutations(range(len(shape))))
    assert gradcheck(lambda a: a.transpose(perm).reshape(-1), a)


@given(shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5), seed=seeds,
       data=st.data())
def test_slicing(shape, seed, data):
    a = leaf(shape, seed)
    index = tuple(slice(data.draw(st.integers(0, n - 1)), None, data.draw(st.integers(1, 2)))
                  for n in shape)
    assert gradcheck(lambda a: a[index], a)


@given(n=st.integers(1, 5), width=st.integers(1, 3), seed=seeds,
       idx=st.lists(st.integers(0, 4), min_size=0, max_size=8))
def test_gather_with_repeated_indices(n, width, seed, idx):
    a = leaf((n, width), seed)
    index = np.array([i % n for i in idx], dtype=np.int64)
    assert gradcheck(lambda a: a[index] * 1.0, a)


@given(seed=seeds, n=st.integers(1, 3), sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3),
       axis=st.integers(0, 1))
def test_concatenate_and_stack(seed, n, sizes, axis):
    parts = [leaf((s, n) if axis == 0 else (n, s), seed + i) for i, s in enumerate(sizes)]
    assert gradcheck(lambda *p: ag.concatenate(p, axis=axis), *parts)
    same = [leaf((n, 2), seed + i) for i in range(len(sizes))]
    assert gradcheck(lambda *p: ag.stack(p, axis=axis), *same)


# ------------------------------------------------------------------ nn ops

@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=4), seed=seeds, data=st.data())
def test_softmax_log_softmax(shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    a = leaf(shape, seed)
    assert gradcheck(lambda a: ag.softmax(a, axis=axis), a)
    assert gradcheck(lambda a: ag.log_softmax(a, axis=axis), a)


@given(batch=array_shapes(min_dims=1, max_dims=2, max_side=4), c=st.integers(1, 5), seed=seeds)
def test_cross_entropy(batch, c, seed):
    logits = leaf(batch + (c,), seed)
    target = np.random.default_rng(seed).integers(0, c, size=batch)
    assert gradcheck(lambda x: ag.cross_entropy(x, target), logits)
    # the value: -log softmax at the target
    ref = -np.take_along_axis(ag.log_softmax(logits).data, target[..., None], -1)[..., 0]
    np.testing.assert_allclose(ag.cross_entropy(logits, target).data, ref, rtol=1e-12)


@given(shape=small_shapes, seed=seeds, beta=st.sampled_from([0.5, 1.0, 2.0]))
def test_smooth_l1(shape, seed, beta):
    a, b = leaf(shape, seed), leaf(shape, seed + 1)
    d = a.data - b.data  # keep |d| away from the kink at beta
    b = Tensor(np.where(np.abs(np.abs(d) - beta) < 0.05, b.data + 0.2, b.data),
               requires_grad=True)
    assert gradcheck(lambda a, b: ag.smooth_l1(a, b, beta), a, b)


@st.composite
def conv_case(draw):
    k = draw(st.integers(1, 3))
    d = draw(st.integers(1, 3))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, 3))
    extent = d * (k - 1) + 1
    smallest = max(1, extent - 2 * p)  # the input must hold one dilated kernel
    h = draw(st.integers(smallest, smallest + 4))
    w = draw(st.integers(smallest, smallest + 4))
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)), o=draw(st.integers(1, 3)),
                h=h, w=w, k=k, stride=s, padding=p, dilation=d, bias=draw(st.booleans()))


@given(case=conv_case(), seed=seeds)
def test_conv2d(case, seed):
    """The readable conv2d (im2col, col2im); tests/kernels holds the fast kernels to it."""
    x = leaf((case["n"], case["c"], case["h"], case["w"]), seed)
    w = leaf((case["o"], case["c"], case["k"], case["k"]), seed + 1)
    inputs = (x, w, leaf((case["o"],), seed + 2)) if case["bias"] else (x, w)
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    if case["bias"]:
        assert gradcheck(lambda x, w, b: ag.conv2d_reference(x, w, b, **kw), *inputs)
    else:
        assert gradcheck(lambda x, w: ag.conv2d_reference(x, w, None, **kw), *inputs)


@st.composite
def pool_case(draw):
    k = draw(st.integers(1, 3))
    return dict(k=k, stride=draw(st.integers(1, 3)), padding=draw(st.integers(0, k // 2)),
                ceil_mode=draw(st.booleans()), h=draw(st.integers(k, k + 5)),
                w=draw(st.integers(k, k + 5)), n=draw(st.integers(1, 2)), c=draw(st.integers(1, 2)))


@given(case=pool_case(), seed=seeds)
def test_max_pool2d(case, seed):
    """The readable max_pool2d; tests/kernels holds the fast kernel to it."""
    x = leaf((case["n"], case["c"], case["h"], case["w"]), seed)
    assert gradcheck(lambda x: ag.max_pool2d_reference(x, case["k"], case["stride"],
                                                       case["padding"], case["ceil_mode"]), x)


@given(shape=array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=4), seed=seeds)
def test_l2_normalize(shape, seed):
    # away from zero: with one channel and |x| ~ 1e-4 the function is a near-step (slope
    # eps / |x|^3) and central differences with step 1e-6 miss by more than the tolerance
    x = leaf(shape, seed, away_from_zero=1e-2)
    assert gradcheck(lambda x: ag.l2_normalize(x, axis=1), x)
    y = ag.l2_normalize(x, axis=1).data
    big = (x.data ** 2).sum(axis=1) > 1e-4  # away from the eps floor: unit length
    np.testing.assert_allclose((y * y).sum(axis=1)[big], 1.0, rtol=1e-5)


# ------------------------------------------------------------------ the checker itself

def test_gradcheck_reports_a_wrong_backward():
    def bad_square(x):  # forward x^2, backward claims 3x
        return Tensor.from_op(x.data ** 2, (x,), lambda g: (3 * x.data * g,), "bad_square")

    x = leaf((3,), 0)
    with pytest.raises(ag.GradcheckError, match=r"input 0 .* index \(\d+,\): analytic .* numeric"):
        gradcheck(bad_square, x)


def test_gradcheck_needs_float64():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(ag.exp, Tensor(np.ones(2, np.float32), requires_grad=True))
