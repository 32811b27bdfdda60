"""Weight initialisers. Each takes the array module's random generator explicitly."""

from __future__ import annotations

import math

import numpy as np

RELU_GAIN = math.sqrt(2.0)


def fans(shape):
    """(fan_in, fan_out) of a weight: ``(O, C, kh, kw)`` gives ``(C kh kw, O kh kw)``."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def xavier_uniform(shape, rng: np.random.Generator, gain=1.0, dtype=np.float32):
    """Glorot & Bengio: U(-a, a) with ``a = gain sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = fans(shape)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape).astype(dtype)


def kaiming_normal(shape, rng: np.random.Generator, gain=RELU_GAIN, dtype=np.float32):
    """He et al.: N(0, std^2) with ``std = gain / sqrt(fan_in)`` (ReLU gain by default)."""
    fan_in, _ = fans(shape)
    return (rng.standard_normal(size=shape) * (gain / math.sqrt(fan_in))).astype(dtype)


def zeros(shape, rng=None, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def constant(shape, value, dtype=np.float32):
    return np.full(shape, value, dtype=dtype)


INITIALISERS = {"xavier_uniform": xavier_uniform, "kaiming_normal": kaiming_normal}
