"""Worked solutions for chapters/09_evaluation.ipynb (the notebook has imported numpy as np)."""

import numpy as np

from minissd.eval import VOC07_RECALL_LEVELS  # the notebook imports it too


def eleven_point_ap(recall, precision):
    """The VOC2007 11-point interpolated average precision.

    Args:
        recall: (D,) recall after each detection (detections by descending score).
        precision: (D,) precision after each detection.
    Returns:
        float: the mean over the devkit's 11 levels t = 0, 0.1, ..., 1 (VOC07_RECALL_LEVELS,
        MATLAB's 0:0.1:1) of the highest precision at recall >= t (0 where recall never
        reaches t).
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    total = 0.0
    for t in VOC07_RECALL_LEVELS:
        reached = recall >= t
        total += precision[reached].max() if reached.any() else 0.0
    return total / len(VOC07_RECALL_LEVELS)
