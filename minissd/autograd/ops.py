"""Elementwise functions, reductions and joins, each forward next to its backward.

Every function takes Tensors (plain arrays and numbers are treated as constants) and returns a
Tensor built with ``Tensor.from_op``. Shapes follow NumPy's rules, broadcasting included.
"""

from __future__ import annotations

from .tensor import Tensor, as_tensor, unbroadcast

# ----------------------------------------------------------------- elementwise


def exp(x):
    x = as_tensor(x)
    y = x.xp.exp(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g * y,), "exp")


def log(x):
    x = as_tensor(x)
    return Tensor.from_op(x.xp.log(x.data), (x,), lambda g: (g / x.data,), "log")


def sqrt(x):
    x = as_tensor(x)
    y = x.xp.sqrt(x.data)
    return Tensor.from_op(y, (x,), lambda g: (g / (2 * y),), "sqrt")


def abs(x):  # noqa: A001 - the name a learner looks for
    x = as_tensor(x)
    return Tensor.from_op(x.xp.abs(x.data), (x,), lambda g: (g * x.xp.sign(x.data),), "abs")


def relu(x):
    x = as_tensor(x)
    y = x.xp.maximum(x.data, 0)
    return Tensor.from_op(y, (x,), lambda g: (g * (x.data > 0),), "relu")


def where(condition, a, b):
    """``condition ? a : b`` elementwise; ``condition`` is a boolean array (no gradient)."""
    a = as_tensor(a)
    b = as_tensor(b, like=a)
    cond = condition.data if isinstance(condition, Tensor) else condition
    xp = a.xp
    cond = xp.asarray(cond, dtype=bool)
    out = xp.where(cond, a.data, b.data)
    return Tensor.from_op(
        out, (a, b),
        lambda g: (unbroadcast(xp.where(cond, g, 0), a.shape),
                   unbroadcast(xp.where(cond, 0, g), b.shape)), "where")


def maximum(a, b):
    """Elementwise max; on ties the gradient goes to ``a``."""
    a = as_tensor(a)
    b = as_tensor(b, like=a)
    return where(a.data >= b.data, a, b)


# ------------------------------------------------------------------ reductions


def _axes(axis, ndim):
    """The reduced axes as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,))))


def _keep(g, x_ndim, axis, keepdims):
    """Reinsert the reduced axes of ``g`` (as size 1) so it broadcasts against the input."""
    if keepdims:
        return g
    shape = list(g.shape)
    for ax in _axes(axis, x_ndim):
        shape.insert(ax, 1)
    return g.reshape(shape)


def sum(x, axis=None, keepdims=False):  # noqa: A001
    x = as_tensor(x)
    xp = x.xp
    return Tensor.from_op(
        x.data.sum(axis=axis, keepdims=keepdims), (x,),
        lambda g: (xp.broadcast_to(_keep(g, x.ndim, axis, keepdims), x.shape).copy(),), "sum")


def mean(x, axis=None, keepdims=False):
    x = as_tensor(x)
    count = 1
    for ax in _axes(axis, x.ndim):
        count *= x.shape[ax]
    return sum(x, axis, keepdims) * (1.0 / count)


def max(x, axis=None, keepdims=False):  # noqa: A001
    """Max over axes; tied maxima share the gradient equally."""
    x = as_tensor(x)
    y = x.data.max(axis=axis, keepdims=keepdims)

    def backward(g):
        winners = x.data == _keep(y, x.ndim, axis, keepdims)
        share = winners / winners.sum(axis=axis, keepdims=True)
        return (share.astype(x.dtype) * _keep(g, x.ndim, axis, keepdims),)

    return Tensor.from_op(y, (x,), backward, "max")


# ----------------------------------------------------------------------- joins


def concatenate(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    xp = tensors[0].xp
    ax = axis % tensors[0].ndim
    bounds = [0]
    for t in tensors:
        bounds.append(bounds[-1] + t.shape[ax])

    def backward(g):
        index = [slice(None)] * g.ndim
        grads = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            index[ax] = slice(lo, hi)
            grads.append(g[tuple(index)])
        return tuple(grads)

    data = xp.concatenate([t.data for t in tensors], axis=ax)
    return Tensor.from_op(data, tensors, backward, "concatenate")


def stack(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    return concatenate([t.reshape(_insert_one(t.shape, axis)) for t in tensors], axis=axis)


def _insert_one(shape, axis):
    shape = list(shape)
    shape.insert(axis % (len(shape) + 1), 1)
    return tuple(shape)
