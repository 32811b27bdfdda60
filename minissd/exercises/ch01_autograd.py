"""Checkers for chapter 01 (autograd): the backward of a new op.

``check_sigmoid(sigmoid)`` and ``check_add_channel_bias(add_channel_bias)`` run the learner's op
forward against NumPy, make sure it is one node of the graph (built with ``Tensor.from_op``, so
the backward is the learner's own), and then gradient-check it on input shapes drawn by
hypothesis. When a shape fails, hypothesis shrinks it to the smallest failing one, and the
verdict names that shape, the element and the analytic vs numeric derivative.

``smallest_failure`` is the search helper the other chapters' checkers reuse.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from ..autograd import GradcheckError, Tensor, gradcheck
from . import run_safely, verdict

SEARCH_SETTINGS = settings(max_examples=40, database=None, derandomize=True,
                           suppress_health_check=list(HealthCheck))


def smallest_failure(strategy, problem, max_examples=40):
    """Search ``strategy`` for an example where ``problem(example)`` returns a message.

    ``problem(example)`` returns None when the learner's answer is right on that example and a
    sentence saying what is wrong otherwise (it must catch the learner's exceptions itself).
    Returns ``(example, message)`` for the smallest failing example hypothesis can shrink to,
    or None when all ``max_examples`` examples pass. Deterministic (derandomized, no database).
    """
    try:
        example = find(strategy, lambda ex: problem(ex) is not None,
                       settings=settings(SEARCH_SETTINGS, max_examples=max_examples))
    except NoSuchExample:
        return None
    return example, problem(example)


def _describe_exception(exc):
    return f"it raised {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------- sigmoid


def _sigmoid_reference(x):
    return np.exp(-np.logaddexp(0.0, -x))  # 1 / (1 + exp(-x)) without overflow


_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def _gradcheck_problem(fn, make_inputs):
    """A ``problem`` for ``smallest_failure``: gradcheck ``fn`` on ``make_inputs(example)``."""

    def problem(example):
        inputs = make_inputs(example)
        shapes = " and ".join(str(t.shape) for t in inputs)
        try:
            gradcheck(fn, *inputs)
        except GradcheckError as exc:
            return f"on input shape {shapes}, {exc}"
        except Exception as exc:  # noqa: BLE001 - the learner's bug, reported
            return f"on input shape {shapes}, {_describe_exception(exc)}"
        return None

    return problem


def _one_node(out, parents, what):
    """None when ``out`` is a single graph node over exactly ``parents``, else the pointer."""
    if not isinstance(out, Tensor):
        return f"{what} must return a Tensor, got {type(out).__name__}"
    if len(out._parents) != len(parents) or any(a is not b for a, b in zip(out._parents, parents)):
        return (f"build the output with ONE Tensor.from_op(data, {_names(parents)}, backward_fn, "
                f"'{what}') so that the backward is yours (got a graph node "
                f"{out._op!r} whose parents are not the inputs)")
    return None


def _names(parents):
    return "(x,)" if len(parents) == 1 else "(x, b)"


def check_sigmoid(sigmoid) -> bool:
    """``sigmoid(x: Tensor) -> Tensor``, the logistic function with a hand-written backward."""
    what = "sigmoid: forward matches NumPy, backward passes gradcheck"
    x = Tensor(np.linspace(-6.0, 6.0, 7), requires_grad=True)
    ok, y = run_safely(what, sigmoid, x)
    if not ok:
        return False
    pointer = _one_node(y, (x,), "sigmoid")
    if pointer:
        return verdict(False, what, pointer)
    if y.shape != x.shape:
        return verdict(False, what, f"output shape {y.shape}, expected the input's {x.shape}")
    expected = _sigmoid_reference(x.data)
    bad = np.flatnonzero(~np.isclose(np.asarray(y.data, dtype=np.float64), expected,
                                     rtol=1e-10, atol=1e-12))
    if bad.size:
        i = int(bad[0])
        return verdict(False, what, f"forward at x = {x.data[i]:g}: got {float(y.data[i]):.10g}, "
                                    f"expected 1 / (1 + exp(-x)) = {expected[i]:.10g}")

    def make_inputs(example):
        shape, seed = example
        rng = np.random.default_rng(seed)
        return (Tensor(rng.normal(0.0, 3.0, shape), requires_grad=True),)

    found = smallest_failure(st.tuples(_shapes, st.integers(0, 2**16)),
                             _gradcheck_problem(sigmoid, make_inputs))
    if found:
        return verdict(False, what, found[1] + ". Hint: d sigmoid/dx = sigmoid(x) (1 - sigmoid(x)),"
                       " times the incoming gradient g")
    return verdict(True, what + " on 40 input shapes drawn by hypothesis")


# ------------------------------------------------------------------- add_channel_bias


def check_add_channel_bias(add_channel_bias) -> bool:
    """``add_channel_bias(x (N, C, H, W), b (C,)) -> (N, C, H, W)`` with a hand-written backward."""
    what = "add_channel_bias: forward matches NumPy, backward passes gradcheck for x and b"
    rng = np.random.default_rng(1)
    x = Tensor(rng.normal(size=(2, 3, 2, 2)), requires_grad=True)
    b = Tensor(rng.normal(size=3), requires_grad=True)
    ok, y = run_safely(what, add_channel_bias, x, b)
    if not ok:
        return False
    pointer = _one_node(y, (x, b), "add_channel_bias")
    if pointer:
        return verdict(False, what, pointer)
    expected = x.data + b.data[None, :, None, None]
    if y.shape != expected.shape:
        return verdict(False, what, f"output shape {y.shape}, expected {expected.shape}")
    if not np.allclose(y.data, expected, rtol=1e-12, atol=1e-12):
        idx = tuple(int(i) for i in np.argwhere(~np.isclose(y.data, expected))[0])
        return verdict(False, what, f"forward at index {idx}: got {float(y.data[idx]):.6g}, "
                                    f"expected x{list(idx)} + b[{idx[1]}] = {expected[idx]:.6g}")

    def make_inputs(example):
        (n, c, h, w), seed = example
        r = np.random.default_rng(seed)
        return (Tensor(r.normal(size=(n, c, h, w)), requires_grad=True),
                Tensor(r.normal(size=c), requires_grad=True))

    nchw = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))
    found = smallest_failure(st.tuples(nchw, st.integers(0, 2**16)),
                             _gradcheck_problem(add_channel_bias, make_inputs))
    if found:
        return verdict(False, what, found[1] + " (input 0 is x, input 1 is b). Hint: every "
                       "output element that used b[c] sends its gradient back to b[c]")
    return verdict(True, what + " on 40 (N, C, H, W) shapes drawn by hypothesis")
