"""Checkers for chapter 02 (convolution and pooling).

``check_output_size(output_size)``: the learner's output-length formula against the lengths that
``minissd.autograd.conv2d`` (floor rounding, any dilation) and ``max_pool2d`` (``ceil_mode``)
actually produce, first on SSD300's own layers, then on (size, kernel, stride, padding,
dilation) drawn by hypothesis and shrunk to the smallest failing one.

``check_im2col(im2col)``: the learner's column matrix against the library's readable ``im2col``
(``minissd.autograd.functional``, the one ``conv2d_reference`` is built on; the pointer names the
row ``(c, u, v)`` and column ``(y, x)`` that differ and the input cell they should read), then
``W2 @ cols`` against ``conv2d``, on drawn shapes and parameters.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ..autograd import Tensor, conv2d, max_pool2d
from ..autograd.functional import im2col as library_im2col
from . import run_safely, verdict
from .ch01_autograd import smallest_failure

# --------------------------------------------------------------------------- output_size

#: (what, size, kernel, stride, padding, dilation, ceil_mode) of SSD300's layers.
SSD300_LAYERS = (
    ("conv1_1 (3x3, pad 1) on 300", 300, 3, 1, 1, 1, False),
    ("pool1 (2x2/2) on 300", 300, 2, 2, 0, 1, False),
    ("pool2 (2x2/2) on 150", 150, 2, 2, 0, 1, False),
    ("pool3 (2x2/2, ceil mode) on 75", 75, 2, 2, 0, 1, True),
    ("pool4 (2x2/2) on 38", 38, 2, 2, 0, 1, False),
    ("pool5 (3x3/1, pad 1) on 19", 19, 3, 1, 1, 1, False),
    ("fc6 (3x3, pad 6, dilation 6) on 19", 19, 3, 1, 6, 6, False),
    ("conv8_2 (3x3/2, pad 1) on 19", 19, 3, 2, 1, 1, False),
    ("conv9_2 (3x3/2, pad 1) on 10", 10, 3, 2, 1, 1, False),
    ("conv10_2 (3x3, pad 0) on 5", 5, 3, 1, 0, 1, False),
    ("conv11_2 (3x3, pad 0) on 3", 3, 3, 1, 0, 1, False),
)


def true_output_size(size, kernel, stride, padding, dilation, ceil_mode):
    """The length minissd's ops produce: run them on a ``(1, 1, size, 1)`` input."""
    x = Tensor(np.zeros((1, 1, size, 1)))
    if ceil_mode:
        return max_pool2d(x, (kernel, 1), (stride, 1), (padding, 0), ceil_mode=True).shape[2]
    w = Tensor(np.zeros((1, 1, kernel, 1)))
    return conv2d(x, w, None, (stride, 1), (padding, 0), (dilation, 1)).shape[2]


def _valid(case):
    size, kernel, stride, padding, dilation, ceil_mode = case
    if size + 2 * padding < dilation * (kernel - 1) + 1:
        return False  # no window fits
    return not ceil_mode or (dilation == 1 and 2 * padding <= kernel)  # max_pool2d's rules


def _call(size, kernel, stride, padding, dilation, ceil_mode):
    return f"output_size({size}, kernel={kernel}, stride={stride}, padding={padding}, " \
           f"dilation={dilation}, ceil_mode={ceil_mode})"


def _size_problem(output_size):
    def problem(case):
        expected = true_output_size(*case)
        try:
            got = output_size(*case)
        except Exception as exc:  # noqa: BLE001
            return f"{_call(*case)} raised {type(exc).__name__}: {exc}"
        if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
            return f"{_call(*case)} returned {got!r} ({type(got).__name__}); return an int"
        if got != expected:
            op = "max_pool2d" if case[5] else "conv2d"
            hint = ("ceil mode rounds the division up, but the last window must still start "
                    "inside the input or its left padding" if case[5] else
                    "the span of a dilated kernel is dilation * (kernel - 1) + 1")
            return f"{_call(*case)} returned {got}; {op} gives {expected} ({hint})"
        return None

    return problem


def check_output_size(output_size) -> bool:
    """``output_size(size, kernel, stride, padding, dilation, ceil_mode) -> int``."""
    what = "output_size: agrees with conv2d (floor) and max_pool2d (ceil mode)"
    ok, _ = run_safely(what, output_size, 300, 3, 1, 1, 1, False)
    if not ok:
        return False
    problem = _size_problem(output_size)
    for name, *case in SSD300_LAYERS:
        message = problem(tuple(case))
        if message:
            return verdict(False, what, f"SSD300's {name}: {message}")
    cases = st.tuples(st.integers(1, 40), st.integers(1, 7), st.integers(1, 4), st.integers(0, 3),
                      st.integers(1, 3), st.booleans()).filter(_valid)
    found = smallest_failure(cases, problem, max_examples=150)
    if found:
        return verdict(False, what, found[1])
    return verdict(True, what + f" on SSD300's {len(SSD300_LAYERS)} layers and 150 drawn cases")


# --------------------------------------------------------------------------------- im2col


def im2col_reference(x, kernel, stride=1, padding=0, dilation=1):
    """(C, H, W) -> (C*k*k, Ho*Wo): the exercise's signature on the library's ``im2col``."""
    k, s, p, d = ((v, v) for v in (kernel, stride, padding, dilation))
    return library_im2col(x[None], k, s, p, d)[0]


def _im2col_problem(im2col):
    def problem(case):
        (c, h, w, k, s, p, d), seed = case
        x = np.random.default_rng(seed).integers(1, 100, (c, h, w)).astype(np.float64)
        call = f"im2col(x of shape {(c, h, w)}, kernel={k}, stride={s}, padding={p}, dilation={d})"
        expected = im2col_reference(x, k, s, p, d)
        try:
            got = np.asarray(im2col(x.copy(), k, s, p, d))
        except Exception as exc:  # noqa: BLE001
            return f"{call} raised {type(exc).__name__}: {exc}"
        if got.shape != expected.shape:
            ho, wo = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
            return (f"{call} has shape {got.shape}; expected (C*k*k, Ho*Wo) = "
                    f"({c}*{k}*{k}, {ho}*{wo}) = {expected.shape}")
        bad = np.argwhere(~np.isclose(got, expected))
        if bad.size:
            row, col = (int(i) for i in bad[0])
            cc, u, v = np.unravel_index(row, (c, k, k))
            wo = (w + 2 * p - d * (k - 1) - 1) // s + 1
            y, xx = divmod(col, wo)
            iy, ix = y * s + u * d - p, xx * s + v * d - p
            where = (f"input cell x[{cc}, {iy}, {ix}]" if 0 <= iy < h and 0 <= ix < w else
                     f"padding (unpadded coordinates ({iy}, {ix})), so 0")
            return (f"{call}: row {row} = (c={cc}, u={u}, v={v}), column {col} = output (y={y}, "
                    f"x={xx}) holds {got[row, col]:g}; it should read {where} = "
                    f"{expected[row, col]:g}")
        weight = np.random.default_rng(seed + 1).normal(size=(2, c, k, k))
        out = conv2d(Tensor(x[None]), Tensor(weight), None, s, p, d).data[0]
        mine = (weight.reshape(2, -1) @ got).reshape(out.shape)
        if not np.allclose(mine, out):
            return f"{call}: W2 @ cols differs from conv2d"
        return None

    return problem


def check_im2col(im2col) -> bool:
    """``im2col(x (C, H, W), kernel, stride, padding, dilation) -> (C*k*k, Ho*Wo)``."""
    what = "im2col: columns match the definition and W2 @ cols equals conv2d"
    ok, _ = run_safely(what, im2col, np.zeros((1, 3, 3)), 3, 1, 0, 1)
    if not ok:
        return False
    shapes = st.tuples(st.integers(1, 3), st.integers(1, 8), st.integers(1, 8), st.integers(1, 4),
                       st.integers(1, 3), st.integers(0, 2), st.integers(1, 3))

    def fits(case):
        c, h, w, k, s, p, d = case
        return min(h, w) + 2 * p >= d * (k - 1) + 1

    problem = _im2col_problem(im2col)
    fixed = [((1, 4, 4, 3, 1, 0, 1), 0), ((2, 5, 6, 3, 1, 1, 1), 1), ((1, 7, 7, 3, 2, 1, 1), 2),
             ((1, 9, 9, 3, 1, 2, 2), 3), ((3, 6, 5, 2, 2, 0, 1), 4), ((2, 8, 7, 3, 3, 2, 3), 5),
             ((1, 8, 8, 4, 2, 1, 2), 6)]
    for case in fixed:
        message = problem(case)
        if message:
            return verdict(False, what, message)
    found = smallest_failure(st.tuples(shapes.filter(fits), st.integers(0, 2**16)), problem,
                             max_examples=60)
    if found:
        return verdict(False, what, found[1])
    return verdict(True, what + f" on {len(fixed)} fixed and 60 drawn (shape, kernel, stride, "
                                "padding, dilation) cases")
