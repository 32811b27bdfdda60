"""Chapter 13 (augmentation): checker for how the ground-truth boxes follow a crop.

``check_crop_boxes(fn)`` holds the learner's ``fn(boxes, labels, patch)`` to the boxes and labels
that ``minissd.data.transforms.crop`` returns (Caffe's ``emit_type: CENTER``: keep the boxes whose
centre lies in the patch, borders included, clip them to the patch, move them into its
coordinates) on hand-made cases and on drawn ones. A wrong answer is told which of the three
rules it breaks: the kept set, the clipping, or the move.
"""

from __future__ import annotations

import numpy as np

from ..data.transforms import crop
from . import run_safely, verdict

WHAT = "crop_boxes matches minissd.data.transforms.crop (keep by centre, clip, move)"


def _cases():
    """``(name, boxes (K, 4), labels (K,), patch (4,))``, images 100 x 100."""
    patch = np.array([10, 20, 60, 80])
    yield "a box inside the patch", np.array([[20.0, 30.0, 40.0, 50.0]]), np.array([3]), patch
    yield ("a box cut by the patch's border, its centre inside",
           np.array([[40.0, 30.0, 75.0, 50.0]]), np.array([1]), patch)
    yield ("a box mostly inside, its centre outside", np.array([[30.0, 60.0, 50.0, 110.0]]),
           np.array([2]), patch)
    yield ("a centre exactly on the patch's border", np.array([[50.0, 30.0, 70.0, 50.0]]),
           np.array([4]), patch)
    yield ("three boxes, the middle one dropped",
           np.array([[20.0, 30.0, 40.0, 50.0], [70.0, 0.0, 90.0, 10.0], [15.0, 70.0, 35.0, 90.0]]),
           np.array([0, 1, 2]), patch)
    yield "no boxes", np.zeros((0, 4)), np.zeros(0, dtype=np.int64), patch
    yield ("the whole image as the patch",
           np.array([[0.0, 0.0, 100.0, 100.0], [5.0, 5.0, 9.0, 9.0]]), np.array([1, 2]),
           np.array([0, 0, 100, 100]))
    rng = np.random.default_rng(13)
    for k in range(300):
        x1, y1 = rng.integers(0, 70, 2)
        w, h = rng.integers(1, 100 - x1 + 1), rng.integers(1, 100 - y1 + 1)
        patch = np.array([x1, y1, x1 + w, y1 + h])
        n = int(rng.integers(0, 6))
        size = patch[2:] - patch[:2]
        centres = rng.uniform(patch[:2] - 0.3 * size, patch[2:] + 0.3 * size, (n, 2))
        half = rng.uniform(0.5, 30, (n, 2))  # around the patch: kept, cut and dropped boxes
        boxes = np.hstack([centres - half, centres + half])
        labels = rng.integers(0, 5, n)
        yield f"drawn case #{k} ({n} boxes, patch {patch.tolist()})", boxes, labels, patch


def _expected(boxes, labels, patch):
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    _, want_boxes, want_labels = crop(image, boxes.astype(np.float32), labels, patch)
    return want_boxes.astype(np.float64), np.asarray(want_labels)


def _keep(boxes, patch):
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return ((centres[:, 0] >= patch[0]) & (centres[:, 0] <= patch[2])
            & (centres[:, 1] >= patch[1]) & (centres[:, 1] <= patch[3]))


def _diagnose(name, boxes, labels, patch, got_boxes, got_labels, want_boxes, want_labels):
    """The pointer: which rule does the answer break?"""
    if len(got_boxes) != len(want_boxes):
        return (f"case '{name}': you keep {len(got_boxes)} boxes, the crop keeps "
                f"{len(want_boxes)}; keep a box exactly when its CENTRE ((x1 + x2) / 2, "
                f"(y1 + y2) / 2) lies in the patch, borders included (not by overlap, not only "
                f"boxes wholly inside)")
    if not np.array_equal(got_labels, want_labels):
        return (f"case '{name}': labels {got_labels.tolist()}, expected "
                f"{want_labels.tolist()}; the labels must follow the kept boxes, in order")
    keep = _keep(boxes, patch)
    origin = np.array([patch[0], patch[1], patch[0], patch[1]], dtype=np.float64)
    unclipped = boxes[keep] - origin
    unmoved = want_boxes + origin
    if np.allclose(got_boxes, unclipped, atol=1e-4):
        return (f"case '{name}': you get {np.round(got_boxes, 2).tolist()}, expected "
                f"{np.round(want_boxes, 2).tolist()}; clip the kept boxes to the patch before "
                f"moving them (a cut object keeps only its visible part)")
    if np.allclose(got_boxes, unmoved, atol=1e-4):
        return (f"case '{name}': you get {np.round(got_boxes, 2).tolist()}, expected "
                f"{np.round(want_boxes, 2).tolist()}; move the boxes into the patch's "
                f"coordinates: subtract its top-left corner (px1, py1)")
    return (f"case '{name}': you get {np.round(got_boxes, 2).tolist()}, expected "
            f"{np.round(want_boxes, 2).tolist()} (patch {np.asarray(patch).tolist()})")


def check_crop_boxes(fn) -> bool:
    """``fn(boxes (K, 4), labels (K,), patch (4,)) -> (boxes (K', 4), labels (K',))``."""
    n_cases = 0
    for name, boxes, labels, patch in _cases():
        n_cases += 1
        ok, got = run_safely(f"{WHAT} [case '{name}']", fn, boxes.copy(), labels.copy(),
                             patch.copy())
        if not ok:
            return False
        try:
            got_boxes, got_labels = got
            got_boxes = np.asarray(got_boxes, dtype=np.float64)
            got_labels = np.asarray(got_labels)
        except (TypeError, ValueError):
            return verdict(False, WHAT, f"case '{name}': return a pair (boxes (K', 4), labels "
                                        f"(K',)), got {type(got).__name__}")
        want_boxes, want_labels = _expected(boxes, labels, patch)
        if got_boxes.shape != want_boxes.shape or got_labels.shape != want_labels.shape:
            if len(got_boxes) == len(want_boxes) and len(got_labels) == len(want_labels):
                return verdict(False, WHAT, f"case '{name}': boxes of shape "
                                            f"{got_boxes.shape} and labels of shape "
                                            f"{got_labels.shape}, expected {want_boxes.shape} "
                                            f"and {want_labels.shape} (an empty result is a "
                                            f"(0, 4) array)")
        if (got_boxes.shape == want_boxes.shape and np.allclose(got_boxes, want_boxes, atol=1e-4)
                and np.array_equal(got_labels, want_labels)):
            continue
        return verdict(False, WHAT, _diagnose(name, boxes, labels, patch, got_boxes.reshape(-1, 4)
                                              if got_boxes.size else got_boxes,
                                              got_labels, want_boxes, want_labels))
    return verdict(True, WHAT + f" on {n_cases} cases (inside, cut, centre outside, centre on "
                                f"the border, no boxes, whole image)")
