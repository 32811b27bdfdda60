"""PASCAL VOC detection evaluation: average precision with the rules of the official devkit.

The rules are those of ``VOCevaldet.m`` and ``VOCap.m`` in the VOC devkit (the same loop is
ported in py-faster-rcnn ``lib/datasets/voc_eval.py`` and ChainerCV
``chainercv/evaluations/eval_detection_voc.py``; the differences are listed at the end).
For each class ``c`` separately:

1. **Order.** All detections of class ``c`` from all images are sorted by descending score.
   Ties keep the input order, defined as image order, then the order inside the image (a stable
   sort, as MATLAB's ``sort``).
2. **Best ground truth.** Each detection, in that order, is compared with the ground-truth boxes
   of its own image and of class ``c``, difficult ones included, matched ones included. Only
   boxes that intersect it (intersection width and height both > 0) are candidates; of those
   it takes the one with the highest IoU (the first one on ties, the devkit's ``ov > ovmax``).
3. **Decision.** If that IoU ``>= iou_threshold`` (the devkit's ``ovmax >= minoverlap``):
   the ground truth is *difficult* -> the detection is ignored (neither TP nor FP);
   else it is not matched yet -> TP, and the ground truth becomes matched;
   else (already matched) -> FP, a duplicate detection.
   If the IoU is below the threshold, or no ground truth intersects it -> FP.
   A detection never falls back to its second-best ground truth.
4. **Positives.** ``npos`` is the number of *non-difficult* ground-truth boxes of class ``c``.
5. **Curves.** Over the sorted detections, ``recall = cumsum(tp) / npos`` and
   ``precision = cumsum(tp) / (cumsum(tp) + cumsum(fp))``. Ignored detections stay in the curve
   (they repeat the previous point). Where ``cumsum(tp) + cumsum(fp) == 0`` (only ignored
   detections so far) the precision is 0, not the devkit's NaN; MATLAB's ``max`` skips that NaN,
   so the AP is the same, except when every detection of a class is ignored: AP 0 here, NaN in
   the devkit.
6. **AP.** ``use_07_metric=True`` (VOC2007, the SSD paper's metric): the mean over the 11 recall
   levels ``t = 0, 0.1, ..., 1`` of the highest precision at recall ``>= t`` (0 if recall never
   reaches ``t``). The levels are the devkit's own doubles, ``VOC07_RECALL_LEVELS``: MATLAB's
   ``0:0.1:1`` makes its 0.3 level ``3*0.1 = 0.30000000000000004`` (a recall of exactly 3/10
   does not reach it) and its 0.6 and 0.7 levels the plain doubles 0.6 and 0.7 (recalls of
   exactly 6/10 and 7/10 do). ``k / 10`` differs at 0.3, ``np.arange(0, 1.1, 0.1)``
   (py-faster-rcnn, ChainerCV) at 0.6 and 0.7.
   ``use_07_metric=False`` (VOC2010 and later): the area under the precision envelope
   (precision made monotone non-increasing in recall), summed where recall changes.
7. **Classes without positives.** When ``npos == 0`` recall is undefined: the class's recall
   array is NaN, its AP is NaN, and the mAP (``nanmean`` of the APs) leaves it out, as in
   ChainerCV. Under the devkit every VOC class has positives in every test set, so this never
   arises there.
8. **Pixels.** Boxes are ``(x1, y1, x2, y2)`` in pixels with *inclusive* corners, as in the
   VOC annotations: a box's width is ``x2 - x1 + 1`` and the intersection width is
   ``min(x2) - max(x1) + 1`` (``plus_one=True``, the devkit). ``plus_one=False`` measures
   continuous boxes instead (width ``x2 - x1``).

Differences from the usual Python ports. py-faster-rcnn ``voc_eval.py`` tests
``ovmax > ovthresh``: a detection at exactly IoU 0.5 is a FP there, a TP here, in the devkit and
in ChainerCV (``gt_index[iou.max(axis=1) < iou_thresh] = -1`` keeps it). Neither sorts stably:
py-faster-rcnn uses ``np.argsort(-confidence)``, ChainerCV ``argsort()[::-1]``, so tied scores
may come out in another order than the devkit's. Both take the 11-point levels from
``np.arange(0., 1.1, 0.1)`` (point 6). py-faster-rcnn's precision ``tp / (tp + fp)`` divides 0
by 0 while only ignored detections have been seen (ChainerCV gets NaN there too and turns it
into 0 with ``np.nan_to_num``, as point 5 does), and its recall divides by ``npos = 0``.

Inputs are checked before anything is counted: boxes finite with ``x1 <= x2`` and ``y1 <= y2``,
labels integers in ``[0, n_classes)``, scores finite, difficult flags boolean (or 0/1), one
entry per image in every list, the arrays of an image of matching lengths. A violation is a
``ValueError`` naming the argument and the image (``pred_boxes[3]``), never an AP computed
from it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from minissd.backend import to_numpy

__all__ = ["VOC07_RECALL_LEVELS", "VOCEvalResult", "eval_detection_voc", "voc_ap", "devkit_iou"]

#: The 11 recall levels of the VOC2007 AP, as the devkit's ``for t=0:0.1:1`` makes them.
#: MATLAB builds ``a:d:b`` (here ``n = 10`` steps) symmetrically about its middle: the point
#: ``k`` is ``a + k*d`` for ``k < n/2`` and ``b - (n-k)*d`` from the middle on. In doubles:
#: ``3*0.1 = 0.30000000000000004``, while ``1 - 4*0.1 = 0.6`` and ``1 - 3*0.1 = 0.7`` exactly
#: (``k / 10`` gives 0.3 at k = 3; ``np.arange(0, 1.1, 0.1)`` gives 0.6000000000000001 and
#: 0.7000000000000001 at k = 6, 7). Every other level equals ``k / 10``.
VOC07_RECALL_LEVELS = tuple(k * 0.1 if k < 5 else 1.0 - (10 - k) * 0.1 for k in range(11))


@dataclass(frozen=True)
class VOCEvalResult:
    """What :func:`eval_detection_voc` returns (``C`` classes, ``D_c`` detections of class c).

    Attributes:
        ap: ``(C,)`` float64, the average precision of each class; NaN for a class without
            non-difficult ground truth (``n_positives[c] == 0``).
        map: the mean of ``ap`` over classes with positives (NaN if there are none).
        precision: list of ``C`` arrays ``(D_c,)`` float64, the precision after each detection
            of class c, detections in descending score order.
        recall: list of ``C`` arrays ``(D_c,)`` float64, the recall after each detection; all
            NaN when ``n_positives[c] == 0``.
        scores: list of ``C`` arrays ``(D_c,)`` float64, the detection scores in that order
            (the operating point of each curve point).
        n_positives: ``(C,)`` int64, the non-difficult ground-truth boxes of each class.
        iou_threshold, use_07_metric, plus_one: the settings that produced the numbers.
    """

    ap: np.ndarray
    map: float
    precision: list
    recall: list
    scores: list
    n_positives: np.ndarray
    iou_threshold: float
    use_07_metric: bool
    plus_one: bool

    @property
    def n_classes(self) -> int:
        return len(self.ap)

    @property
    def n_detections(self) -> np.ndarray:
        """``(C,)`` int64, the detections of each class."""
        return np.array([len(p) for p in self.precision], dtype=np.int64)

    @property
    def metric_name(self) -> str:
        return "VOC2007 11-point" if self.use_07_metric else "VOC2010+ area"


def devkit_iou(boxes_a, boxes_b, plus_one: bool = True) -> np.ndarray:
    """IoU of every pair, with the devkit's rule for which pairs count.

    Args:
        boxes_a: ``(N, 4)`` corners ``x1, y1, x2, y2`` in pixels.
        boxes_b: ``(M, 4)`` same format.
        plus_one: inclusive pixel corners (width ``x2 - x1 + 1``), as the devkit.

    Returns:
        ``(N, M)`` float64 IoU. Pairs that do not intersect (intersection width or height
        ``<= 0``) get ``-inf``: the devkit never considers them, even at threshold 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64)
    b = np.asarray(boxes_b, dtype=np.float64)
    one = 1.0 if plus_one else 0.0
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    intersects = (iw > 0) & (ih > 0)
    inter = np.where(intersects, iw * ih, 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where(intersects, iou, -np.inf)


def voc_ap(recall, precision, use_07_metric: bool = True) -> float:
    """Average precision from a precision/recall curve (``VOCap.m`` and the VOC2007 variant).

    Args:
        recall: ``(D,)`` recall after each detection, non-decreasing, finite.
        precision: ``(D,)`` precision after each detection, finite.
        use_07_metric: True for the VOC2007 11-point interpolated AP, False for the VOC2010+
            area under the monotone precision envelope.

    Returns:
        The AP, a float in [0, 1] (0 for an empty curve).
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.shape != precision.shape or recall.ndim != 1:
        raise ValueError(
            f"recall and precision must be 1-D of the same length, got shapes "
            f"{recall.shape} and {precision.shape}"
        )
    for name, x in (("recall", recall), ("precision", precision)):
        bad = np.flatnonzero(~np.isfinite(x))
        if bad.size:
            raise ValueError(f"{name} must be finite, got {name}[{bad[0]}] = {x[bad[0]]}")
    if use_07_metric:
        best = []
        for t in VOC07_RECALL_LEVELS:  # the devkit's doubles, see the module docstring (point 6)
            reached = recall >= t
            best.append(precision[reached].max() if reached.any() else 0.0)
        # sum, then divide: 11 precisions of 1 give exactly 1 (the devkit's `ap += p / 11`
        # gives 1.0000000000000002)
        return float(sum(best) / len(VOC07_RECALL_LEVELS))
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope: best precision to the right
    i = np.flatnonzero(mrec[1:] != mrec[:-1])  # where recall changes
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def eval_detection_voc(
    pred_boxes,
    pred_labels,
    pred_scores,
    gt_boxes,
    gt_labels,
    gt_difficults=None,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
    *,
    n_classes: int | None = None,
    plus_one: bool = True,
) -> VOCEvalResult:
    """Per-class AP and mAP of detections over ``N`` images, with the devkit's rules.

    Every argument is an iterable with one entry per image, in the same image order (the order
    that breaks ties between equal scores). Arrays may be NumPy or CuPy (copied to the host).

    Args:
        pred_boxes: ``N`` arrays ``(K_i, 4)``, detections as corners ``x1, y1, x2, y2`` in
            pixels (inclusive corners when ``plus_one``), finite, ``x1 <= x2``, ``y1 <= y2``.
        pred_labels: ``N`` integer arrays ``(K_i,)``, 0-based object class of each detection
            (no background class).
        pred_scores: ``N`` float arrays ``(K_i,)``, confidence of each detection (finite).
        gt_boxes: ``N`` arrays ``(G_i, 4)``, ground-truth boxes in the same format.
        gt_labels: ``N`` integer arrays ``(G_i,)``, 0-based class of each ground-truth box.
        gt_difficults: ``N`` boolean (or 0/1 integer) arrays ``(G_i,)``, or None (no box is
            difficult).
        iou_threshold: a detection may match a ground truth when IoU ``>=`` this, in [0, 1].
        use_07_metric: True (default, as the SSD paper) for the VOC2007 11-point AP, False for
            the VOC2010+ area under the precision envelope.
        n_classes: number of classes ``C`` (every label lies in ``[0, C)``); default
            ``1 + the largest label`` seen.
        plus_one: inclusive pixel corners, width ``x2 - x1 + 1`` (default, as the devkit).

    Returns:
        A :class:`VOCEvalResult`: ``ap`` ``(C,)`` with NaN for classes without non-difficult
        ground truth, ``map`` (their nanmean), and per-class precision, recall and score curves.

    Raises:
        ValueError: naming the argument and the image (e.g. ``gt_boxes[12]``) for any input
            outside the above: wrong shape or dtype, a non-finite value, an inverted box, a
            label out of range, lists of different lengths.
    """
    preds = _check_images("pred", pred_boxes, pred_labels, pred_scores, "pred_scores")
    gt_labels = list(gt_labels)  # may be a one-pass iterable
    if gt_difficults is None:
        gt_difficults = [np.zeros(len(labels), dtype=bool) for labels in gt_labels]
    gts = _check_images("gt", gt_boxes, gt_labels, gt_difficults, "gt_difficults")
    if len(preds[0]) != len(gts[0]):
        raise ValueError(
            f"predictions cover {len(preds[0])} images but ground truth covers {len(gts[0])}"
        )
    real_scalar = np.ndim(iou_threshold) == 0 and np.asarray(iou_threshold).dtype.kind in "fiu"
    if not (real_scalar and 0.0 <= iou_threshold <= 1.0):
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold!r}")
    p_boxes, p_labels, p_scores = preds
    g_boxes, g_labels, g_difficult = gts
    if n_classes is None:
        n_classes = 1 + max((int(x.max()) for x in p_labels + g_labels if len(x)), default=-1)
    elif isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) \
            or n_classes < 0:
        raise ValueError(f"n_classes must be None or an integer >= 0, got {n_classes!r}")
    for name, parts in (("pred_labels", p_labels), ("gt_labels", g_labels)):
        for i, x in enumerate(parts):
            if len(x) and (x.min() < 0 or x.max() >= n_classes):
                raise ValueError(
                    f"{name}[{i}] holds labels outside [0, {n_classes}): "
                    f"min {x.min()}, max {x.max()}"
                )

    best_iou, best_gt = _best_ground_truth(p_boxes, p_labels, g_boxes, g_labels, plus_one)
    labels = _concat(p_labels, np.int64)
    scores = _concat(p_scores, np.float64)
    all_gt_labels = _concat(g_labels, np.int64)
    all_gt_difficult = _concat(g_difficult, bool)

    ap = np.full(n_classes, np.nan)
    n_positives = np.zeros(n_classes, dtype=np.int64)
    precisions, recalls, sorted_scores = [], [], []
    for c in range(n_classes):
        n_pos = int(np.sum((all_gt_labels == c) & ~all_gt_difficult))  # step 4
        # Step 1: this class's detections (input order), stable-sorted by descending score.
        order = np.flatnonzero(labels == c)
        order = order[np.argsort(-scores[order], kind="stable")]
        tp, fp = _mark_detections(best_iou[order], best_gt[order], all_gt_difficult, iou_threshold)
        # Step 5: the curves.
        tp_cum = np.cumsum(tp, dtype=np.int64)
        fp_cum = np.cumsum(fp, dtype=np.int64)
        precision = tp_cum / np.maximum(tp_cum + fp_cum, 1)  # 0/0 -> 0
        if n_pos > 0:
            recall = tp_cum / n_pos
            ap[c] = voc_ap(recall, precision, use_07_metric)  # step 6
        else:
            recall = np.full(len(order), np.nan)  # step 7
        n_positives[c] = n_pos
        precisions.append(precision.astype(np.float64))
        recalls.append(recall.astype(np.float64))
        sorted_scores.append(scores[order])

    has_pos = ~np.isnan(ap)
    mean_ap = float(ap[has_pos].mean()) if has_pos.any() else float("nan")
    return VOCEvalResult(
        ap=ap,
        map=mean_ap,
        precision=precisions,
        recall=recalls,
        scores=sorted_scores,
        n_positives=n_positives,
        iou_threshold=float(iou_threshold),
        use_07_metric=bool(use_07_metric),
        plus_one=bool(plus_one),
    )


def _best_ground_truth(p_boxes, p_labels, g_boxes, g_labels, plus_one):
    """Step 2 for every detection at once, image by image.

    Returns:
        ``best_iou`` ``(D,)`` float64: the IoU of each detection (all images concatenated in
        input order) with the best ground truth of its image and class, ``-inf`` if none
        intersects it; ``best_gt`` ``(D,)`` int64: that ground truth's index among all ground
        truths concatenated in image order (meaningless where ``best_iou`` is ``-inf``).
    """
    gt_offsets = np.cumsum([0] + [len(x) for x in g_labels])
    best_iou, best_gt = [], []
    for i in range(len(p_boxes)):
        iou = devkit_iou(p_boxes[i], g_boxes[i], plus_one)  # (K_i, G_i)
        iou[p_labels[i][:, None] != g_labels[i][None, :]] = -np.inf  # other classes
        if iou.shape[1] == 0:
            j = np.zeros(len(iou), dtype=np.int64)
            best_iou.append(np.full(len(iou), -np.inf))
        else:
            j = np.argmax(iou, axis=1)  # the first of equal maxima, as the devkit's `ov > ovmax`
            best_iou.append(iou[np.arange(len(j)), j])
        best_gt.append(gt_offsets[i] + j)
    return _concat(best_iou, np.float64), _concat(best_gt, np.int64)


def _mark_detections(best_iou, best_gt, gt_difficult, iou_threshold):
    """Step 3 for one class's detections, given in score order.

    Args:
        best_iou: ``(D,)`` IoU of each detection with its best ground truth.
        best_gt: ``(D,)`` index of that ground truth into ``gt_difficult``.
        gt_difficult: ``(G,)`` bool, for all ground truths.
        iou_threshold: the threshold, compared with ``>=``.

    Returns:
        ``tp``, ``fp``: ``(D,)`` bool; a detection that is neither was ignored (difficult).

    The devkit walks the detections one by one, marking ground truths as matched. Only hits on
    ground truth ``j`` ever mark ``j``, so the walk amounts to: among the detections whose best
    ground truth is ``j`` (non-difficult) with enough overlap, the first in score order is a
    TP and every later one a duplicate FP.
    """
    hit = best_iou >= iou_threshold
    matchable = np.zeros(len(best_iou), dtype=bool)
    matchable[hit] = ~gt_difficult[best_gt[hit]]
    matchable_at = np.flatnonzero(matchable)
    _, first = np.unique(best_gt[matchable_at], return_index=True)  # first hit on each gt
    tp = np.zeros(len(best_iou), dtype=bool)
    tp[matchable_at[first]] = True
    fp = ~hit | (matchable & ~tp)
    return tp, fp


def _concat(arrays, dtype):
    """``np.concatenate`` that also accepts an empty list."""
    return np.concatenate(arrays).astype(dtype) if len(arrays) else np.zeros(0, dtype=dtype)


def _check_images(prefix, boxes, labels, third, third_name):
    """NumPy copies of per-image (boxes, labels, scores or difficult flags), every entry checked.

    ``third`` is ``pred_scores`` (finite real numbers, returned as float64) or ``gt_difficults``
    (booleans or integers 0/1, returned as bool). Each error names the argument and the image.
    """
    boxes, labels, third = list(boxes), list(labels), list(third)
    if not len(boxes) == len(labels) == len(third):
        raise ValueError(
            f"{prefix}_boxes, {prefix}_labels and {third_name} must have one entry per image, "
            f"got {len(boxes)}, {len(labels)} and {len(third)}"
        )
    out_boxes, out_labels, out_third = [], [], []
    for i, (b, lab, t) in enumerate(zip(boxes, labels, third, strict=True)):
        b = _check_box_array(to_numpy(b), f"{prefix}_boxes[{i}]")
        k = b.shape[0]
        lab = to_numpy(lab)
        if lab.shape != (k,):
            raise ValueError(f"{prefix}_labels[{i}] must have shape ({k},), got {lab.shape}")
        if k and not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(f"{prefix}_labels[{i}] must be integers, got dtype {lab.dtype}")
        t = to_numpy(t)
        if t.shape != (k,):
            raise ValueError(f"{third_name}[{i}] must have shape ({k},), got {t.shape}")
        if third_name == "pred_scores":
            t = _check_scores(t, f"{third_name}[{i}]")
        else:
            t = _check_difficult(t, f"{third_name}[{i}]")
        out_boxes.append(b)
        out_labels.append(lab.astype(np.int64))
        out_third.append(t)
    return out_boxes, out_labels, out_third


def _check_box_array(b, name):
    """``b`` as float64 ``(K, 4)`` corners, finite, with ``x1 <= x2`` and ``y1 <= y2``."""
    if b.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {b.dtype}")
    b = b.astype(np.float64, copy=False)
    if b.shape == (0,):  # an empty list of boxes
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape (K, 4), got {b.shape}")
    bad = np.flatnonzero(~np.isfinite(b).all(axis=1))
    if bad.size:
        raise ValueError(f"{name} must be finite; box {bad[0]} is {b[bad[0]].tolist()}")
    bad = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
    if bad.size:
        raise ValueError(f"{name} must be corners with x1 <= x2 and y1 <= y2; box {bad[0]} is "
                         f"{b[bad[0]].tolist()} (x, y, width, height boxes?)")
    return b


def _check_scores(t, name):
    if t.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {t.dtype}")
    t = t.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise ValueError(f"{name} holds a non-finite score: [{bad[0]}] = {t[bad[0]]}")
    return t


def _check_difficult(t, name):
    if t.size and t.dtype.kind != "b":
        if t.dtype.kind not in "iu" or not np.isin(t, (0, 1)).all():
            raise ValueError(f"{name} must be booleans (or integers 0/1), got dtype {t.dtype} "
                             f"with values {np.unique(t)[:5].tolist()}")
    return t.astype(bool)
