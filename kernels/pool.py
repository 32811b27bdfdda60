"""The fast max_pool2d kernel: one pass per kernel offset over output-sized strided slices, with
the images of a batch split across threads (``batch_threads.py``; a single image by shares of
its channels).

The fast twin of the readable ``minissd.autograd.functional.max_pool2d_reference``, which pads
the input with -inf and takes the same slices of the padded copy: here the cells outside the
input are skipped instead (``conv.offset_ranges``), so nothing is padded or copied, and no window
array or argmax is made. Max and the first-maximum rule are exact, so the two give the same
bits; ``tests/kernels/test_conv_fast.py`` checks it.
"""

from __future__ import annotations

import numpy as np

from .batch_threads import over_batch
from .conv import offset_ranges


def _offsets(x_hw, out_hw, kernel, stride, padding):
    """Per kernel offset ``(u, v)``, row-major: ``(ro, ri, co, ci)``, the output rows and columns
    whose cell lies inside the input, and those cells (offsets that reach none left out)."""
    (h, w), (ho, wo) = x_hw, out_hw
    return [(ro, ri, co, ci)
            for _, ro, ri in offset_ranges(h, ho, kernel[0], stride[0], padding[0])
            for _, co, ci in offset_ranges(w, wo, kernel[1], stride[1], padding[1])]


#: One image's channels go in this many shares when a call has one image (max and the
#: first-maximum rule are exact per channel: any split gives the same bits).
ONE_IMAGE_SHARES = 8


def _planes(x):
    """``x (N, C, H, W)`` as ``(N*C, 1, H, W)`` and the planes per chunk: an image's channels
    (one image a chunk), or a share of them when there is one image."""
    n, c = x.shape[:2]
    return x.reshape(n * c, 1, *x.shape[2:]), (c if n > 1 else -(-c // ONE_IMAGE_SHARES))


def max_pool2d(xp, x, kernel, stride, padding, out_hw):
    """``out (N, C, Ho, Wo)``: the max over the offsets of ``x (N, C, H, W)``'s slices."""
    n, c, h, w = x.shape
    offsets = _offsets((h, w), out_hw, kernel, stride, padding)
    out = xp.empty((n, c, *out_hw), dtype=x.dtype)
    planes, size = _planes(x)
    out_planes = out.reshape(n * c, 1, *out_hw)

    def images(lo, hi):  # planes [lo, hi), split across threads on the CPU
        o_ = out_planes[lo:hi]
        o_.fill(-np.inf)
        for ro, ri, co, ci in offsets:
            o = o_[:, :, ro, co]
            xp.maximum(o, planes[lo:hi, :, ri, ci], out=o)

    over_batch(xp, n * c, x.size * len(offsets), images, size)
    return out


def max_pool2d_backward(xp, x, out, g, kernel, stride, padding):
    """``dx (N, C, H, W)``: in offset order, the first slice equal to ``out`` at a position
    takes ``g`` there."""
    n, c = x.shape[:2]
    offsets = _offsets(x.shape[2:], out.shape[2:], kernel, stride, padding)
    gx = xp.empty_like(x)
    planes, size = _planes(x)
    g_planes, o_planes, gx_planes = (a.reshape(n * c, 1, *a.shape[2:]) for a in (g, out, gx))

    def images(lo, hi):
        x_, g_, o_, gx_ = planes[lo:hi], g_planes[lo:hi], o_planes[lo:hi], gx_planes[lo:hi]
        gx_.fill(0)
        taken = xp.zeros(o_.shape, dtype=bool)  # the window's maximum has been found
        for ro, ri, co, ci in offsets:
            hit = x_[:, :, ri, ci] == o_[:, :, ro, co]
            hit &= ~taken[:, :, ro, co]
            taken[:, :, ro, co] |= hit
            gx_[:, :, ri, ci] += g_[:, :, ro, co] * hit

    over_batch(xp, n * c, x.size * len(offsets), images, size)
    return gx
