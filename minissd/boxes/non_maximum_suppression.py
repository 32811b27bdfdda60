"""Non-maximum suppression: the greedy rule (the ``minissd.boxes`` docstring), its float64
references and the dispatch to the Numba and CUDA kernels."""

from __future__ import annotations

import numpy as np

from minissd.backend import get_array_module, is_cupy_array

from ._checks import _check_boxes, _check_count, _check_labels, _check_scores, _check_threshold
from .geometry import iou_elementwise


def nms_reference(boxes, scores, iou_threshold, *, pre_nms_top_k=None, top_k=None) -> np.ndarray:
    """Greedy NMS in float64, one candidate at a time, for reading; see ``nms`` for the contract."""
    boxes = _check_boxes(np.asarray(boxes), "boxes")
    scores = _check_scores(np.asarray(scores), boxes.shape[0], "scores", np)
    iou_threshold = _check_threshold(iou_threshold)
    boxes = boxes.astype(np.float64)
    order = np.argsort(-scores.astype(np.float64), kind="stable")  # ties: lower index first
    if pre_nms_top_k is not None:
        order = order[:pre_nms_top_k]
    kept: list[int] = []
    for i in order.tolist():
        if top_k is not None and len(kept) >= top_k:
            break
        # suppressed when its IoU with a box already kept is strictly greater than the threshold
        if not (iou_elementwise(boxes[kept], boxes[i]) > iou_threshold).any():
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


def batched_nms_reference(boxes, scores, labels, iou_threshold, *, pre_nms_top_k=None, top_k=None,
                          nms=None):
    """Per-class NMS by an explicit loop over classes, for reading; see ``batched_nms``.

    ``nms``: the single-class suppression run on each class's candidates,
    ``nms(boxes (K, 4), scores (K,), iou_threshold) -> (k,)`` kept indices (default
    ``nms_reference``; ``minissd.ssd.detect`` passes a learner's NMS here). Each class is cut to
    its ``pre_nms_top_k`` best-scored boxes (stable: ties keep the lower index) before it runs.
    """
    boxes = _check_boxes(np.asarray(boxes), "boxes")
    scores = _check_scores(np.asarray(scores), boxes.shape[0], "scores", np)
    labels = _check_labels(np.asarray(labels), boxes.shape[0], "labels", np)
    iou_threshold = _check_threshold(iou_threshold)
    suppress = nms_reference if nms is None else nms
    kept = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if pre_nms_top_k is not None:  # the class's best, back in index order
            best = np.argsort(-scores[members].astype(np.float64), kind="stable")
            members = np.sort(members[best[:pre_nms_top_k]])
        keep_c = np.asarray(suppress(boxes[members], scores[members], iou_threshold),
                            dtype=np.int64).reshape(-1)
        kept.append(members[keep_c])
    kept = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
    kept = kept[np.argsort(-scores[kept].astype(np.float64), kind="stable")]
    return kept[:top_k].astype(np.int64)


def _ranked(scores, labels, xp):
    """Indices sorting by (label ascending, score descending, index ascending)."""
    if xp is np:
        return np.lexsort((-scores, labels))  # lexsort is stable: ties keep index order
    n = scores.shape[0]
    index = xp.arange(n, dtype=xp.float64)
    keys = xp.stack([index, -scores.astype(xp.float64), labels.astype(xp.float64)])
    return xp.lexsort(keys)  # the index key makes the order explicit on any sort


def batched_nms(boxes, scores, labels, iou_threshold, *, pre_nms_top_k=None, top_k=None):
    """NMS within each class: boxes of different labels never suppress each other.

    boxes: (K, 4) corners; scores: (K,) floats; labels: (K,) ints (any values);
    iou_threshold: suppress when IoU with a kept box of the same label is > this.
    pre_nms_top_k: per label, only its ``pre_nms_top_k`` best-scored boxes are candidates
    (Caffe's ``top_k: 400``). top_k: at most this many indices are returned, over all
    labels (Caffe's ``keep_top_k: 200``).

    Returns (k,) int64 indices into ``boxes``, by descending score (ties: lower index
    first). Equals running ``nms`` on each label and merging (``batched_nms_reference``).
    """
    xp = get_array_module(boxes, scores, labels)
    boxes = _check_boxes(boxes, "boxes", xp)
    scores = _check_scores(scores, boxes.shape[0], "scores", xp)
    labels = _check_labels(labels, boxes.shape[0], "labels", xp)
    return _nms(boxes, scores, labels, _check_threshold(iou_threshold),
                _check_count(pre_nms_top_k, "pre_nms_top_k"), _check_count(top_k, "top_k"), xp)


def nms(boxes, scores, iou_threshold, *, pre_nms_top_k=None, top_k=None):
    """Greedy non-maximum suppression.

    boxes: (K, 4) corners; scores: (K,) floats; iou_threshold in [0, 1].
    Walking the boxes by descending score (stable: equal scores keep the lower index
    first), a box is suppressed when its IoU with an already kept box is strictly greater
    than ``iou_threshold``. pre_nms_top_k: only the ``pre_nms_top_k`` best-scored boxes are
    candidates (applied *before* suppression). top_k: at most this many kept boxes are
    returned (applied *after*; the first ``top_k`` of the full answer).

    Returns (k,) int64 indices into ``boxes``, by descending score. NumPy input runs the
    Numba kernel, CuPy input the CUDA bitmask kernel (``kernels/nms.cu``).
    """
    xp = get_array_module(boxes, scores)
    boxes = _check_boxes(boxes, "boxes", xp)
    scores = _check_scores(scores, boxes.shape[0], "scores", xp)
    labels = xp.zeros(boxes.shape[0], dtype=xp.int64)
    return _nms(boxes, scores, labels, _check_threshold(iou_threshold),
                _check_count(pre_nms_top_k, "pre_nms_top_k"), _check_count(top_k, "top_k"), xp)


def best_per_label(scores, labels, k):
    """The candidates a per-label ``pre_nms_top_k = k`` cut keeps, as ascending indices.

    scores: (K,) floats; labels: (K,) ints; k >= 0. Each label keeps its ``k`` best scores; ties
    at the k-th score go to the lower indices (``nms_reference``'s stable order). On NumPy one
    partition per label finds them instead of one sort of everything (SSD300 detection: 20
    classes x 8732 boxes an image, 400 kept a class); on CuPy, ranking everything and cutting.
    """
    xp = get_array_module(scores, labels)
    if xp is not np:
        order = _ranked(scores, labels, xp)
        ranked_labels = labels[order]
        rank = xp.arange(order.shape[0]) - xp.searchsorted(ranked_labels, ranked_labels)
        return xp.sort(order[rank < k])
    if k == 0 or scores.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    by_label = np.argsort(labels, kind="stable")  # each label's members in index order
    starts = np.flatnonzero(np.diff(labels[by_label])) + 1
    kept = []
    for members in np.split(by_label, starts):
        if members.shape[0] > k:
            worse = -scores[members].astype(np.float64)  # smaller is better
            kth = np.partition(worse, k - 1)[k - 1]  # the k-th best score, negated
            chosen = worse < kth
            chosen[np.flatnonzero(worse == kth)[: k - int(chosen.sum())]] = True
            members = members[chosen]
        kept.append(members)
    return np.sort(np.concatenate(kept)).astype(np.int64)


def _nms(boxes, scores, labels, iou_threshold, pre_nms_top_k, top_k, xp):
    """Shared body of ``nms`` and ``batched_nms`` on validated inputs."""
    if boxes.shape[0] == 0:
        return xp.zeros(0, dtype=xp.int64)
    if xp is np and pre_nms_top_k is not None and boxes.shape[0] > pre_nms_top_k:
        # cut first, then rank only what is left: the same answer (the cut keeps index order,
        # so ties still fall to the lower index), far less sorting
        subset = best_per_label(scores, labels, pre_nms_top_k)
        kept = _nms(boxes[subset], scores[subset], labels[subset], iou_threshold, None, top_k,
                    xp)
        return subset[kept]
    # Rank by (label, -score, index); each label is then one contiguous segment.
    order = _ranked(scores, labels, xp)
    ranked_labels = labels[order]
    segment_start = xp.searchsorted(ranked_labels, ranked_labels, side="left")
    if pre_nms_top_k is not None:
        rank_in_segment = xp.arange(order.shape[0]) - segment_start
        order = order[rank_in_segment < pre_nms_top_k]
        ranked_labels = labels[order]
    ranked_boxes = boxes[order]

    if is_cupy_array(boxes):
        from minissd.kernels import cuda

        keep = cuda.nms_keep(ranked_boxes, ranked_labels, iou_threshold)
    else:
        from minissd.kernels import cpu

        starts = np.flatnonzero(np.diff(ranked_labels)) + 1
        segment_starts = np.concatenate([[0], starts, [order.shape[0]]]).astype(np.int64)
        # With one segment, a top_k lets the kernel stop early (same prefix as running on).
        max_keep = top_k if (top_k is not None and segment_starts.shape[0] == 2) else -1
        ranked_boxes = np.ascontiguousarray(ranked_boxes, dtype=np.float64)
        keep = cpu.nms_sorted_segments(ranked_boxes, segment_starts, iou_threshold, max_keep)
    kept = order[keep]
    if bool((ranked_labels[:-1] != ranked_labels[1:]).any()):
        # Several labels: merge them into one list by descending score, ties by lower index.
        kept = xp.sort(kept)
        kept = kept[_ranked(scores[kept], xp.zeros(kept.shape[0], dtype=xp.int64), xp)]
    if top_k is not None:
        kept = kept[:top_k]
    return kept.astype(xp.int64)
