"""Worked solutions for chapters/11_what_goes_wrong.ipynb (the notebook has imported numpy as np
and ``iou`` from ``minissd.boxes``)."""

import numpy as np

from minissd.boxes import iou  # the notebook imports it too


def patch_satisfies(patch, boxes, min_iou, max_iou):
    """Caffe's SatisfySampleConstraint: is this crop patch acceptable?

    patch: (4,) corners x1, y1, x2, y2; boxes: (K, 4) ground-truth corners (K may be 0);
    min_iou, max_iou: a float or None (None: that bound is not checked).
    Returns a bool: True if both bounds are None, else True when at least one box has
    min_iou <= IoU(patch, box) <= max_iou.
    """
    if min_iou is None and max_iou is None:
        return True
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    overlap = iou(np.asarray(patch, dtype=np.float64).reshape(1, 4), boxes)[0]  # (K,)
    ok = np.ones(len(overlap), dtype=bool)
    if min_iou is not None:
        ok &= overlap >= min_iou
    if max_iou is not None:
        ok &= overlap <= max_iou
    return bool(ok.any())
