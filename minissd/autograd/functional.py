"""Neural-network ops: activations, losses, convolution, pooling, L2 normalisation.

Each op's forward and backward stand side by side. Image tensors are NCHW: ``(N, C, H, W)``.

``conv2d`` and ``max_pool2d`` come in two versions. The readable ones, ``conv2d_reference`` (im2col
and one matrix product; its backward the adjoint, col2im) and ``max_pool2d_reference``, are the
definitions. The fast ones are the kernels in ``minissd.kernels`` (GEMM by kernel offset,
Winograd F(2x2, 3x3) and F(4x4, 3x3), the images of a batch across threads), tested against the
references on drawn shapes (``tests/kernels``). ``conv2d`` and ``max_pool2d`` run the fast
kernels, or the references in reference mode: ``with reference_mode():``, or
``MINISSD_REFERENCE=1`` in the environment for a whole run. Both give the same numbers (max
pooling to the bit, convolution up to float rounding, as two summation orders do); the
references are slower and keep more memory.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from minissd.kernels import conv as fast_conv
from minissd.kernels import pool as fast_pool
from minissd.kernels.batch_threads import over_batch

from ..backend import get_array_module
from .tensor import Tensor, as_tensor, is_grad_enabled, unbroadcast

#: Reject NaN/inf at the entrance of conv2d (one pass over the input; switch off for speed).
CHECK_FINITE = True
#: ``all_finite`` looks at big NumPy arrays in slices of this many values, split over the batch
#: threads: a temporary the size of a slice, reused, not one as large as the input (SSD300's
#: conv1_2 input at batch 8: 46 MB of fresh pages per call; the 40 checks of a batch-8 forward
#: took 72 ms).
FINITE_CHECK_SLICE = 1 << 18

class NonFiniteError(ValueError):
    """An op was given NaN or inf (raised at the entrance of conv2d and max_pool2d)."""


_reference_mode = None  # None: as MINISSD_REFERENCE says


def reference_mode_enabled() -> bool:
    """Whether ``conv2d`` and ``max_pool2d`` run their references: inside ``reference_mode()``,
    else when the environment has ``MINISSD_REFERENCE=1``."""
    if _reference_mode is not None:
        return _reference_mode
    value = os.environ.get("MINISSD_REFERENCE", "")
    if value not in ("", "0", "1"):
        raise ValueError(f"MINISSD_REFERENCE must be 0 or 1, got {value!r}")
    return value == "1"


@contextlib.contextmanager
def reference_mode(enabled: bool = True):
    """Inside this block ``conv2d`` and ``max_pool2d`` (so the whole model) run the readable
    references instead of the fast kernels; ``enabled=False``: the fast kernels, whatever
    ``MINISSD_REFERENCE`` says. Graphs built inside keep their version for backward."""
    global _reference_mode
    previous, _reference_mode = _reference_mode, bool(enabled)
    try:
        yield
    finally:
        _reference_mode = previous


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


def all_finite(xp, a):
    """``bool(xp.isfinite(a).all())``; a big C-contiguous NumPy array slice by slice
    (``FINITE_CHECK_SLICE``) across the batch threads."""
    if xp.__name__ != "numpy" or a.size <= FINITE_CHECK_SLICE or not a.flags.c_contiguous:
        return bool(xp.isfinite(a).all())
    flat = a.reshape(-1)
    return all(over_batch(xp, flat.size, flat.size, lambda lo, hi: bool(
        xp.isfinite(flat[lo:hi]).all()), size=FINITE_CHECK_SLICE))


def _check_image_input(op, x):
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be (N, C, H, W), got shape {x.shape}")
    if CHECK_FINITE and not all_finite(x.xp, x.data):
        raise NonFiniteError(f"{op}: input of shape {x.shape} contains NaN or inf")


# -------------------------------------------------------------------- conv2d


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Output length of a convolution along one axis: the positions of a kernel of ``kernel``
    taps spaced ``dilation`` apart, sliding by ``stride`` over the input padded by ``padding``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _taps(u, dilation, stride, out):
    """The (padded) input cells that kernel offset ``u`` meets at outputs ``0 .. out-1``."""
    return slice(u * dilation, u * dilation + stride * (out - 1) + 1, stride)


def im2col(x, kernel, stride, padding, dilation):
    """The columns of a convolution: ``x (N, C, H, W)`` -> ``cols (N, C*kh*kw, Ho*Wo)``.

    Row ``(c, u, v)``, column ``(y, x)`` of ``cols[n]`` holds ``xpad[n, c, y*sh + u*dh,
    x*sw + v*dw]``, the cell that kernel tap ``(u, v)`` meets at output ``(y, x)`` (``xpad``: the
    input with ``padding`` zeros around it). ``kernel``, ``stride``, ``padding``, ``dilation``:
    (h, w) pairs."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    ho, wo = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):  # one strided slice per kernel offset
            cols[:, :, u, v] = xpad[:, :, _taps(u, dh, sh, ho), _taps(v, dw, sw, wo)]
    return cols.reshape(n, c * kh * kw, ho * wo)


def col2im(cols, x_shape, kernel, stride, padding, dilation):
    """The adjoint of ``im2col``: ``cols (N, C*kh*kw, Ho*Wo)`` -> ``(N, C, H, W)``, each value added
    back onto the cell it was read from (a cell under several windows sums their values; the
    padding's are dropped)."""
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    ho, wo = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    cols = cols.reshape(n, c, kh, kw, ho, wo)
    xpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for u in range(kh):
        for v in range(kw):
            xpad[:, :, _taps(u, dh, sh, ho), _taps(v, dw, sw, wo)] += cols[:, :, u, v]
    return xpad[:, :, ph: ph + h, pw: pw + w]


def conv2d_reference(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """``conv2d`` as its definition, for reading: im2col, one matrix product, and the adjoint.

    With ``cols = im2col(x)`` ``(N, C*kh*kw, Ho*Wo)`` and ``W2 = weight.reshape(O, C*kh*kw)``::

        forward   out[n] = W2 @ cols[n]                  (+ bias)
        backward  dW2    = sum over n of g[n] @ cols[n].T
                  dx     = col2im(W2.T @ g)              (the adjoint of im2col)
                  db     = g summed over N, Ho, Wo

    The arguments, checks and results of ``conv2d``, which runs this in reference mode.
    """
    x, weight, bias, hyper, (ho, wo) = _conv2d_inputs(x, weight, bias, stride, padding, dilation)
    n, o = x.shape[0], weight.shape[0]
    w2 = weight.data.reshape(o, -1)  # (O, C*kh*kw)
    cols = im2col(x.data, weight.shape[2:], *hyper)  # (N, C*kh*kw, Ho*Wo)
    out = (w2 @ cols).reshape(n, o, ho, wo)
    if bias is not None:
        out += bias.data[:, None, None]

    def backward(g):  # g: (N, O, Ho, Wo) -> (dx, dW)
        g2 = g.reshape(n, o, ho * wo)
        dw2 = (g2 @ cols.transpose(0, 2, 1)).sum(axis=0)
        dx = col2im(w2.T @ g2, x.shape, weight.shape[2:], *hyper)
        return dx, dw2.reshape(weight.shape)

    return _conv2d_output(x, weight, bias, out, backward)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d`` (groups = 1).

    Args:
        x: ``(N, C, H, W)``.
        weight: ``(O, C, kh, kw)``.
        bias: ``(O,)`` or None.
        stride, padding, dilation: int or (h, w) pair; padding is zeros on both sides.
    Returns:
        ``(N, O, Ho, Wo)`` with ``Ho = conv_output_size(H, kh, sh, ph, dh)`` (likewise Wo).

    The numbers of ``conv2d_reference`` (its definition), computed by the fast kernels of
    ``minissd.kernels.conv``: im2col in cache-sized bands, offset by offset where im2col would be
    largely padding (SSD's fc6), Winograd for wide 3x3 layers (F(4x4, 3x3) on large maps,
    F(2x2, 3x3) otherwise), the images of a batch across threads. In reference mode
    (``reference_mode()``, ``MINISSD_REFERENCE=1``) it runs ``conv2d_reference`` itself.
    """
    if reference_mode_enabled():
        return conv2d_reference(x, weight, bias, stride, padding, dilation)
    x, weight, bias, hyper, out_hw = _conv2d_inputs(x, weight, bias, stride, padding, dilation)
    xp = x.xp
    xdata = xp.ascontiguousarray(x.data)
    out = xp.empty((x.shape[0], weight.shape[0], *out_hw), dtype=x.dtype)
    fast_conv.correlate(xp, xdata, weight.data, *hyper, out,
                        bias=None if bias is None else bias.data,
                        keep_transform=not (is_grad_enabled() and weight.requires_grad))
    return _conv2d_output(x, weight, bias, out, lambda g: fast_conv.backward(
        xp, xdata, g, weight.data, *hyper, x.requires_grad, weight.requires_grad))


def _conv2d_output(x, weight, bias, out, backward_xw):
    """The output Tensor of a conv2d: ``out`` (N, O, Ho, Wo), the bias already added; its
    backward is ``backward_xw(g) -> (dx, dW)`` and, for the bias, g summed over N, Ho and Wo."""
    xp = x.xp

    def backward(g):
        g = xp.ascontiguousarray(g)
        gx, gw = backward_xw(g)
        if bias is None:
            return gx, gw
        return gx, gw, g.reshape(g.shape[0], g.shape[1], -1).sum(axis=2).sum(axis=0)

    parents = (x, weight, bias) if bias is not None else (x, weight)
    return Tensor.from_op(out, parents, backward, "conv2d", private_grads=True)


def _conv2d_inputs(x, weight, bias, stride, padding, dilation):
    """The checked arguments of conv2d: ``x, weight, bias`` as Tensors, ``(stride, padding,
    dilation)`` as (h, w) pairs, and the output size ``(Ho, Wo)``."""
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
        if bias.dtype != x.dtype:
            raise TypeError(f"conv2d: input is {x.dtype} but bias is {bias.dtype}")
    stride, padding = _pair(stride, "stride", "conv2d"), _pair(padding, "padding", "conv2d")
    dilation = _pair(dilation, "dilation", "conv2d")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"conv2d: stride {stride} and dilation {dilation} must be >= 1 and "
                         f"padding {padding} >= 0")
    kernel = weight.shape[2:]
    out_hw = tuple(conv_output_size(*a) for a in zip(x.shape[2:], kernel, stride, padding,
                                                      dilation))
    if min(out_hw) < 1:
        raise ValueError(f"conv2d: input {x.shape} is too small for kernel {tuple(kernel)} with "
                         f"padding {padding}, dilation {dilation}")
    return x, weight, bias, (stride, padding, dilation), out_hw


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


def max_pool2d_reference(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """``max_pool2d`` as its definition, for reading: the input padded with -inf (never the max),
    one strided slice of it per kernel offset ``(u, v)``::

        forward   out = max over (u, v) of xpad[:, :, y*sh + u, x*sw + v]
        backward  in offset order (row-major over the window), the first slice equal to ``out``
                  at a position takes ``g`` there

    The arguments, checks and results of ``max_pool2d``, which runs this in reference mode.
    """
    x, (kh, kw), (sh, sw), (ph, pw), (ho, wo) = _pool2d_inputs(x, kernel_size, stride, padding,
                                                               ceil_mode)
    xp = x.xp
    n, c, h, w = x.shape
    # -inf all around, enough for every window (ceil mode's last one may hang over the edge)
    xpad = xp.full((n, c, max(h + 2 * ph, (ho - 1) * sh + kh), max(w + 2 * pw, (wo - 1) * sw + kw)),
                   -np.inf, dtype=x.dtype)
    xpad[:, :, ph: ph + h, pw: pw + w] = x.data
    slices = [(_taps(u, 1, sh, ho), _taps(v, 1, sw, wo)) for u in range(kh) for v in range(kw)]
    out = xp.full((n, c, ho, wo), -np.inf, dtype=x.dtype)
    for rows, cols in slices:
        xp.maximum(out, xpad[:, :, rows, cols], out=out)

    def backward(g):
        gpad = xp.zeros_like(xpad)
        taken = xp.zeros(out.shape, dtype=bool)  # the window's maximum has been found
        for rows, cols in slices:
            hit = (xpad[:, :, rows, cols] == out) & ~taken
            taken |= hit
            gpad[:, :, rows, cols] += g * hit
        return (gpad[:, :, ph: ph + h, pw: pw + w],)

    return Tensor.from_op(out, (x,), backward, "max_pool2d", private_grads=True)


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling over ``kernel_size`` windows; padded cells are -inf (never the max).

    Args:
        x: ``(N, C, H, W)``.
        kernel_size, stride (default: kernel_size), padding: int or (h, w) pair.
        ceil_mode: round the output size up (SSD's pool3: 75 -> 38).
    Returns:
        ``(N, C, Ho, Wo)``. On ties the gradient goes to the first maximum in the window
        (row-major order over the window, as PyTorch).

    The numbers of ``max_pool2d_reference`` (its definition, to the bit), computed by the fast
    kernel of ``minissd.kernels.pool`` (no padded copy, the images across threads), or in reference
    mode by ``max_pool2d_reference`` itself.
    """
    if reference_mode_enabled():
        return max_pool2d_reference(x, kernel_size, stride, padding, ceil_mode)
    x, kernel, stride, padding, out_hw = _pool2d_inputs(x, kernel_size, stride, padding,
                                                        ceil_mode)
    xp = x.xp
    out = fast_pool.max_pool2d(xp, x.data, kernel, stride, padding, out_hw)
    return Tensor.from_op(out, (x,), lambda g: (fast_pool.max_pool2d_backward(
        xp, x.data, out, g, kernel, stride, padding),), "max_pool2d", private_grads=True)


def _pool2d_inputs(x, kernel_size, stride, padding, ceil_mode):
    """The checked arguments of max_pool2d: ``x`` as a Tensor, ``kernel, stride, padding`` as
    (h, w) pairs, and the output size ``(Ho, Wo)``."""
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
    out_hw = tuple(pool_output_size(size, k, s, p, ceil_mode)
                   for size, k, s, p in zip(x.shape[2:], kernel, stride, padding))
    if min(out_hw) < 1:
        raise ValueError(f"max_pool2d: input {x.shape} is too small for kernel {kernel}")
    return x, kernel, stride, padding, out_hw


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
