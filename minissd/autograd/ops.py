"""The ops: arithmetic, elementwise functions, reductions, shapes and joins, each forward next to
its backward.

Every function takes Tensors (plain arrays and numbers are treated as constants, in the dtype of
the other operand) and returns a Tensor built with ``Tensor.from_op``. Shapes follow NumPy's
rules, broadcasting included. The bottom of this file makes them ``Tensor``'s operators and
methods (``a + b`` is ``add(a, b)``, ``a.sum()`` is ``sum(a)``).
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor, as_tensor, unbroadcast

# ------------------------------------------------------------------ arithmetic


def _operands(a, b):
    """Both operands as Tensors; a plain number or array takes the dtype of the other."""
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    b = as_tensor(b)
    return as_tensor(a, like=b), b


def add(a, b):
    a, b = _operands(a, b)
    return Tensor.from_op(
        a.data + b.data, (a, b),
        lambda g: (unbroadcast(g, a.shape), unbroadcast(g, b.shape)), "add")


def sub(a, b):
    a, b = _operands(a, b)
    return Tensor.from_op(
        a.data - b.data, (a, b),
        lambda g: (unbroadcast(g, a.shape), unbroadcast(-g, b.shape)), "sub")


def mul(a, b):
    a, b = _operands(a, b)
    return Tensor.from_op(
        a.data * b.data, (a, b),
        lambda g: (unbroadcast(g * b.data, a.shape), unbroadcast(g * a.data, b.shape)), "mul")


def div(a, b):
    a, b = _operands(a, b)
    return Tensor.from_op(
        a.data / b.data, (a, b),
        lambda g: (unbroadcast(g / b.data, a.shape),
                   unbroadcast(-g * a.data / (b.data * b.data), b.shape)), "div")


def neg(x):
    x = as_tensor(x)
    return Tensor.from_op(-x.data, (x,), lambda g: (-g,), "neg")


def power(x, p):
    """``x ** p`` for a Python number ``p``."""
    if isinstance(p, Tensor):
        raise TypeError("pow: the exponent must be a Python number, not a Tensor")
    x = as_tensor(x)
    return Tensor.from_op(
        x.data ** p, (x,), lambda g: (g * p * x.data ** (p - 1),), "pow")


def matmul(a, b):
    a, b = _operands(a, b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: both inputs need >= 2 dims, got {a.shape} and {b.shape}")
    xp = a.xp

    def backward(g):
        ga = g @ xp.swapaxes(b.data, -1, -2)
        gb = xp.swapaxes(a.data, -1, -2) @ g
        return unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)

    return Tensor.from_op(a.data @ b.data, (a, b), backward, "matmul")

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


#: Ops whose backward never reads their output array: ``relu(x, inplace=True)`` may overwrite it.
#: (``add``: a batch norm in eval mode ends with one.)
OUTPUT_UNUSED_BY_BACKWARD = ("conv2d", "batch_norm", "sync_batch_norm", "add")


def relu(x, inplace=False):
    """``max(x, 0)``. The backward needs only where the output is positive, so it keeps the
    output, not ``x``.

    ``inplace=True`` writes the result into ``x``'s array, as PyTorch's ``ReLU(inplace=True)``:
    a conv + ReLU then keeps one activation instead of two (SSD300's base: 0.7 GB less at batch
    8). Allowed only on the output of an op whose backward does not read it
    (``OUTPUT_UNUSED_BY_BACKWARD``), never on data the caller may still read."""
    x = as_tensor(x)
    if inplace and x._op not in OUTPUT_UNUSED_BY_BACKWARD:
        raise ValueError(f"relu(inplace=True): x must be the output of one of "
                         f"{OUTPUT_UNUSED_BY_BACKWARD}, got {x._op or 'an input tensor'!r}")
    y = x.xp.maximum(x.data, 0, out=x.data if inplace else None)
    # g * (y > 0), written into g: the walk hands relu a g nothing else holds (``from_op``)
    return Tensor.from_op(y, (x,), lambda g: (x.xp.multiply(g, y > 0, out=g),), "relu",
                          private_grads=True, overwrites_grad=True)


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


# ----------------------------------------------------------------------- shapes


def reshape(x, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    x = as_tensor(x)
    return Tensor.from_op(
        x.data.reshape(shape), (x,), lambda g: (g.reshape(x.shape),), "reshape")


def transpose(x, *axes):
    axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    x = as_tensor(x)
    axes = tuple(axes) if axes else tuple(reversed(range(x.ndim)))
    inverse = tuple(np.argsort(axes))
    return Tensor.from_op(
        x.data.transpose(axes), (x,), lambda g: (g.transpose(inverse),), "transpose")


def getitem(x, index):
    """``x[index]``: slicing and integer-array indexing (gather); the backward scatters-adds."""
    if isinstance(index, Tensor):
        index = index.data
    x = as_tensor(x)
    xp = x.xp

    def backward(g):
        full = xp.zeros_like(x.data)
        _scatter_add(xp, full, index, g)
        return (full,)

    return Tensor.from_op(x.data[index], (x,), backward, "getitem")


def _scatter_add(xp, target, index, values):
    """``target[index] += values`` with repeated indices summed (NumPy ``add.at``)."""
    if xp is np:
        np.add.at(target, index, values)
    else:  # CuPy
        import cupyx

        cupyx.scatter_add(target, index, values)


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


# ------------------------------------------------------- Tensor's operators and methods
# Attached here rather than written in tensor.py, so that the core does not import the ops.

Tensor.__add__ = add
Tensor.__radd__ = lambda self, other: add(other, self)
Tensor.__sub__ = sub
Tensor.__rsub__ = lambda self, other: sub(other, self)
Tensor.__mul__ = mul
Tensor.__rmul__ = lambda self, other: mul(other, self)
Tensor.__truediv__ = div
Tensor.__rtruediv__ = lambda self, other: div(other, self)
Tensor.__neg__ = neg
Tensor.__pow__ = power
Tensor.__matmul__ = matmul
Tensor.__getitem__ = getitem
Tensor.reshape = reshape
Tensor.transpose = transpose
Tensor.T = property(transpose)
Tensor.sum = sum
Tensor.mean = mean
Tensor.max = max
Tensor.exp = exp
Tensor.log = log
