"""Chapter 09 (VOC evaluation): checker for the VOC2007 11-point interpolated AP.

``check_eleven_point_ap(fn)`` holds the learner's ``fn(recall, precision)`` to
``minissd.eval.voc_ap(recall, precision, use_07_metric=True)`` on hand-made curves (empty,
recalls of exactly 3/10, 6/10 and 7/10, where the devkit's levels differ from ``k / 10`` and
from ``np.arange(0, 1.1, 0.1)``, a precision that rises again, a recall that stops short of 1)
and on drawn detection runs.
"""

from __future__ import annotations

import math

import numpy as np

from minissd.eval import voc_ap

from . import run_safely, verdict

WHAT = "11-point interpolated AP matches minissd.eval.voc_ap(..., use_07_metric=True)"


def _curve(tp, n_pos):
    """recall, precision after each detection of a TP/FP sequence (in score order)."""
    tp = np.asarray(tp, dtype=np.int64)
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(1 - tp)
    return tp_cum / n_pos, tp_cum / np.maximum(tp_cum + fp_cum, 1)


def _cases():
    """``(name, recall (D,), precision (D,), hint)``."""
    yield ("empty curve (no detections)", np.zeros(0), np.zeros(0),
           "with no detections the recall never reaches any level: every level contributes 0 "
           "(and np.max of an empty array raises)")
    yield ("perfect detector", *_curve([1] * 4, 4),
           "precision 1 at every recall level gives AP 1: 11 levels, t = 0, 0.1, ..., 1")
    yield ("recall exactly 3/10 at the last hit", *_curve([1, 1, 1, 0], 10),
           "take the devkit's levels, VOC07_RECALL_LEVELS: MATLAB's 0:0.1:1 makes its 0.3 "
           "level 3*0.1 = 0.30000000000000004, which a recall of exactly 3/10 does not reach "
           "(k / 10 gives 0.3 and counts it)")
    for tenths in (6, 7):
        yield (f"recall exactly {tenths}/10 at the last hit", *_curve([1] * tenths + [0], 10),
               "take the devkit's levels, VOC07_RECALL_LEVELS: MATLAB's 0:0.1:1 counts its "
               "second half down from 1, so its 0.6 and 0.7 are the plain doubles, which "
               "recalls of exactly 6/10 and 7/10 reach; np.arange(0, 1.1, 0.1) gives "
               "0.6000000000000001 and 0.7000000000000001 there")
    yield ("precision rises again later", *_curve([1, 0, 0, 1, 1, 1], 5),
           "at each level t take the HIGHEST precision over all points with recall >= t "
           "(the interpolation), not the precision where recall first reaches t")
    yield ("recall stops short of 1", *_curve([0, 1, 1, 0, 1], 8),
           "levels the recall never reaches contribute precision 0")
    yield ("first detection is a false positive", *_curve([0, 0, 1], 1),
           "level t = 0 counts too: the best precision anywhere on the curve")
    rng = np.random.default_rng(9)
    for k in range(100):
        d = int(rng.integers(1, 30))
        tp = (rng.random(d) < rng.uniform(0.1, 0.9)).astype(np.int64)
        n_pos = max(int(tp.sum()) + int(rng.integers(0, 5)), 1)
        yield (f"drawn curve #{k} ({d} detections, {n_pos} positives)", *_curve(tp, n_pos), "")


def check_eleven_point_ap(fn) -> bool:
    """``fn(recall (D,), precision (D,)) -> float``, the VOC2007 AP."""
    n_cases = 0
    for name, recall, precision, hint in _cases():
        n_cases += 1
        ok, got = run_safely(f"{WHAT} [case '{name}']", fn, recall.copy(), precision.copy())
        if not ok:
            return False
        want = voc_ap(recall, precision, use_07_metric=True)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return verdict(False, WHAT, f"case '{name}': return one number, got "
                                        f"{type(got).__name__}")
        if not (math.isfinite(got) and abs(got - want) <= 1e-12):
            return verdict(False, WHAT, f"case '{name}': you get {got:.6f}, expected "
                                        f"{want:.6f}" + (f"; {hint}" if hint else
                                                         "; recall " + np.array2string(
                                                             recall, precision=3)))
    return verdict(True, WHAT + f" on {n_cases} curves (empty, recalls of exactly 3/10, 6/10 "
                                f"and 7/10, rising precision)")
