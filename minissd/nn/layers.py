"""Layers: thin Modules that own parameters and call the ops in ``minissd.autograd``."""

from __future__ import annotations

import numpy as np

from ..autograd import functional as F
from ..autograd import ops
from . import init
from .module import Module, Parameter
from .sync_batch_norm import sync_batch_norm


class Conv2d(Module):
    """``(N, C_in, H, W) -> (N, C_out, Ho, Wo)``; weight ``(C_out, C_in, kh, kw)``, bias
    ``(C_out,)``.

    Weights are drawn by ``weight_init`` (a name in ``init.INITIALISERS``) from ``rng``, a
    ``numpy.random.Generator`` (the SSD model threads one through all its layers, so that the
    same seed gives the same model); without one, from ``init.default_generator()``, seeded with
    ``init.DEFAULT_SEED = 0`` at import and restarted by ``init.seed(s)``. Biases start at zero.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, *, rng: np.random.Generator | None = None, weight_init="xavier_uniform",
                 dtype=np.float32):
        super().__init__()
        k = F._pair(kernel_size, "kernel_size", "Conv2d")
        if weight_init not in init.INITIALISERS:
            raise ValueError(f"Conv2d: weight_init must be one of {sorted(init.INITIALISERS)}, "
                             f"got {weight_init!r}")
        shape = (out_channels, in_channels, *k)
        self.weight = Parameter(init.INITIALISERS[weight_init](shape, rng, dtype=dtype))
        self.bias = Parameter(init.zeros((out_channels,), dtype=dtype)) if bias else None
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def __repr__(self):
        o, c, kh, kw = self.weight.shape
        return (f"Conv2d({c}, {o}, kernel=({kh}, {kw}), stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation})")


class ReLU(Module):
    """``max(x, 0)``; ``inplace=True`` overwrites a convolution's output (``ops.relu``)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return ops.relu(x, inplace=self.inplace)

    def __repr__(self):
        return f"ReLU(inplace={self.inplace})" if self.inplace else "ReLU()"


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.ceil_mode = padding, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def __repr__(self):
        return (f"MaxPool2d(kernel={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, ceil_mode={self.ceil_mode})")


class L2Norm(Module):
    """SSD's conv4_3 normalisation: unit L2 norm across channels at every location, times a
    learned per-channel ``weight`` (C,) initialised to ``scale`` (20 in the paper)."""

    def __init__(self, channels, scale=20.0, eps=1e-10, dtype=np.float32):
        super().__init__()
        self.weight = Parameter(init.constant((channels,), value=scale, dtype=dtype))
        self.eps = eps

    def forward(self, x):
        return F.l2_normalize(x, axis=1, eps=self.eps) * self.weight.reshape(1, -1, 1, 1)

    def __repr__(self):
        return f"L2Norm({self.weight.shape[0]})"


class BatchNorm2d(Module):
    """Batch normalisation over ``(N, H, W)`` for each of ``C`` channels (Ioffe & Szegedy).

    Training mode normalises with the batch's statistics and updates the running ones
    (``running = (1 - momentum) running + momentum batch``, the unbiased variance, as PyTorch);
    eval mode uses the running statistics. Not in the SSD paper (its VGG has none): the small
    model trained from scratch uses it.

    ``comm``: None, or a communicator of several processes that each hold a shard of the batch
    (``minissd.distributed``): training mode then normalises with the statistics of the whole
    batch across the processes, and updates the running ones with them
    (``minissd.nn.sync_batch_norm``; the trainer sets it unless told not to).
    """

    def __init__(self, channels, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.weight = Parameter(init.constant((channels,), value=1.0, dtype=dtype))
        self.bias = Parameter(init.zeros((channels,), dtype=dtype))
        self.register_buffer("running_mean", np.zeros(channels, dtype=dtype))
        self.register_buffer("running_var", np.ones(channels, dtype=dtype))
        self.eps, self.momentum = eps, momentum
        self.comm = None

    def forward(self, x):
        if self.training:
            if self.comm is not None and self.comm.size > 1:
                y, mean, var, n = sync_batch_norm(x, self.weight, self.bias, self.eps,
                                                  self.comm)
            else:
                y, mean, var = F.batch_norm(x, self.weight, self.bias, self.eps)
                n = x.size // x.shape[1]
            m = self.momentum
            self._buffers["running_mean"] = (1 - m) * self._buffers["running_mean"] + m * mean
            self._buffers["running_var"] = ((1 - m) * self._buffers["running_var"]
                                            + m * var * (n / max(n - 1, 1)))
            return y
        shape = (1, -1, 1, 1)
        scale = self.weight.reshape(shape) * (
            1.0 / x.xp.sqrt(self._buffers["running_var"] + self.eps)).reshape(shape)
        return (x - self._buffers["running_mean"].reshape(shape)) * scale + self.bias.reshape(
            shape)

    def __repr__(self):
        return f"BatchNorm2d({self.weight.shape[0]})"
