"""Box geometry for SSD: formats, IoU, encode/decode, matching and NMS.

Box formats (the one place they are defined)
--------------------------------------------
* **corners** ``(x1, y1, x2, y2)``: left, top, right, bottom. Ground truth, detections,
  IoU, NMS and the datasets use this form.
* **centre** ``(cx, cy, w, h)``: centre and size. Default boxes (priors) and the
  regression targets are built on this form.

``corners_to_centre`` and ``centre_to_corners`` convert between them. Arrays of boxes have
shape ``(..., 4)``. Inside training every coordinate is **normalised**: x divided by the
image width and y by the image height, so the image is the unit square ``[0, 1] x [0, 1]``.
Pixels appear only at the user-facing detection API (multiply by ``(W, H, W, H)``).
Coordinates are continuous: a box's width is ``x2 - x1`` (no "+1 pixel" convention).

Numerical rules shared by every implementation (NumPy reference, Numba, CUDA)
-----------------------------------------------------------------------------
* A box's extent is clamped at zero, ``w = max(x2 - x1, 0)``: a zero-area or inverted box
  has area 0 and IoU 0 with every box (never NaN).
* ``IoU(a, b) = inter / (area(a) + area(b) - inter)``, and 0 when that union is 0.
* NMS: boxes are ranked by descending score with a stable sort, so equal scores keep the
  lower index first. Walking down that ranking, a box is **suppressed when its IoU with an
  already kept box is strictly greater than** ``iou_threshold``; otherwise it is kept.
  The NMS kernels compute that IoU in float64 whatever the box dtype, so all three
  implementations make the same decisions.
* NaN or infinite coordinates (and scores) are rejected with a ``ValueError`` naming the
  argument; wrong shapes get a ``ValueError`` naming the argument and its shape.
* Encoding (``encode``, ``decode``, ``match``): ``variances`` are 4 finite numbers ``> 0``,
  priors have finite centres and a finite width and height ``> 0``, ``loc`` / ``matched`` have
  shape ``(..., P, 4)`` for ``P`` priors, and ``encode`` needs ground truths with ``x2 > x1``
  and ``y2 > y1`` (the ``log`` of their size). Anything else is a ``ValueError`` naming the
  argument, never an inf or NaN target. Each array costs one pass (``isfinite(x).all()``).

Functions take NumPy or CuPy arrays (``minissd.backend.get_array_module``) and return the
same kind. ``iou``, ``nms`` and ``batched_nms`` dispatch to the Numba CPU kernels
(``minissd.kernels.cpu``) or the CUDA kernels (``minissd.kernels.cuda``); the ``*_reference``
functions are the plain float64 definitions the kernels are tested against.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minissd.backend import get_array_module, is_cupy_array, to_numpy

# ----------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------


def _as_float_array(x, name: str, xp):
    x = xp.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.dtype.kind != "f":
        x = x.astype(xp.float64)
    elif x.dtype.itemsize < 4:  # float16 -> float32: the kernels handle float32/float64
        x = x.astype(xp.float32)
    return x


def _check_finite(x, name: str, xp) -> None:
    if x.size and not bool(xp.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; every value must be finite")


def _check_boxes(boxes, name: str, xp=None):
    """``boxes`` as a finite float array of shape (N, 4), or a clear error naming ``name``."""
    xp = xp or get_array_module(boxes)
    boxes = _as_float_array(boxes, name, xp)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got shape {tuple(boxes.shape)}")
    _check_finite(boxes, name, xp)
    return boxes


def _check_scores(scores, num_boxes: int, name: str, xp):
    scores = _as_float_array(scores, name, xp)
    if scores.shape != (num_boxes,):
        raise ValueError(
            f"{name} must have shape ({num_boxes},) to match boxes, got shape {tuple(scores.shape)}"
        )
    _check_finite(scores, name, xp)
    return scores


def _check_labels(labels, num_boxes: int, name: str, xp):
    labels = xp.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integers, got dtype {labels.dtype}")
    if labels.shape != (num_boxes,):
        raise ValueError(
            f"{name} must have shape ({num_boxes},) to match boxes, got shape {tuple(labels.shape)}"
        )
    return labels.astype(xp.int64)


def _check_threshold(iou_threshold: float) -> float:
    iou_threshold = float(iou_threshold)
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
    return iou_threshold


#: One variance per encoded coordinate: ``(cx, cy, w, h)``.
NUM_VARIANCES = 4


def _check_variances(variances) -> tuple:
    """``variances`` as 4 finite Python floats ``> 0``, or a ``ValueError`` naming it."""
    v = to_numpy(variances)
    if v.dtype.kind not in "fiu":
        raise TypeError(f"variances must hold real numbers, got dtype {v.dtype}")
    if v.shape != (NUM_VARIANCES,):
        raise ValueError(f"variances must be {NUM_VARIANCES} numbers (for cx, cy, w, h), got "
                         f"shape {v.shape}: {variances!r}")
    if not (np.isfinite(v).all() and (v > 0).all()):
        raise ValueError(f"variances must be finite and > 0 (they divide the offsets), got "
                         f"{v.tolist()}")
    return tuple(float(x) for x in v)


def _check_priors(priors, xp):
    """``priors`` as a float array (P, 4) in centre form with finite values and sizes ``> 0``."""
    priors = _as_float_array(priors, "priors", xp)
    if priors.ndim != 2 or priors.shape[1] != 4:
        raise ValueError(f"priors must have shape (P, 4) (centre form cx, cy, w, h), got shape "
                         f"{tuple(priors.shape)}")
    # One reduction (one device sync on CuPy) in the common case; the details only on failure.
    if priors.size and not bool(xp.isfinite(priors).all() & (priors[:, 2:] > 0).all()):
        _check_finite(priors, "priors", xp)
        row = int(xp.argmax((priors[:, 2:] <= 0).any(axis=1)))
        raise ValueError(f"priors must have width and height > 0 (centre form cx, cy, w, h); "
                         f"prior {row} is {to_numpy(priors[row]).tolist()}")
    return priors


def _check_offsets(x, num_priors: int, name: str, xp):
    """``x`` as a finite float array of shape (..., P, 4) for ``P = num_priors``."""
    x = _as_float_array(x, name, xp)
    if x.ndim < 2 or tuple(x.shape[-2:]) != (num_priors, 4):
        raise ValueError(f"{name} must have shape (..., P, 4) with P = {num_priors} priors, got "
                         f"shape {tuple(x.shape)}")
    _check_finite(x, name, xp)
    return x


def _check_count(value, name: str):
    if value is None:
        return None
    if int(value) != value or value < 0:
        raise ValueError(f"{name} must be None or a non-negative integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------------------


def corners_to_centre(boxes):
    """(..., 4) corners ``(x1, y1, x2, y2)`` -> (..., 4) centre form ``(cx, cy, w, h)``."""
    xp = get_array_module(boxes)
    boxes = xp.asarray(boxes)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = boxes[..., 2:] - boxes[..., :2]
    return xp.concatenate([centre, size], axis=-1)


def centre_to_corners(boxes):
    """(..., 4) centre form ``(cx, cy, w, h)`` -> (..., 4) corners ``(x1, y1, x2, y2)``."""
    xp = get_array_module(boxes)
    boxes = xp.asarray(boxes)
    half = boxes[..., 2:] / 2
    return xp.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def box_area(boxes):
    """(..., 4) corners -> (...) areas, with each side clamped at zero (inverted box -> 0)."""
    xp = get_array_module(boxes)
    boxes = xp.asarray(boxes)
    width = xp.maximum(boxes[..., 2] - boxes[..., 0], 0)
    height = xp.maximum(boxes[..., 3] - boxes[..., 1], 0)
    return width * height


# ----------------------------------------------------------------------------------------
# IoU
# ----------------------------------------------------------------------------------------


def iou_reference(a, b) -> np.ndarray:
    """IoU (Jaccard overlap) of every pair of corner boxes, in float64, for reading.

    a: (N, 4) corners, b: (M, 4) corners -> (N, M) float64 NumPy array with
    ``out[i, j] = |a_i ∩ b_j| / |a_i ∪ b_j|``, 0 where the union is empty.
    """
    a = _check_boxes(np.asarray(a), "a").astype(np.float64)
    b = _check_boxes(np.asarray(b), "b").astype(np.float64)
    area_a = box_area(a)[:, None]  # (N, 1)
    area_b = box_area(b)[None, :]  # (1, M)
    # The intersection of two boxes is the box between the larger left/top edges and the
    # smaller right/bottom edges; it is empty when that box has a negative side.
    ax1, ay1, ax2, ay2 = (a[:, None, c] for c in range(4))  # each (N, 1)
    bx1, by1, bx2, by2 = (b[None, :, c] for c in range(4))  # each (1, M)
    inter_w = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0.0)
    inter_h = np.maximum(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0.0)
    inter = inter_w * inter_h
    union = area_a + area_b - inter
    safe_union = np.where(union > 0, union, 1.0)
    return np.where(union > 0, inter / safe_union, 0.0)


def iou(a, b):
    """IoU of every pair of corner boxes: a (N, 4), b (M, 4) -> (N, M).

    NumPy input runs the Numba kernel (parallel over rows), CuPy input the CUDA kernel in
    ``kernels/iou.cu``. The result has the common float dtype of the inputs (float32 math
    for float32 boxes; integer boxes become float64). Empty inputs give (0, M) / (N, 0).
    """
    xp = get_array_module(a, b)
    a = _check_boxes(a, "a", xp)
    b = _check_boxes(b, "b", xp)
    dtype = xp.result_type(a.dtype, b.dtype)
    a = xp.ascontiguousarray(a, dtype=dtype)
    b = xp.ascontiguousarray(b, dtype=dtype)
    if is_cupy_array(a):
        from minissd.kernels import cuda

        return cuda.iou_matrix(a, b)
    out = np.empty((a.shape[0], b.shape[0]), dtype=dtype)
    if out.size == 0:
        return out
    from minissd.kernels import cpu  # imported here: importing minissd compiles nothing

    return cpu.iou(a, b, out)


# ----------------------------------------------------------------------------------------
# Encode / decode (the SSD box parameterisation)
# ----------------------------------------------------------------------------------------


def encode(matched, priors, variances):
    """Regression targets of matched ground-truth boxes relative to their priors.

    matched: (..., P, 4) corners with ``x2 > x1`` and ``y2 > y1``; priors: (P, 4) centre form
    (width and height > 0); variances: 4 numbers > 0, the paper's (0.1, 0.1, 0.2, 0.2) ->
    (..., P, 4) offsets::

        t_cx = (g_cx - d_cx) / (v0 * d_w)        t_w = log(g_w / d_w) / v2
        t_cy = (g_cy - d_cy) / (v1 * d_h)        t_h = log(g_h / d_h) / v3

    Inputs that would give an inf or NaN target raise a ``ValueError`` naming the argument.
    """
    xp = get_array_module(matched, priors)
    priors = _check_priors(priors, xp)
    matched = _check_offsets(matched, priors.shape[0], "matched", xp)
    variances = _check_variances(variances)
    positive_size = matched[..., 2:] > matched[..., :2]
    if matched.size and not bool(positive_size.all()):
        row = np.argwhere(~to_numpy(positive_size).all(axis=-1))[0]
        raise ValueError(f"matched must have x2 > x1 and y2 > y1 (log of its size); box "
                         f"{tuple(row.tolist())} is {to_numpy(matched[tuple(row)]).tolist()}")
    return _encode(matched, priors, variances, xp)


def _encode(matched, priors, variances, xp):
    """``encode`` on validated inputs (``match`` calls it directly)."""
    g = corners_to_centre(matched)
    v = xp.asarray(variances, dtype=xp.result_type(g.dtype, priors.dtype))
    t_centre = (g[..., :2] - priors[..., :2]) / (v[:2] * priors[..., 2:])
    t_size = xp.log(g[..., 2:] / priors[..., 2:]) / v[2:]
    return xp.concatenate([t_centre, t_size], axis=-1)


def decode(loc, priors, variances, max_log_scale=None):
    """Boxes from predicted offsets: the inverse of ``encode``.

    loc: (..., P, 4) finite offsets; priors: (P, 4) centre form (width and height > 0);
    variances: 4 numbers > 0 -> (..., P, 4) corners. ``max_log_scale`` (optional) caps
    ``v2 * t_w`` and ``v3 * t_h`` before the exponential; torchvision uses ``log(1000 / 16)``
    so that a wild prediction cannot overflow. None (the paper, Caffe) applies no cap: an
    offset so large that ``exp`` overflows gives an infinite size, as in Caffe.
    """
    xp = get_array_module(loc, priors)
    priors = _check_priors(priors, xp)
    loc = _check_offsets(loc, priors.shape[0], "loc", xp)
    variances = _check_variances(variances)
    if max_log_scale is not None and not np.isfinite(max_log_scale):
        raise ValueError(f"max_log_scale must be None or a finite number, got {max_log_scale!r}")
    v = xp.asarray(variances, dtype=xp.result_type(loc.dtype, priors.dtype))
    centre = priors[..., :2] + loc[..., :2] * v[:2] * priors[..., 2:]
    log_scale = loc[..., 2:] * v[2:]
    if max_log_scale is not None:
        log_scale = xp.minimum(log_scale, max_log_scale)
    size = priors[..., 2:] * xp.exp(log_scale)
    return centre_to_corners(xp.concatenate([centre, size], axis=-1))


# ----------------------------------------------------------------------------------------
# Matching ground truth to priors
# ----------------------------------------------------------------------------------------


class MatchResult(NamedTuple):
    """Per-prior training targets of one image (P = number of priors)."""

    loc: object  # (P, 4) encoded offsets; zeros for background priors
    labels: object  # (P,) int64: 0 = background, object class c -> c + 1
    gt_index: object  # (P,) int64: the ground truth each prior matched, -1 for background


def match(gt_boxes, gt_labels, priors, iou_threshold=0.5, *, variances):
    """Assign ground-truth boxes to priors as the authors' Caffe ``MatchBBox`` does.

    gt_boxes: (G, 4) normalised corners; gt_labels: (G,) ints, 0-based object classes;
    priors: (P, 4) normalised centre form (width and height > 0); variances: 4 numbers > 0
    for ``encode``.
    Returns ``MatchResult(loc (P, 4) in the priors' dtype, labels (P,) int64,
    gt_index (P,) int64)``.

    1. **Bipartite step** (each ground truth gets its own best prior): repeatedly take the
       largest IoU among (unmatched ground truth, unmatched prior) pairs and match that
       pair. Ties go to the lower prior index, then the lower ground-truth index (Caffe's
       loop order). Only pairs with IoU > 0 qualify; the step ends when none is left.
       Because a matched prior leaves the pool, two ground truths with the same best prior
       both get a prior (the ssd.pytorch #354 bug cannot happen).
    2. **Threshold step**: every prior still unmatched whose best IoU is ``>= iou_threshold``
       and ``> 0`` takes the ground truth it overlaps most (lower index on ties). (Caffe keeps
       only overlaps ``> 1e-6``, so at ``iou_threshold = 0`` too a prior that overlaps
       nothing stays background.)

    A ground truth with zero area has IoU 0 with every prior, so it matches nothing and is
    ignored (it neither trains a prior nor makes one background-by-default any differently).
    A positive-area ground truth ends without a prior only if every prior it overlaps was
    taken by another ground truth in step 1. An image without objects (G = 0) gives all
    background.
    """
    xp = get_array_module(gt_boxes, priors)
    gt_boxes = _check_boxes(gt_boxes, "gt_boxes", xp)
    gt_labels = _check_labels(gt_labels, gt_boxes.shape[0], "gt_labels", xp)
    priors = _check_priors(priors, xp)
    variances = _check_variances(variances)
    if gt_labels.size and int(gt_labels.min()) < 0:
        raise ValueError("gt_labels must be 0-based object classes (>= 0); got a negative label")
    iou_threshold = _check_threshold(iou_threshold)
    num_gt, num_priors = gt_boxes.shape[0], priors.shape[0]

    gt_index = xp.full(num_priors, -1, dtype=xp.int64)
    loc = xp.zeros((num_priors, 4), dtype=priors.dtype)
    labels = xp.zeros(num_priors, dtype=xp.int64)
    if num_gt == 0 or num_priors == 0:  # nothing to match: all background
        return MatchResult(loc=loc, labels=labels, gt_index=gt_index)

    overlaps = iou(gt_boxes, centre_to_corners(priors))  # (G, P)
    _bipartite_match(overlaps, gt_index, xp)
    _threshold_match(overlaps, gt_index, iou_threshold, xp)

    positive = xp.nonzero(gt_index >= 0)[0]
    matched = gt_index[positive]
    dtype = xp.result_type(gt_boxes.dtype, priors.dtype)
    # Every matched pair has IoU > 0, so the ground truth has x2 > x1 and y2 > y1: the inputs
    # already meet encode's conditions.
    encoded = _encode(gt_boxes[matched].astype(dtype), priors[positive].astype(dtype),
                      variances, xp)
    loc[positive] = encoded.astype(priors.dtype)
    labels[positive] = gt_labels[matched] + 1
    return MatchResult(loc=loc, labels=labels, gt_index=gt_index)


def _bipartite_match(overlaps, gt_index, xp) -> None:
    """Step 1 of ``match``: greedy by global maximum; fills ``gt_index`` in place.

    Keeps, for each ground truth, its best still-free prior (``best_prior``, ``best_iou``),
    so one round costs O(G) plus O(P) for each ground truth whose best prior was just taken.
    """
    num_gt, num_priors = overlaps.shape
    free = overlaps.astype(xp.float64)  # IoU with priors still free; taken priors get -1
    best_prior = xp.argmax(free, axis=1)  # ties -> lower prior index
    best_iou = free[xp.arange(num_gt), best_prior]
    gt_free = xp.ones(num_gt, dtype=bool)
    tie_key = best_prior * num_gt + xp.arange(num_gt)  # lower prior, then lower gt

    for _ in range(num_gt):
        candidates = xp.where(gt_free, best_iou, -1.0)
        top = float(candidates.max())
        if top <= 0.0:  # no free ground truth overlaps a free prior
            break
        g = int(xp.argmin(xp.where(candidates == top, tie_key, num_priors * num_gt)))
        p = int(best_prior[g])
        gt_index[p] = g
        gt_free[g] = False
        free[:, p] = -1.0
        # Ground truths whose best prior was p must look again.
        for h in xp.nonzero(gt_free & (best_prior == p))[0].tolist():
            best_prior[h] = xp.argmax(free[h])
            best_iou[h] = free[h, best_prior[h]]
            tie_key[h] = best_prior[h] * num_gt + h


def _threshold_match(overlaps, gt_index, iou_threshold, xp) -> None:
    """Step 2 of ``match``: unmatched priors with best IoU >= threshold (and > 0) take that gt."""
    best_gt = xp.argmax(overlaps, axis=0)  # (P,), ties -> lower gt index
    best_iou = overlaps[best_gt, xp.arange(overlaps.shape[1])]
    take = (gt_index < 0) & (best_iou >= iou_threshold) & (best_iou > 0)
    gt_index[take] = best_gt[take]


# ----------------------------------------------------------------------------------------
# Non-maximum suppression
# ----------------------------------------------------------------------------------------


def _pair_iou(a, b) -> float:
    """IoU of two corner boxes given as Python floats (the formula every NMS uses)."""
    inter_w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    inter_h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = inter_w * inter_h
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    union = area_a + area_b - inter
    return inter / union if union > 0.0 else 0.0


def nms_reference(boxes, scores, iou_threshold, *, pre_nms_top_k=None, top_k=None) -> np.ndarray:
    """Greedy NMS in plain Python floats (float64), for reading; see ``nms`` for the contract."""
    boxes = _check_boxes(np.asarray(boxes), "boxes")
    scores = _check_scores(np.asarray(scores), boxes.shape[0], "scores", np)
    iou_threshold = _check_threshold(iou_threshold)
    box_list = boxes.astype(np.float64).tolist()
    score_list = scores.astype(np.float64).tolist()
    order = sorted(range(len(box_list)), key=lambda i: -score_list[i])  # stable: ties by index
    if pre_nms_top_k is not None:
        order = order[:pre_nms_top_k]
    kept: list[int] = []
    for i in order:
        if top_k is not None and len(kept) >= top_k:
            break
        if all(_pair_iou(box_list[k], box_list[i]) <= iou_threshold for k in kept):
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


def batched_nms_reference(boxes, scores, labels, iou_threshold, *, pre_nms_top_k=None, top_k=None):
    """Per-class NMS by an explicit loop over classes, for reading; see ``batched_nms``."""
    boxes = _check_boxes(np.asarray(boxes), "boxes")
    scores = _check_scores(np.asarray(scores), boxes.shape[0], "scores", np)
    labels = _check_labels(np.asarray(labels), boxes.shape[0], "labels", np)
    kept = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keep_c = nms_reference(
            boxes[members], scores[members], iou_threshold, pre_nms_top_k=pre_nms_top_k
        )
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


def _nms(boxes, scores, labels, iou_threshold, pre_nms_top_k, top_k, xp):
    """Shared body of ``nms`` and ``batched_nms`` on validated inputs."""
    if boxes.shape[0] == 0:
        return xp.zeros(0, dtype=xp.int64)
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
