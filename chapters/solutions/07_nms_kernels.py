"""Worked solutions for chapters/07_nms_kernels.ipynb (the notebook has imported numpy as np)."""

import numpy as np


def greedy_nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression.

    Args:
        boxes: (K, 4) corners (x1, y1, x2, y2).
        scores: (K,) floats.
        iou_threshold: a box is suppressed when its IoU with an already kept box is > this.
    Returns:
        (k,) int64 indices of the kept boxes, by descending score (ties: lower index first).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    kept = []
    for i in order:
        suppressed = False
        for k in kept:
            iw = max(min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0]), 0.0)
            ih = max(min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1]), 0.0)
            inter = iw * ih
            union = area[i] + area[k] - inter
            iou = inter / union if union > 0 else 0.0
            if iou > iou_threshold:
                suppressed = True
                break
        if not suppressed:
            kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)
