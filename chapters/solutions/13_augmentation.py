"""Worked solutions for chapters/13_augmentation.ipynb (the notebook has imported numpy as np)."""

import numpy as np


def crop_boxes(boxes, labels, patch):
    """The ground truth of a crop.

    boxes: (K, 4) float pixel corners x1, y1, x2, y2; labels: (K,) ints;
    patch: (4,) int pixel corners px1, py1, px2, py2 of the crop.
    Returns (boxes (K', 4) in the patch's pixel coordinates, labels (K',)): the boxes whose
    centre lies in the patch (borders included), in their original order, clipped to the patch.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    px1, py1, px2, py2 = (float(v) for v in patch)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    keep = (cx >= px1) & (cx <= px2) & (cy >= py1) & (cy <= py2)
    kept = boxes[keep].copy()
    kept[:, 0::2] = np.clip(kept[:, 0::2], px1, px2) - px1  # x1, x2
    kept[:, 1::2] = np.clip(kept[:, 1::2], py1, py2) - py1  # y1, y2
    return kept, np.asarray(labels)[keep]
