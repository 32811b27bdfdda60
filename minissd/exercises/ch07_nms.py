"""Chapter 07 (non-maximum suppression): checker for greedy NMS.

``check_nms(fn)`` holds the learner's ``fn(boxes, scores, iou_threshold)`` to
``minissd.boxes.nms_reference`` on hand-made cases (empty input, one box, identical boxes,
equal scores, an IoU exactly at the threshold, disjoint boxes) and on drawn clusters of boxes.
"""

from __future__ import annotations

import numpy as np

from minissd.boxes import nms_reference

from . import run_safely, verdict

WHAT = "greedy NMS matches minissd.boxes.nms_reference"


def _cases():
    """``(name, boxes (K, 4), scores (K,), iou_threshold, hint)``."""
    yield ("empty input", np.zeros((0, 4)), np.zeros(0), 0.5,
           "no boxes in, no indices out: return an empty int64 array")
    yield ("one box", np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([0.3]), 0.5,
           "a single box is always kept")
    yield ("two overlapping boxes", np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]]),
           np.array([0.6, 0.9]), 0.5,
           "walk the boxes by descending score: the higher-scored box 1 comes first and "
           "suppresses box 0 (IoU 0.68 > 0.5)")
    yield ("disjoint boxes are all kept",
           np.array([[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0]]),
           np.array([0.2, 0.9, 0.5]), 0.3,
           "boxes that do not overlap never suppress each other; return them by descending "
           "score")
    yield ("identical boxes with equal scores: the lower index wins",
           np.array([[1.0, 1.0, 5.0, 5.0]] * 4), np.array([0.7, 0.7, 0.7, 0.7]), 0.5,
           "rank with a stable sort on -score (np.argsort(-scores, kind='stable')): equal "
           "scores keep the lower index first, so index 0 is kept")
    yield ("IoU exactly at the threshold is NOT suppressed",
           np.array([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]]),  # IoU = 1/3
           np.array([0.9, 0.8]), 1.0 / 3.0,
           "suppress only when IoU is strictly greater than the threshold (IoU > t, not >=)")
    yield ("a suppressed box suppresses nothing",
           np.array([[0.0, 0.0, 10.0, 10.0], [3.0, 0.0, 13.0, 10.0], [6.0, 0.0, 16.0, 10.0]]),
           np.array([0.9, 0.8, 0.7]), 0.5,
           "compare each candidate only with the boxes already KEPT: box 1 is suppressed by "
           "box 0, so box 2 (IoU 0.25 with box 0) survives")
    yield ("zero-area boxes", np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0],
                                        [0.0, 0.0, 2.0, 2.0]]),
           np.array([0.5, 0.4, 0.3]), 0.0,
           "an empty box has IoU 0 with everything (union 0 -> IoU 0, never NaN)")
    rng = np.random.default_rng(7)
    for k in range(150):
        n = int(rng.integers(1, 40))
        centres = rng.uniform(0, 100, (int(rng.integers(1, 5)), 2))
        c = centres[rng.integers(len(centres), size=n)] + rng.normal(0, 6, (n, 2))
        wh = rng.uniform(5, 30, (n, 2))
        boxes = np.round(np.concatenate([c - wh / 2, c + wh / 2], axis=1), 1)
        scores = np.round(rng.random(n), 1)  # rounded: many ties
        if k % 5 == 0:
            boxes[rng.integers(n)] = boxes[0]  # an exact duplicate
        yield (f"drawn boxes #{k} ({n} boxes)", boxes, scores,
               float(rng.choice([0.0, 0.3, 0.45, 0.5, 0.7, 1.0])), "")


def check_nms(fn) -> bool:
    """``fn(boxes (K, 4) corners, scores (K,), iou_threshold) -> (k,) int indices`` of the kept
    boxes, by descending score."""
    for name, boxes, scores, thr, hint in _cases():
        ok, got = run_safely(f"{WHAT} [case '{name}']", fn, boxes.copy(), scores.copy(), thr)
        if not ok:
            return False
        want = nms_reference(boxes, scores, thr)
        if got is None:
            return verdict(False, WHAT, f"case '{name}': returned None; return an array of "
                                        f"indices (empty when nothing is kept)" + f"; {hint}")
        got = np.asarray(got).reshape(-1)
        if got.size and got.dtype.kind not in "iu":
            return verdict(False, WHAT, f"case '{name}': returned dtype {got.dtype}; return "
                                        f"integer indices into boxes, not a mask or scores")
        if got.tolist() == want.tolist():
            continue
        where = next((j for j in range(min(len(got), len(want))) if got[j] != want[j]), None)
        if where is not None:
            detail = (f"kept position {where}: you keep box {int(got[where])}, the reference "
                      f"keeps box {int(want[where])} (reference: {want.tolist()})")
        elif len(got) > len(want):
            detail = (f"you keep {len(got)} boxes, the reference {len(want)}: box "
                      f"{int(got[len(want)])} should have been suppressed")
        else:
            detail = (f"you keep {len(got)} boxes, the reference {len(want)}: box "
                      f"{int(want[len(got)])} is missing")
        return verdict(False, WHAT, f"case '{name}', threshold {thr:g}: {detail}"
                                    + (f"; {hint}" if hint else ""))
    return verdict(True, WHAT + " on 158 cases (empty, identical boxes, ties, IoU at the "
                                "threshold, drawn clusters)")
