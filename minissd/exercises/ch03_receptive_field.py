"""Checkers for chapter 03 (SSD300's layers): the receptive field of a stack of layers.

``check_receptive_field(receptive_field)`` compares the learner's closed form with a brute-force
measurement made with minissd's own autograd: build the layers as a 1-D network of all-ones
convolutions (no padding), send a gradient of 1 back from one output position, and see which
input positions receive gradient. The extent of those positions is the receptive field; how far
it moves between output positions 0 and 1 is the jump (the effective stride). The cases are
VGG16's known values (conv4_3: 92 pixels, jump 8), then layer lists drawn by hypothesis and
shrunk to the smallest failing one.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from ..autograd import Tensor, conv2d
from . import run_safely, verdict
from .ch01_autograd import smallest_failure

#: VGG16 up to conv4_3 and conv5_3 as (kernel, stride, dilation): convs 3/1/1, pools 2/2/1.
_C, _P = (3, 1, 1), (2, 2, 1)
VGG16_CONV4_3 = (_C, _C, _P, _C, _C, _P, _C, _C, _C, _P, _C, _C, _C)
VGG16_CONV5_3 = VGG16_CONV4_3 + (_P, _C, _C, _C)
KNOWN = (("one 3x3 conv", (_C,), (3, 1)),
         ("a 2x2/2 pool then a 3x3 conv", (_P, _C), (6, 2)),
         ("one 3x3 conv with dilation 6 (fc6)", ((3, 1, 6),), (13, 1)),
         ("VGG16 up to conv4_3", VGG16_CONV4_3, (92, 8)),
         ("VGG16 up to conv5_3", VGG16_CONV5_3, (196, 16)))


def _input_gradient(layers, length, position):
    """Gradient reaching a (length,) input from output ``position`` of the 1-D network."""
    x = Tensor(np.zeros((1, 1, length, 1)), requires_grad=True)
    h = x
    for kernel, stride, dilation in layers:
        h = conv2d(h, Tensor(np.ones((1, 1, kernel, 1))), None, (stride, 1), 0, (dilation, 1))
    g = np.zeros(h.shape)
    g[0, 0, position, 0] = 1.0
    h.backward(g)
    return x.grad[0, 0, :, 0]


def brute_force_receptive_field(layers):
    """``(rf, jump)`` of ``layers`` [(kernel, stride, dilation), ...], measured by autograd.

    The input is made long enough for two output positions (an upper bound: every layer's span
    times the product of all strides). Padding does not change the receptive field's size, so
    the network has none and output 0 sees input positions ``0 .. rf - 1``.
    """
    layers = [tuple(int(v) for v in layer) for layer in layers]
    all_strides = math.prod(s for _, s, _ in layers)
    length = 1 + sum((k - 1) * d for k, _, d in layers) * all_strides + all_strides
    first = np.flatnonzero(_input_gradient(layers, length, 0))
    second = np.flatnonzero(_input_gradient(layers, length, 1))
    return int(first[-1] - first[0] + 1), int(second[0] - first[0])


def _problem(receptive_field, name=None, expected=None):
    def problem(layers):
        layers = [tuple(layer) for layer in layers]
        want = expected if expected is not None else brute_force_receptive_field(layers)
        label = name or f"layers {layers}"
        try:
            got = receptive_field([tuple(layer) for layer in layers])
        except Exception as exc:  # noqa: BLE001
            return f"for {label}: it raised {type(exc).__name__}: {exc}"
        try:
            rf, jump = (int(v) for v in got)
            assert (rf, jump) == tuple(got)
        except Exception:  # noqa: BLE001
            return f"for {label}: return a pair of ints (rf, jump), got {got!r}"
        if (rf, jump) == want:
            return None
        source = "known value" if expected is not None else "brute force (autograd)"
        hint = ("the jump is the distance, in input pixels, between neighbouring outputs: the "
                "product of the strides so far" if jump != want[1] else
                "each layer widens the field by (kernel - 1) * dilation input steps of the jump "
                "of the layers BEFORE it")
        return (f"for {label}: {source} gives (rf, jump) = {want}, yours {(rf, jump)}; {hint}")

    return problem


def check_receptive_field(receptive_field) -> bool:
    """``receptive_field([(kernel, stride, dilation), ...]) -> (rf, jump)``."""
    what = "receptive_field: matches known VGG16 values and an autograd brute force"
    ok, _ = run_safely(what, receptive_field, [(3, 1, 1)])
    if not ok:
        return False
    for name, layers, expected in KNOWN:
        message = _problem(receptive_field, name, expected)(layers)
        if message:
            return verdict(False, what, message)
    layer = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))
    found = smallest_failure(st.lists(layer, min_size=1, max_size=5), _problem(receptive_field),
                             max_examples=40)
    if found:
        return verdict(False, what, found[1])
    return verdict(True, what + f" ({len(KNOWN)} known stacks, 40 drawn layer lists)")
