"""Neural-network ops: activations, losses, convolution, pooling, L2 normalisation.

Each op's forward and backward stand side by side. Image tensors are NCHW: ``(N, C, H, W)``.
"""

from __future__ import annotations

import numpy as np

from . import _conv_impl as _conv
from ._threads import over_batch
from .tensor import Tensor, as_tensor, unbroadcast

#: Reject NaN/inf at the entrance of conv2d (one pass over the input; switch off for speed).
CHECK_FINITE = True

class NonFiniteError(ValueError):
    """An op was given NaN or inf (raised at the entrance of conv2d and max_pool2d)."""


# ------------------------------------------------------------------ activations


def softmax(x, axis=-1):
    x = as_tensor(x)
    xp = x.xp
    e = xp.exp(x.data - x.data.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    return Tensor.from_op(
        y, (x,), lambda g: (y * (g - (g * y).sum(axis=axis, keepdims=True)),), "softmax")


def _logsumexp(xp, a, axis):
    m = a.max(axis=axis, keepdims=True)
    return m + xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    x = as_tensor(x)
    xp = x.xp
    y = x.data - _logsumexp(xp, x.data, axis)
    return Tensor.from_op(
        y, (x,), lambda g: (g - xp.exp(y) * g.sum(axis=axis, keepdims=True),), "log_softmax")


# ----------------------------------------------------------------------- losses


def cross_entropy(logits, target):
    """Softmax cross-entropy per element, no reduction.

    Args:
        logits: ``(..., C)`` class scores (classes on the last axis).
        target: ``(...)`` integer class indices in ``[0, C)`` (a plain array; no gradient).
    Returns:
        ``(...)`` the loss ``logsumexp(logits) - logits[target]`` of each element.
    """
    logits = as_tensor(logits)
    xp = logits.xp
    t = xp.asarray(target.data if isinstance(target, Tensor) else target)
    if t.shape != logits.shape[:-1] or t.dtype.kind not in "iu":
        raise ValueError(
            f"cross_entropy: target must be integers of shape {logits.shape[:-1]} "
            f"(logits {logits.shape}), got {t.dtype} {tuple(t.shape)}")
    num_classes = logits.shape[-1]
    if t.size and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"cross_entropy: target values must lie in [0, {num_classes}), "
                         f"got range [{int(t.min())}, {int(t.max())}]")
    t = t[..., None]
    lse = _logsumexp(xp, logits.data, -1)
    loss = (lse - xp.take_along_axis(logits.data, t, axis=-1))[..., 0]

    def backward(g):
        grad = xp.exp(logits.data - lse)  # softmax
        onehot = xp.zeros_like(grad)
        xp.put_along_axis(onehot, t, 1.0, axis=-1)
        return ((grad - onehot) * g[..., None],)

    return Tensor.from_op(loss, (logits,), backward, "cross_entropy")


def smooth_l1(input, target, beta=1.0):
    """Smooth L1 (Huber with slope 1) per element: ``0.5 d^2 / beta`` if ``|d| < beta`` else
    ``|d| - 0.5 beta``, with ``d = input - target``. No reduction."""
    input = as_tensor(input)
    target = as_tensor(target, like=input)
    xp = input.xp
    d = input.data - target.data
    small = xp.abs(d) < beta
    loss = xp.where(small, 0.5 * d * d / beta, xp.abs(d) - 0.5 * beta)

    def backward(g):
        grad = g * xp.where(small, d / beta, xp.sign(d))
        return unbroadcast(grad, input.shape), unbroadcast(-grad, target.shape)

    return Tensor.from_op(loss, (input, target), backward, "smooth_l1")


# ------------------------------------------------------------ shared helpers


def _pair(v, name, op):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{op}: {name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _check_image_input(op, x):
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be (N, C, H, W), got shape {x.shape}")
    if CHECK_FINITE and not bool(x.xp.isfinite(x.data).all()):
        raise NonFiniteError(f"{op}: input of shape {x.shape} contains NaN or inf")


# -------------------------------------------------------------------- conv2d


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d`` (groups = 1).

    Args:
        x: ``(N, C, H, W)``.
        weight: ``(O, C, kh, kw)``.
        bias: ``(O,)`` or None.
        stride, padding, dilation: int or (h, w) pair; padding is zeros on both sides.
    Returns:
        ``(N, O, Ho, Wo)`` with ``Ho = (H + 2 ph - dh (kh - 1) - 1) // sh + 1`` (likewise Wo).

    As GEMMs (``minissd.autograd._conv_impl`` has the layout and the reasons), with
    ``W2 = weight.reshape(O, C*kh*kw)`` and ``cols[i]`` the im2col matrix of the padded image
    ``i``, ``(C*kh*kw, Ho*Wo)``, built band by band of output rows::

        forward   out[i] = W2 @ cols[i] (+ bias)
        backward  dW2    = sum_i g[i] @ cols[i].T
                  dx     = conv2d(g, W flipped in space, in/out swapped, padding d(k-1)-p)
                           (stride 1, O <= C), else col2im(W2.T @ g[i])
                  db     = sum of g over N, Ho, Wo

    When a third or so of ``cols`` would be padding zeros (SSD's fc6), the same sums run
    offset by offset instead, ``out[i][:, valid] += W[:, :, u, v] @ x[i][:, shifted]``, so the
    zeros are never multiplied. 3x3 stride-1 layers with enough channels (VGG's conv2_1 to
    conv5_3, the class heads) use Winograd's F(2x2, 3x3) instead: 16 GEMMs of transformed
    tiles, 2.25x fewer multiply-adds (``minissd.autograd._winograd``).
    """
    x, weight = as_tensor(x), as_tensor(weight)
    _check_image_input("conv2d", x)
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be (O, C, kh, kw), got shape {weight.shape}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels (shape {x.shape}) but weight "
                         f"expects {weight.shape[1]} (shape {weight.shape})")
    if weight.dtype != x.dtype:
        raise TypeError(f"conv2d: input is {x.dtype} but weight is {weight.dtype}")
    if bias is not None:
        bias = as_tensor(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), "
                             f"got {bias.shape}")
    xp = x.xp
    stride, padding = _pair(stride, "stride", "conv2d"), _pair(padding, "padding", "conv2d")
    dilation = _pair(dilation, "dilation", "conv2d")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"conv2d: stride {stride} and dilation {dilation} must be >= 1 and "
                         f"padding {padding} >= 0")
    kernel = weight.shape[2:]
    n, c, h, w = x.shape
    out_hw = tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, p, d, k, s in
                   zip((h, w), padding, dilation, kernel, stride))
    if min(out_hw) < 1:
        raise ValueError(f"conv2d: input {x.shape} is too small for kernel {tuple(kernel)} with "
                         f"padding {padding}, dilation {dilation}")
    o = weight.shape[0]
    xdata = xp.ascontiguousarray(x.data)
    out = xp.empty((n, o, *out_hw), dtype=x.dtype)
    _conv.correlate(xp, xdata, weight.data, stride, padding, dilation, out)
    if bias is not None:
        out += bias.data[:, None, None]

    def backward(g):
        g = xp.ascontiguousarray(g)
        gx, gw = _conv.backward(xp, xdata, g, weight.data, stride, padding, dilation,
                                x.requires_grad, weight.requires_grad)
        if bias is None:
            return gx, gw
        return gx, gw, g.reshape(n, o, -1).sum(axis=2).sum(axis=0)

    parents = (x, weight, bias) if bias is not None else (x, weight)
    return Tensor.from_op(out, parents, backward, "conv2d")


# ---------------------------------------------------------------- max_pool2d


def pool_output_size(size, kernel, stride, padding, ceil_mode):
    """Output length of a pooling window sweep (PyTorch's rule, which Caffe's ceil mode matches
    for SSD): with ``ceil_mode`` the last window may hang over the edge, but must start inside
    the input or its left padding."""
    span = size + 2 * padding - kernel
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling over ``kernel_size`` windows; padded cells are -inf (never the max).

    Args:
        x: ``(N, C, H, W)``.
        kernel_size, stride (default: kernel_size), padding: int or (h, w) pair.
        ceil_mode: round the output size up (SSD's pool3: 75 -> 38).
    Returns:
        ``(N, C, Ho, Wo)``. On ties the gradient goes to the first maximum in the window
        (row-major order over the window, as PyTorch).

    One pass per kernel offset ``(u, v)``, each over output-sized strided slices (no window
    array is copied, no argmax)::

        forward   out = max over (u, v) of x[y*sh + u - ph, x*sw + v - pw]
        backward  in offset order, the first slice equal to ``out`` at a position takes ``g``
    """
    x = as_tensor(x)
    _check_image_input("max_pool2d", x)
    kernel = _pair(kernel_size, "kernel_size", "max_pool2d")
    stride = kernel if stride is None else _pair(stride, "stride", "max_pool2d")
    padding = _pair(padding, "padding", "max_pool2d")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"max_pool2d: padding {padding} must be at most half of kernel {kernel}")
    if min(stride) < 1 or min(kernel) < 1 or min(padding) < 0:
        raise ValueError(f"max_pool2d: kernel {kernel} and stride {stride} must be >= 1 and "
                         f"padding {padding} >= 0")
    xp = x.xp
    n, c, h, w = x.shape
    out_hw = tuple(pool_output_size(size, k, s, p, ceil_mode)
                   for size, k, s, p in zip((h, w), kernel, stride, padding))
    if min(out_hw) < 1:
        raise ValueError(f"max_pool2d: input {x.shape} is too small for kernel {kernel}")
    # per offset: the outputs whose cell lies inside the input, and those cells (cells outside
    # count as -inf, so they are skipped rather than padded)
    offsets = [(ro, ri, co, ci)
               for _, ro, ri in _conv.offset_ranges(h, out_hw[0], kernel[0], stride[0], padding[0])
               for _, co, ci in _conv.offset_ranges(w, out_hw[1], kernel[1], stride[1], padding[1])]
    xd = x.data
    out = xp.empty((n, c, *out_hw), dtype=x.dtype)
    work = x.size * len(offsets)

    def forward(lo, hi):  # images [lo, hi), split across threads on the CPU
        o_ = out[lo:hi]
        o_.fill(-np.inf)
        for ro, ri, co, ci in offsets:
            o = o_[:, :, ro, co]
            xp.maximum(o, xd[lo:hi, :, ri, ci], out=o)

    over_batch(xp, n, work, forward)

    def backward(g):
        gx = xp.empty_like(xd)

        def images(lo, hi):
            x_, g_, o_, gx_ = xd[lo:hi], g[lo:hi], out[lo:hi], gx[lo:hi]
            gx_.fill(0)
            taken = xp.zeros(o_.shape, dtype=bool)  # the window's maximum has been found
            for ro, ri, co, ci in offsets:
                hit = x_[:, :, ri, ci] == o_[:, :, ro, co]
                hit &= ~taken[:, :, ro, co]
                taken[:, :, ro, co] |= hit
                gx_[:, :, ri, ci] += g_[:, :, ro, co] * hit

        over_batch(xp, n, work, images)
        return (gx,)

    return Tensor.from_op(out, (x,), backward, "max_pool2d")


# -------------------------------------------------------------- batch norm


def batch_norm(x, weight, bias, eps=1e-5):
    """Batch normalisation with the statistics of this batch (training mode), per channel of
    ``x (N, C, H, W)``: ``y = weight * (x - mean) / sqrt(var + eps) + bias`` with the biased
    variance over ``(N, H, W)``. Returns ``(y, mean, var)``; mean and var are plain arrays (C,)
    for the caller's running statistics. (In eval mode a layer uses its running statistics,
    which is plain elementwise arithmetic.)"""
    x, weight, bias = as_tensor(x), as_tensor(weight), as_tensor(bias)
    if x.ndim != 4 or weight.shape != (x.shape[1],) or bias.shape != (x.shape[1],):
        raise ValueError(f"batch_norm: input must be (N, C, H, W) with weight and bias (C,), "
                         f"got {x.shape}, {weight.shape}, {bias.shape}")
    axes, shape = (0, 2, 3), (1, -1, 1, 1)
    mean = x.data.mean(axis=axes)
    var = x.data.var(axis=axes)
    inv_std = 1.0 / x.xp.sqrt(var + eps)
    x_hat = (x.data - mean.reshape(shape)) * inv_std.reshape(shape)
    y = x_hat * weight.data.reshape(shape) + bias.data.reshape(shape)
    count = x.size // x.shape[1]

    def backward(g):
        g_hat = g * weight.data.reshape(shape)
        gx = (inv_std.reshape(shape) / count) * (
            count * g_hat - g_hat.sum(axis=axes, keepdims=True)
            - x_hat * (g_hat * x_hat).sum(axis=axes, keepdims=True))
        return gx, (g * x_hat).sum(axis=axes), g.sum(axis=axes)

    return Tensor.from_op(y, (x, weight, bias), backward, "batch_norm"), mean, var


# -------------------------------------------------------------- L2 normalise


def l2_normalize(x, axis=1, eps=1e-10):
    """``x / sqrt(sum(x^2, axis) + eps)``: unit length across channels at every location (the
    Caffe Normalize layer used on SSD's conv4_3; the scale is a separate learned parameter)."""
    x = as_tensor(x)
    xp = x.xp
    norm = xp.sqrt((x.data * x.data).sum(axis=axis, keepdims=True) + eps)
    y = x.data / norm
    return Tensor.from_op(
        y, (x,), lambda g: ((g - y * (g * y).sum(axis=axis, keepdims=True)) / norm,),
        "l2_normalize")
