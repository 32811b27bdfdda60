"""A tiny reverse-mode autograd on NumPy/CuPy arrays.

``Tensor`` and ``backward`` live in ``tensor.py`` (the core); arithmetic, elementwise functions,
reductions, shapes and joins in ``ops.py``, which also makes them ``Tensor``'s operators;
neural-network ops (conv2d, max_pool2d, softmax, losses) in ``functional.py``; ``gradcheck`` in
``gradcheck.py``.

``conv2d`` and ``max_pool2d`` run the fast kernels of ``minissd.kernels``; ``conv2d_reference``
and ``max_pool2d_reference`` are their readable definitions, and ``with reference_mode():`` (or
``MINISSD_REFERENCE=1`` in the environment) runs the whole model on those instead.
"""

from . import functional, ops  # importing ops attaches Tensor's operators
from .functional import (
    conv2d,
    conv2d_reference,
    cross_entropy,
    l2_normalize,
    log_softmax,
    max_pool2d,
    max_pool2d_reference,
    reference_mode,
    smooth_l1,
    softmax,
)
from .gradcheck import GradcheckError, gradcheck
from .ops import abs, concatenate, exp, log, max, maximum, mean, relu, sqrt, stack, sum, where
from .tensor import Tensor, as_tensor, is_grad_enabled, no_grad

__all__ = [
    "Tensor", "as_tensor", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckError",
    "functional", "ops", "exp", "log", "sqrt", "abs", "relu", "where", "maximum", "sum", "mean",
    "max", "concatenate", "stack", "softmax", "log_softmax", "cross_entropy", "smooth_l1",
    "conv2d", "max_pool2d", "l2_normalize", "conv2d_reference", "max_pool2d_reference",
    "reference_mode",
]
