"""Chapter 11 (what goes wrong): checker for the IoU constraint of SSD's random crop.

``check_patch_satisfies(fn)`` holds the learner's ``fn(patch, boxes, min_iou, max_iou)`` to
``minissd.data.transforms.satisfies_constraint`` (Caffe's ``SatisfySampleConstraint``: ANY box
with ``min_iou <= IoU <= max_iou``, a ``None`` bound unchecked, no bound: every patch) on
hand-made cases, each the place where a known mistake shows (ssd.pytorch's ``and`` that never
rejects, ALL instead of ANY, ``>`` instead of ``>=``, an image without boxes, an upper bound),
then on drawn patches, boxes and bounds.
"""

from __future__ import annotations

import numpy as np

from ..data.transforms import PatchSampler, satisfies_constraint
from . import run_safely, verdict

WHAT = "patch_satisfies matches Caffe's rule (minissd.data.transforms.satisfies_constraint)"

PATCH = np.array([0.0, 0.0, 10.0, 10.0])


def _cases():
    """``(name, patch (4,), boxes (K, 4), min_iou, max_iou, hint)``."""
    yield ("no bounds, an image without boxes", PATCH, np.zeros((0, 4)), None, None,
           "with both bounds None every patch is accepted, whatever the boxes (Caffe's 'whole "
           "image' and unconstrained samplers)")
    yield ("min 0.7, one box at IoU 0.25", PATCH, np.array([[0.0, 0.0, 5.0, 5.0]]), 0.7, None,
           "no box reaches the minimum IoU, so the patch must be rejected (ssd.pytorch's "
           "`overlap.min() < min_iou and max_iou < overlap.max()` never rejects: with no upper "
           "bound its second half is never true)")
    yield ("min 0.5, one box at IoU exactly 0.5", PATCH, np.array([[0.0, 0.0, 10.0, 5.0]]), 0.5,
           None, "the bounds are inclusive: min_iou <= IoU (Caffe's SatisfySampleConstraint "
                 "rejects only overlap < min_jaccard_overlap)")
    yield ("min 0.7, boxes at IoU 0.25 and 1.0", PATCH,
           np.array([[0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 10.0, 10.0]]), 0.7, None,
           "one box within the bounds is enough: ANY box, not ALL boxes (a patch may cut the "
           "other objects)")
    yield ("min 0.1, an image without boxes", PATCH, np.zeros((0, 4)), 0.1, None,
           "with a bound, an image without boxes accepts no patch: there is no box to satisfy "
           "it (np.min/max of an empty array raise; any() of nothing is False)")
    yield ("min 0.3, max 0.5, one box at IoU 0.64", PATCH, np.array([[0.0, 0.0, 8.0, 8.0]]), 0.3,
           0.5, "check the upper bound too: IoU <= max_iou")
    yield ("max 0.5 only, one box at IoU 0.25", PATCH, np.array([[0.0, 0.0, 5.0, 5.0]]), None,
           0.5, "a None bound is not checked: with only max_iou = 0.5 an IoU of 0.25 passes")
    yield ("max 1.0 only, one box at IoU 0 (no overlap)", PATCH,
           np.array([[20.0, 20.0, 30.0, 30.0]]), None, 1.0,
           "Caffe's 'any overlap' sampler (max 1.0) accepts IoU 0 too: 0 <= 1.0")
    rng = np.random.default_rng(11)
    options = (None, 0.1, 0.3, 0.5, 0.7, 0.9)
    for k in range(300):
        x1, y1 = rng.uniform(0, 60, 2)
        patch = np.array([x1, y1, x1 + rng.uniform(5, 60), y1 + rng.uniform(5, 60)])
        n = int(rng.integers(0, 5))
        size = np.tile(patch[2:] - patch[:2], 2)
        boxes = patch + rng.normal(0, 0.4, (n, 4)) * size  # around the patch: all IoUs occur
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        lo = options[int(rng.integers(len(options)))]
        hi = (None, 1.0, float(rng.uniform(0.2, 1.0)))[int(rng.integers(3))]
        if lo is not None and hi is not None and hi < lo:
            lo, hi = hi, lo
        yield (f"drawn case #{k} ({n} boxes, min {lo}, max "
               f"{hi if hi is None else round(hi, 3)})", patch, boxes, lo, hi, "")


def _truth(patch, boxes, min_iou, max_iou) -> bool:
    sampler = PatchSampler(min_jaccard_overlap=min_iou, max_jaccard_overlap=max_iou)
    return satisfies_constraint(patch, boxes, sampler)


def check_patch_satisfies(fn) -> bool:
    """``fn(patch (4,), boxes (K, 4), min_iou, max_iou) -> bool``."""
    n_cases = 0
    for name, patch, boxes, lo, hi, hint in _cases():
        n_cases += 1
        ok, got = run_safely(f"{WHAT} [case '{name}']", fn, patch.copy(), boxes.copy(), lo, hi)
        if not ok:
            return False
        if not isinstance(got, (bool, np.bool_)):
            return verdict(False, WHAT, f"case '{name}': return one bool, got "
                                        f"{type(got).__name__} {got!r}")
        want = _truth(patch, boxes, lo, hi)
        if bool(got) != want:
            detail = hint or ("IoUs " + np.array2string(
                np.round(_ious(patch, boxes), 3)) + f", bounds [{lo}, {hi}]")
            return verdict(False, WHAT, f"case '{name}': you say {bool(got)}, Caffe's rule says "
                                        f"{want}; {detail}")
    return verdict(True, WHAT + f" on {n_cases} cases (no bounds, an IoU exactly at the bound, "
                                f"ANY box, no boxes, upper bounds)")


def _ious(patch, boxes):
    from ..boxes import iou

    return iou(np.reshape(patch, (1, 4)), np.reshape(boxes, (-1, 4)))[0]
