"""Worked solutions for chapters/07_nms_kernels.ipynb (the notebook has imported numpy as np
and minissd.boxes as B; ``detect`` uses the notebook's ``greedy_nms``, exercise 1)."""

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


def detect(loc, conf, priors, variances=(0.1, 0.1, 0.2, 0.2), score_threshold=0.01,
           pre_nms_top_k=400, nms_threshold=0.45, keep_top_k=200):
    """One image's detections from the network's outputs (the paper's Sec. 3, Caffe's
    DetectionOutput).

    Args:
        loc: (P, 4) predicted offsets; conf: (P, C) class scores, column 0 the background;
        priors: (P, 4) default boxes, centre form, normalised.
    Returns:
        (boxes (D, 4) normalised corners clipped to [0, 1], labels (D,) 0-based object classes,
        scores (D,)), by descending score; equal scores: the lower class, then the lower box.
    """
    z = conf - conf.max(axis=1, keepdims=True)  # softmax over the classes of each box
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    boxes = np.clip(B.decode(loc, priors, variances), 0.0, 1.0)
    found_boxes, found_labels, found_scores = [], [], []
    for c in range(1, conf.shape[1]):  # every object class; column 0 is the background
        candidates = np.flatnonzero(probs[:, c] > score_threshold)
        best = np.argsort(-probs[candidates, c], kind="stable")[:pre_nms_top_k]
        candidates = np.sort(candidates[best])  # the class's 400 best, in box order
        keep = candidates[greedy_nms(boxes[candidates], probs[candidates, c], nms_threshold)]
        keep = np.sort(keep)  # box order within the class: ties then keep it
        found_boxes.append(boxes[keep])
        found_labels.append(np.full(len(keep), c - 1, dtype=np.int64))
        found_scores.append(probs[keep, c])
    boxes = np.concatenate(found_boxes) if found_boxes else np.zeros((0, 4))
    labels = np.concatenate(found_labels) if found_labels else np.zeros(0, dtype=np.int64)
    scores = np.concatenate(found_scores) if found_scores else np.zeros(0)
    order = np.argsort(-scores, kind="stable")[:keep_top_k]  # the image's 200 best
    return boxes[order], labels[order], scores[order]
