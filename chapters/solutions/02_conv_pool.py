"""Worked solutions for chapter 02 (convolution and pooling).

Each function has the name of an exercise in ``chapters/02_conv_pool.ipynb``; the chapter test
replaces the exercise cell with this source, so a function may use only what the notebook has
imported before it (``np``).
"""

import numpy as np


def output_size(size, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
    """Length of the output of a sliding window along one axis.

    size: input length; kernel, stride, padding (zeros on both sides), dilation: ints;
    ceil_mode: round the number of strides up (pooling only). Returns an int >= 1.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1  # room left after the first window
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1  # ceil(span / stride) + 1
    if (out - 1) * stride >= size + padding:  # the last window would start in the right padding
        out -= 1
    return out


def im2col(x, kernel, stride=1, padding=0, dilation=1):
    """The column matrix of one image for a kernel x kernel window.

    x: (C, H, W) array -> (C*kernel*kernel, Ho*Wo) array. Row ``c*k*k + u*k + v``, column
    ``y*Wo + x`` holds ``xpad[c, y*stride + u*dilation, x*stride + v*dilation]``, where xpad is x
    with ``padding`` zeros on each side.
    """
    c, h, w = x.shape
    k, s, p, d = kernel, stride, padding, dilation
    ho = (h + 2 * p - d * (k - 1) - 1) // s + 1
    wo = (w + 2 * p - d * (k - 1) - 1) // s + 1
    xpad = np.pad(x, ((0, 0), (p, p), (p, p)))
    cols = np.empty((c, k, k, ho, wo), dtype=x.dtype)
    for u in range(k):  # one strided slice per kernel offset (u, v)
        for v in range(k):
            cols[:, u, v] = xpad[:, u * d: u * d + s * (ho - 1) + 1: s,
                                 v * d: v * d + s * (wo - 1) + 1: s]
    return cols.reshape(c * k * k, ho * wo)
