"""Weight initialisers, all with one signature::

    initialiser(shape, rng=None, *, dtype=np.float32, **its own options) -> ndarray of shape

``rng`` is the ``numpy.random.Generator`` the values are drawn from (``zeros`` and ``constant``
draw nothing and ignore it). None means this module's **default generator**: created as
``np.random.default_rng(DEFAULT_SEED)``, seed 0, when ``minissd.nn.init`` is first imported and
restarted by ``seed(s)``. So, as in PyTorch, layers built without a generator get different
weights from each other, and the same weights in every fresh process (or after the same
``seed``). The SSD model threads its own generator instead (``SSD(config, seed=...)``).
"""

from __future__ import annotations

import math

import numpy as np

RELU_GAIN = math.sqrt(2.0)

#: The seed of the default generator at import, and of ``seed()`` without an argument.
DEFAULT_SEED = 0
_default_generator = np.random.default_rng(DEFAULT_SEED)


def default_generator() -> np.random.Generator:
    """The generator initialisers (and layers) draw from when given ``rng=None``."""
    return _default_generator


def seed(value: int = DEFAULT_SEED) -> np.random.Generator:
    """Restart the default generator at ``value`` (like ``torch.manual_seed``); returns it."""
    global _default_generator
    _default_generator = np.random.default_rng(value)
    return _default_generator


def _generator(rng):
    return _default_generator if rng is None else rng


def fans(shape):
    """(fan_in, fan_out) of a weight: ``(O, C, kh, kw)`` gives ``(C kh kw, O kh kw)``."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def xavier_uniform(shape, rng=None, *, gain=1.0, dtype=np.float32):
    """Glorot & Bengio: U(-a, a) with ``a = gain sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = fans(shape)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _generator(rng).uniform(-a, a, size=shape).astype(dtype)


def kaiming_normal(shape, rng=None, *, gain=RELU_GAIN, dtype=np.float32):
    """He et al.: N(0, std^2) with ``std = gain / sqrt(fan_in)`` (ReLU gain by default)."""
    fan_in, _ = fans(shape)
    return (_generator(rng).standard_normal(size=shape) * (gain / math.sqrt(fan_in))).astype(dtype)


def zeros(shape, rng=None, *, dtype=np.float32):
    """All zeros (biases)."""
    return np.zeros(shape, dtype=dtype)


def constant(shape, rng=None, *, value, dtype=np.float32):
    """All ``value`` (L2Norm's scale, batch norm's weight)."""
    return np.full(shape, value, dtype=dtype)


#: The initialisers a layer's ``weight_init`` may name.
INITIALISERS = {"xavier_uniform": xavier_uniform, "kaiming_normal": kaiming_normal}
