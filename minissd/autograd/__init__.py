"""A tiny reverse-mode autograd on NumPy/CuPy arrays.

``Tensor`` and ``backward`` live in ``tensor.py`` (the core); elementwise functions, reductions
and joins in ``ops.py``; neural-network ops (conv2d, max_pool2d, softmax, losses) in
``functional.py``; ``gradcheck`` in ``gradcheck.py``.
"""

from . import functional, ops
from .functional import (
    conv2d,
    cross_entropy,
    l2_normalize,
    log_softmax,
    max_pool2d,
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
    "conv2d", "max_pool2d", "l2_normalize",
]
