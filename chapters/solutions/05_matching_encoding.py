"""Worked solutions for chapter 05 (matching and encoding).

Each function has the name of an exercise in ``chapters/05_matching_encoding.ipynb``; the
chapter test replaces the exercise cell with this source, so a function may use only what the
notebook has imported before it (``np``).
"""

import numpy as np


def iou(a, b):
    """IoU (Jaccard overlap) of every pair of corner boxes.

    a: (N, 4), b: (M, 4) corners (x1, y1, x2, y2) -> (N, M) float array, out[i, j] =
    area(a_i ∩ b_j) / area(a_i ∪ b_j). Widths and heights are clamped at 0 (an inverted or
    degenerate box has area 0), and the IoU is 0 where the union is 0.
    """
    a = np.asarray(a, dtype=np.float64)[:, None, :]  # (N, 1, 4)
    b = np.asarray(b, dtype=np.float64)[None, :, :]  # (1, M, 4)
    inter_w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    inter_h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    inter = inter_w * inter_h  # (N, M)
    area_a = np.maximum(a[..., 2] - a[..., 0], 0) * np.maximum(a[..., 3] - a[..., 1], 0)
    area_b = np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def encode(matched, priors, variances):
    """SSD's regression targets of ground-truth boxes relative to their priors.

    matched: (P, 4) corners (x1, y1, x2, y2), the ground truth each prior matched;
    priors: (P, 4) centre form (cx, cy, w, h); variances: 4 numbers (v0, v1, v2, v3).
    Returns (P, 4): ((g_cx - d_cx) / (v0 d_w), (g_cy - d_cy) / (v1 d_h),
    log(g_w / d_w) / v2, log(g_h / d_h) / v3).
    """
    g_centre = (matched[:, :2] + matched[:, 2:]) / 2
    g_size = matched[:, 2:] - matched[:, :2]
    v = np.asarray(variances, dtype=np.float64)
    t_centre = (g_centre - priors[:, :2]) / (v[:2] * priors[:, 2:])
    t_size = np.log(g_size / priors[:, 2:]) / v[2:]
    return np.concatenate([t_centre, t_size], axis=1)
