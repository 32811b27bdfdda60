"""The autograd core: a ``Tensor`` that remembers how it was made, and ``backward``.

Every op builds its output with ``Tensor.from_op(data, parents, backward_fn, name)``, where
``backward_fn(g)`` maps the gradient of the output to one gradient per parent (``None`` where a
parent needs none). ``Tensor.backward`` walks the graph in reverse topological order, calling each
node's ``backward_fn`` once and summing the gradients that reach a node along several paths.
A ``backward_fn`` normally leaves ``g`` alone (other nodes may hold the same array); one made with
``overwrites_grad=True`` (ReLU's) writes its result into ``g``, and the walk hands it a ``g``
that nothing else holds, copying where it cannot tell (see ``from_op``).

The arithmetic operators (``a + b``, ``a @ b``, ``a[i]``, ``a.reshape(...)``, ``a.sum()``, ...)
are the functions of ``ops.py``, which attaches them to ``Tensor`` when the package is imported:
this file is the core alone and imports no op.

The data is a NumPy or CuPy array (``minissd.backend``); the ops never ask which, they use the
array module of their inputs. Only floating tensors take part in differentiation: float32 (the
training dtype) and float64 (gradient checks, reference runs).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..backend import get_array_module, to_numpy

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record no graph (inference, optimiser updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def _check_dtype(data, what="Tensor"):
    if data.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{what}: dtype {data.dtype} is not supported; minissd tensors are float32 or float64 "
            f"(got an array of shape {tuple(data.shape)})"
        )


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


class Tensor:
    """An array plus the record of the op that produced it.

    Attributes:
        data: the array (NumPy or CuPy), float32 or float64.
        grad: after ``backward``, the gradient of the output w.r.t. this tensor (same shape), for
            tensors with ``requires_grad``; gradients accumulate across ``backward`` calls until
            ``zero_grad``.
        requires_grad: whether gradients flow to this tensor.
    """

    __array_ufunc__ = None  # make `ndarray * Tensor` call Tensor.__rmul__, not NumPy

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        if isinstance(data, (int, float, list, tuple)) and not isinstance(data, np.generic):
            data = np.asarray(data, dtype=np.float32)  # Python numbers: the training dtype
        data = get_array_module(data).asarray(data)
        _check_dtype(data)
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents: tuple[Tensor, ...] = ()
        self._backward_fn = None
        self._op = ""
        self._private_grads = self._overwrites_grad = False

    @classmethod
    def from_op(cls, data, parents, backward_fn, op: str, *, private_grads: bool = False,
                overwrites_grad: bool = False) -> Tensor:
        """The output of an op; records the graph only if some parent needs a gradient.

        ``private_grads``: each array ``backward_fn`` returns is held by nothing else (made by
        the backward, or the ``g`` it was handed to overwrite), so a parent's backward may write
        into it. ``overwrites_grad``: ``backward_fn`` writes into ``g``; ``backward`` then hands
        it an array nothing else holds (a gradient from a ``private_grads`` op or a sum of
        gradients, else a copy). Fresh arrays cost page faults: on this project's VM the new
        46 MB array of a 300x300 map's ReLU backward (batch 2) took 7-16 ms, or 440-600 ms in
        about half the calls."""
        out = cls.__new__(cls)
        out.data, out.grad, out._op = data, None, op
        out.requires_grad = _grad_enabled and any(p.requires_grad for p in parents)
        out._parents = tuple(parents) if out.requires_grad else ()
        out._backward_fn = backward_fn if out.requires_grad else None
        out._private_grads, out._overwrites_grad = private_grads, overwrites_grad
        return out

    # ----------------------------------------------------------------- graph
    def backward(self, grad=None, retain_graph: bool = False):
        """Reverse-mode differentiation from this tensor.

        Args:
            grad: gradient of the final objective w.r.t. this tensor; defaults to 1 for a
                one-element tensor.
            retain_graph: keep the graph so that ``backward`` can be called again; by default
                the graph is freed as it is walked, releasing the saved activations.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no graph to walk)")
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: grad must be given for a non-scalar output of shape {self.shape}"
                )
            grad = xp.ones_like(self.data)
        grad = xp.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)

        order, seen = [], set()

        def visit(node):  # iterative depth-first search: deep nets overflow recursion
            stack = [(node, False)]
            while stack:
                n, expanded = stack.pop()
                if expanded:
                    order.append(n)
                elif id(n) not in seen:
                    seen.add(id(n))
                    stack.append((n, True))
                    stack.extend((p, False) for p in n._parents if id(p) not in seen)

        visit(self)
        grads = {id(self): (grad, False)}  # per node: its gradient, and whether only we hold it
        while order:  # outputs before inputs; popped, so a walked node's arrays can be freed
            node = order.pop()
            g, private = grads.pop(id(node), (None, False))
            if g is None:
                continue
            if node._backward_fn is None:  # a leaf: keep its gradient
                node.grad = g if node.grad is None else node.grad + g
                continue
            if node._overwrites_grad and not private:
                g = g.copy()  # its backward writes into g: give it an array of its own
            for parent, pg in zip(node._parents, node._backward_fn(g)):
                if pg is None or not parent.requires_grad:
                    continue
                if pg.shape != parent.shape:
                    raise RuntimeError(
                        f"backward of {node._op!r}: gradient shape {pg.shape} does not match "
                        f"input shape {parent.shape}"
                    )
                prev = grads.get(id(parent))
                grads[id(parent)] = ((pg, node._private_grads) if prev is None
                                     else (prev[0] + pg, True))
            if not retain_graph:
                node._parents, node._backward_fn = (), None

    def zero_grad(self):
        self.grad = None

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self.data)

    # ------------------------------------------------------------ properties
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    @property
    def xp(self):
        return get_array_module(self.data)

    def numpy(self) -> np.ndarray:
        return to_numpy(self.data)

    def item(self) -> float:
        return float(self.data.reshape(-1)[0]) if self.data.size == 1 else self._not_scalar()

    def _not_scalar(self):
        raise ValueError(f"item: tensor of shape {self.shape} is not a single value")

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{grad})"


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """``x`` as a Tensor; plain arrays and numbers become constants (in ``like``'s dtype)."""
    if isinstance(x, Tensor):
        return x
    if like is not None:
        return Tensor(like.xp.asarray(x, dtype=like.dtype))
    return Tensor(x)
