"""Worked solutions for chapter 01 (autograd).

Each function has the name of an exercise in ``chapters/01_autograd.ipynb``; the chapter test
replaces the exercise cell with this source, so a function may use only what the notebook has
imported before it (``Tensor``).
"""

from minissd.autograd import Tensor


def sigmoid(x):
    """The logistic function ``1 / (1 + exp(-x))`` as one graph node.

    x: Tensor of any shape -> Tensor of the same shape. Backward: ``g * y * (1 - y)``.
    """
    xp = x.xp
    # exp(-|x|) never overflows; the two branches are the same function rearranged.
    e = xp.exp(-xp.abs(x.data))
    y = xp.where(x.data >= 0, 1 / (1 + e), e / (1 + e))

    def backward(g):
        return (g * y * (1 - y),)

    return Tensor.from_op(y, (x,), backward, "sigmoid")


def add_channel_bias(x, b):
    """``x + b`` with ``b`` broadcast over batch and space, as one graph node.

    x: Tensor (N, C, H, W); b: Tensor (C,) -> Tensor (N, C, H, W).
    Backward: x gets ``g`` unchanged; b[c] gets the sum of ``g`` over every (n, h, w) it touched.
    """
    y = x.data + b.data[None, :, None, None]

    def backward(g):
        return g, g.sum(axis=(0, 2, 3))

    return Tensor.from_op(y, (x, b), backward, "add_channel_bias")
