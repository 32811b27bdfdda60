"""Numba CPU kernel for the SSD colour augmentation's saturation and hue step.

The fast twin of ``minissd.data.transforms.adjust_saturation_hue_reference`` (RGB -> HSV, scale
S, shift H, HSV -> RGB, clip to 0..255, on float32 images), which is five whole-image NumPy
passes with several temporaries each: about half of the augmentation's time on VOC-size images
(measured: ``benchmarks/bench_data.py``). Here one pass over the pixels does all of it, in the
reference's float32 operations in the reference's order, so the results are bit-identical
(``tests/kernels/test_colour.py`` holds them to it on drawn images): every constant is a
float32, ``%`` is NumPy's floored remainder, and no ``fastmath``.

Nothing here compiles at import (``cache=True``: compiled once, then loaded).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_F = np.float32
_ZERO, _ONE, _TWO, _FOUR, _SIX = _F(0), _F(1), _F(2), _F(4), _F(6)


@njit(cache=True, error_model="numpy")
def _remainder(a, b):
    """NumPy's ``a % b`` for floats (the sign of ``b``), in ``a``'s precision."""
    mod = _F(np.fmod(a, b))  # exact in any precision
    if mod != 0:
        if (b < 0) != (mod < 0):
            mod = _F(mod + b)
    else:
        mod = _F(np.copysign(_ZERO, b))
    return mod


@njit(cache=True, error_model="numpy")
def saturation_hue(img, scale, shift, do_scale, do_shift, sector_width, period, pixel_max,
                   out):
    """``img`` float32 (H, W, 3) RGB in 0..255 -> ``out`` (same shape): S times ``scale``
    (clipped to [0, 1]) if ``do_scale``, H plus ``shift`` degrees (mod ``period``) if
    ``do_shift``; ``scale``, ``shift``, ``sector_width`` (60), ``period`` (360) and
    ``pixel_max`` (255) as float32."""
    height, width = img.shape[0], img.shape[1]
    for i in range(height):
        for j in range(width):
            r, g, b = img[i, j, 0], img[i, j, 1], img[i, j, 2]
            # rgb_to_hsv
            v = max(r, max(g, b))
            chroma = v - min(r, min(g, b))
            s = chroma / v if v > 0 else _ZERO
            c = chroma if chroma > 0 else _ONE
            if v == r:
                h = _remainder((g - b) / c, _SIX)
            elif v == g:
                h = (b - r) / c + _TWO
            else:
                h = (r - g) / c + _FOUR
            h = h * sector_width if chroma > 0 else _ZERO
            # the adjustment
            if do_scale:
                s = min(max(s * scale, _ZERO), _ONE)
            if do_shift:
                h = _remainder(h + shift, period)
            # hsv_to_rgb
            h = _remainder(h, period) / sector_width
            chroma = v * s
            x = chroma * (_ONE - abs(_remainder(h, _TWO) - _ONE))
            sector = np.int64(np.floor(h)) % 6
            if sector == 0:
                r, g, b = chroma, x, _ZERO
            elif sector == 1:
                r, g, b = x, chroma, _ZERO
            elif sector == 2:
                r, g, b = _ZERO, chroma, x
            elif sector == 3:
                r, g, b = _ZERO, x, chroma
            elif sector == 4:
                r, g, b = x, _ZERO, chroma
            else:
                r, g, b = chroma, _ZERO, x
            m = v - chroma
            out[i, j, 0] = min(max(r + m, _ZERO), pixel_max)
            out[i, j, 1] = min(max(g + m, _ZERO), pixel_max)
            out[i, j, 2] = min(max(b + m, _ZERO), pixel_max)
    return out
