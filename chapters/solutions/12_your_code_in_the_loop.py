"""Worked solutions for chapters/12_your_code_in_the_loop.ipynb: the chapters' own solutions,
pasted as a learner pastes theirs (the notebook has imported numpy as np). Each function is the
same source as in 05_matching_encoding.py, 06_multibox_loss.py or 07_nms_kernels.py
(tests/test_exercises_ch12.py holds them equal).
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


def match(overlaps, iou_threshold):
    """Which ground truth each default box takes: the authors' Caffe matching.

    overlaps: (G, P) IoU of every ground truth j with every default box i;
    iou_threshold: the threshold step's IoU (0.5).
    Returns gt_index (P,) int64: j where x_ij = 1, -1 for background.
    1. bipartite step: repeatedly take the largest IoU among (unmatched ground truth, free
       default box) pairs, ties to the lower default box, then the lower ground truth; only
       IoU > 0 counts.
    2. threshold step: every default box still free whose best IoU is >= iou_threshold (and
       > 0) takes the ground truth it overlaps most (the lower index on ties).
    """
    overlaps = np.asarray(overlaps, dtype=np.float64)
    num_gt, num_priors = overlaps.shape
    gt_index = np.full(num_priors, -1, dtype=np.int64)
    if num_gt == 0:
        return gt_index
    free = overlaps.copy()  # the pairs still open; a matched row or taken column becomes -1
    for _ in range(num_gt):
        top = free.max()
        if top <= 0:  # no open pair overlaps at all
            break
        rows, cols = np.nonzero(free == top)
        first = np.lexsort((rows, cols))[0]  # the lowest default box, then the lowest gt
        j, i = rows[first], cols[first]
        gt_index[i] = j
        free[j, :] = -1
        free[:, i] = -1
    best_gt = overlaps.argmax(axis=0)  # (P,), ties -> lower ground truth
    best_iou = overlaps.max(axis=0)
    take = (gt_index < 0) & (best_iou >= iou_threshold) & (best_iou > 0)
    gt_index[take] = best_gt[take]
    return gt_index


def encode(matched, priors, variances):
    """SSD's regression targets of ground-truth boxes relative to their priors.

    matched: (P, 4) corners (x1, y1, x2, y2), the ground truth each prior matched;
    priors: (P, 4) centre form (cx, cy, w, h); variances: 4 numbers (v0, v1, v2, v3).
    Returns (P, 4): ((g_cx - d_cx) / (v0 d_w), (g_cy - d_cy) / (v1 d_h),
    log(g_w / d_w) / v2, log(g_h / d_h) / v3), computed in the dtype of the inputs.
    """
    g_centre = (matched[:, :2] + matched[:, 2:]) / 2
    g_size = matched[:, 2:] - matched[:, :2]
    v = np.asarray(variances, dtype=priors.dtype)  # float32 boxes: float32 all the way
    t_centre = (g_centre - priors[:, :2]) / (v[:2] * priors[:, 2:])
    t_size = np.log(g_size / priors[:, 2:]) / v[2:]
    return np.concatenate([t_centre, t_size], axis=1)


def hard_negatives(conf_loss, labels, neg_pos_ratio):
    """Which default boxes take part in L_conf: the positives and the hard negatives.

    Args:
        conf_loss: (N, P) float, the cross-entropy of every default box.
        labels: (N, P) int, 0 = background (a negative), > 0 = a matched object class.
        neg_pos_ratio: keep at most this many negatives per positive, per image.
    Returns:
        (N, P) bool: True for every positive and for the neg_pos_ratio * (positives of the
        image) negatives with the highest loss (ties: lower prior index first).
    """
    positive = labels > 0
    num_pos = positive.sum(axis=1, keepdims=True)  # (N, 1), per image
    num_neg = np.minimum(neg_pos_ratio * num_pos, (~positive).sum(axis=1, keepdims=True))
    ranked = np.where(positive, -np.inf, conf_loss)  # positives rank last
    order = np.argsort(-ranked, axis=1, kind="stable")  # highest loss first, ties by index
    rank = np.argsort(order, axis=1, kind="stable")  # rank[i, j]: place of prior j in image i
    return positive | (rank < num_neg)


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
        k = boxes[kept]  # the boxes kept so far, (len(kept), 4)
        b = boxes[i]
        w = np.maximum(np.minimum(k[:, 2], b[2]) - np.maximum(k[:, 0], b[0]), 0)
        h = np.maximum(np.minimum(k[:, 3], b[3]) - np.maximum(k[:, 1], b[1]), 0)
        inter = w * h
        union = area[kept] + area[i] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        if not (iou > iou_threshold).any():  # no kept box overlaps it by more than the threshold
            kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)
