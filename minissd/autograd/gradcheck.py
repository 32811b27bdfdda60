"""Gradient checking: analytic gradients against float64 central differences."""

from __future__ import annotations

import numpy as np

from .tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic gradient of an input disagrees with the numeric one."""


def numeric_grad(fn, inputs, index, eps=1e-6, seed_grad=None):
    """Central-difference gradient of ``sum(fn(*inputs) * seed_grad)`` w.r.t. ``inputs[index]``."""
    x = inputs[index]
    flat = x.data.reshape(-1)  # a view: perturbing it perturbs the input
    grad = np.zeros(flat.shape, dtype=np.float64)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = _objective(fn, inputs, seed_grad)
        flat[i] = old - eps
        minus = _objective(fn, inputs, seed_grad)
        flat[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad.reshape(x.shape)


def _objective(fn, inputs, seed_grad):
    out = fn(*inputs)
    data = out.data if isinstance(out, Tensor) else np.asarray(out)
    return float((np.asarray(data, dtype=np.float64) * seed_grad).sum())


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-6, rtol=1e-4, seed=0):
    """Check ``fn``'s backward against central differences, for every input that requires grad.

    ``fn(*inputs)`` must return a Tensor. Its output is contracted with a fixed random ``seed_grad``
    so that every output element takes part. Inputs must be float64 NumPy-backed Tensors.

    Returns True; raises ``GradcheckError`` naming the input, the index of the worst element and
    the analytic and numeric values when they differ by more than ``atol + rtol * |numeric|``.
    """
    for k, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {k} is {t.dtype}; central differences need float64")
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    seed_grad = np.random.default_rng(seed).standard_normal(out.shape)
    for t in inputs:
        if isinstance(t, Tensor):
            t.zero_grad()
    if out.requires_grad:
        out.backward(seed_grad.astype(out.dtype))
    for k, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        analytic = np.zeros(t.shape) if t.grad is None else np.asarray(t.grad, dtype=np.float64)
        numeric = numeric_grad(fn, inputs, k, eps, seed_grad)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if err.size and err.max() > 0:
            worst = np.unravel_index(int(np.argmax(err)), err.shape)
            raise GradcheckError(
                f"gradcheck: input {k} (shape {t.shape}) differs at index {tuple(map(int, worst))}:"
                f" analytic {analytic[worst]:.10g}, numeric {numeric[worst]:.10g} "
                f"(atol {atol}, rtol {rtol})")
    return True
