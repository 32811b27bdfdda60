"""Checkers for chapter 04 (default boxes).

``check_map_priors(map_priors)`` compares the learner's default boxes of one square source map,
in the Caffe order, with ``minissd.priors.make_priors`` for a one-map ``PriorConfig``: first on
SSD300's six maps, then on maps drawn by hypothesis (size, step, sizes, aspect ratios) and
shrunk to the smallest failing one. The pointer names the first wrong row as a cell ``(i, j)``
and a box of that cell, says what that box should be, and recognises boxes that are right but
in the wrong order.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ..priors import SSD300, PriorConfig, make_priors
from . import run_safely, verdict
from .ch01_autograd import smallest_failure


def reference_map_priors(f, image_size, step, min_size, max_size, aspect_ratios):
    """The boxes ``make_priors`` gives for this one map (float64, (f*f*B, 4))."""
    config = PriorConfig(image_size=image_size, feature_maps=(f,),
                         aspect_ratios=(tuple(aspect_ratios),), steps=(step,),
                         min_sizes=(min_size,), max_sizes=(max_size,))
    return make_priors(config, dtype=np.float64)


def _box_name(b, ratios):
    if b == 0:
        return "box 0 (the min_size square)"
    if b == 1:
        return "box 1 (the sqrt(min_size * max_size) square)"
    r = ratios[(b - 2) // 2]
    if b % 2 == 0:
        return f"box {b} (ratio {r:g}: w = min_size*sqrt({r:g}), h = min_size/sqrt({r:g}))"
    return f"box {b} (ratio 1/{r:g}: the box before it with w and h swapped)"


def _sorted_rows(a):
    a = np.round(a, 6)
    return a[np.lexsort(a.T[::-1])]


def _call(case):
    f, size, step, lo, hi, ratios = case
    return (f"map_priors(f={f}, image_size={size}, step={step}, min_size={lo}, max_size={hi}, "
            f"aspect_ratios={tuple(ratios)})")


def _problem(map_priors):
    def problem(case):
        f, size, step, lo, hi, ratios = case
        expected = reference_map_priors(*case)
        try:
            got = np.asarray(map_priors(f, size, step, lo, hi, tuple(ratios)), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001
            return f"{_call(case)} raised {type(exc).__name__}: {exc}"
        per_cell = 2 + 2 * len(ratios)
        if got.shape != expected.shape:
            return (f"{_call(case)} has shape {got.shape}; expected (f*f*boxes per cell, 4) = "
                    f"({f}*{f}*{per_cell}, 4) = {expected.shape}")
        close = np.isclose(got, expected, rtol=1e-5, atol=1e-7).all(axis=1)
        if close.all():
            return None
        row = int(np.flatnonzero(~close)[0])
        cell, b = divmod(row, per_cell)
        i, j = divmod(cell, f)
        same_set = np.allclose(_sorted_rows(got), _sorted_rows(expected))
        order = (" -- the same boxes in another order: cells go row by row (i, the y index, "
                 "outer), then column by column (j, x), then box by box" if same_set else "")
        return (f"{_call(case)}: row {row} = cell (i={i}, j={j}), {_box_name(b, ratios)} is "
                f"{np.round(got[row], 5).tolist()}, expected (cx, cy, w, h) = "
                f"{np.round(expected[row], 5).tolist()}{order}")

    return problem


def check_map_priors(map_priors) -> bool:
    """``map_priors(f, image_size, step, min_size, max_size, aspect_ratios) -> (f*f*B, 4)``."""
    what = "map_priors: the boxes and order of make_priors (Caffe PriorBox)"
    ok, _ = run_safely(what, map_priors, 3, 300, 100, 213.0, 264.0, (2,))
    if not ok:
        return False
    problem = _problem(map_priors)
    for k, f in enumerate(SSD300.feature_maps):
        case = (f, 300, SSD300.steps[k], SSD300.min_sizes[k], SSD300.max_sizes[k],
                SSD300.aspect_ratios[k])
        message = problem(case)
        if message:
            return verdict(False, what, f"SSD300 map {k}: {message}")

    @st.composite
    def maps(draw):
        f = draw(st.integers(1, 6))
        size = draw(st.sampled_from([64, 100, 128, 300, 512]))
        step = draw(st.sampled_from([size / f, float(draw(st.integers(4, 64)))]))
        lo = float(draw(st.integers(4, size)))
        hi = lo + float(draw(st.integers(1, size)))
        ratios = draw(st.lists(st.sampled_from([2.0, 3.0, 1.5, 4.0]), max_size=3, unique=True))
        return f, size, step, lo, hi, tuple(ratios)

    found = smallest_failure(maps(), problem, max_examples=60)
    if found:
        return verdict(False, what, found[1])
    return verdict(True, what + " on SSD300's 6 maps and 60 drawn maps")
