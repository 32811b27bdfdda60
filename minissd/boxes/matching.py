"""Matching ground-truth boxes to priors (the authors' Caffe ``MatchBBox``)."""

from __future__ import annotations

from typing import NamedTuple

from minissd.backend import get_array_module
from minissd.learner import call_learner, learner_function
from minissd.priors import SSD_VARIANCES

from ._checks import (
    _check_boxes,
    _check_labels,
    _check_priors,
    _check_threshold,
    _check_variances,
)
from .coder import _encode
from .geometry import centre_to_corners, iou


class MatchResult(NamedTuple):
    """Per-prior training targets of one image (P = number of priors)."""

    loc: object  # (P, 4) encoded offsets; zeros for background priors
    labels: object  # (P,) int64: 0 = background, object class c -> c + 1
    gt_index: object  # (P,) int64: the ground truth each prior matched, -1 for background


def match(gt_boxes, gt_labels, priors, iou_threshold=0.5, variances=SSD_VARIANCES):
    """Assign ground-truth boxes to priors as the authors' Caffe ``MatchBBox`` does.

    gt_boxes: (G, 4) normalised corners; gt_labels: (G,) ints, 0-based object classes;
    priors: (P, 4) normalised centre form (width and height > 0); variances: 4 numbers > 0
    for ``encode`` (default ``SSD_VARIANCES``, the paper's, as ``encode`` and ``decode``).
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

    The three parts are ``iou``, ``match_overlaps`` (steps 1 and 2 on the IoU matrix) and
    ``encode``; inside ``minissd.learner.use_learner_functions`` the learner's ``iou``,
    ``match`` and ``encode`` take their places.
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

    dtype = xp.result_type(gt_boxes.dtype, priors.dtype)
    corners = centre_to_corners(priors)
    if (learner_iou := learner_function("iou")) is None:
        overlaps = iou(gt_boxes, corners)  # (G, P)
    else:
        overlaps = call_learner("iou", learner_iou, gt_boxes, corners, shape=(num_gt, num_priors),
                                kind="f", dtype=dtype, like=priors, where="boxes.match")
    if (learner_match := learner_function("match")) is None:
        gt_index = match_overlaps(overlaps, iou_threshold)
    else:
        gt_index = call_learner("match", learner_match, overlaps, iou_threshold,
                                shape=(num_priors,), kind="i", like=priors,
                                where="boxes.match", index_range=(-1, num_gt))

    positive = xp.nonzero(gt_index >= 0)[0]
    matched = gt_index[positive]
    # Every matched pair has IoU > 0, so the ground truth has x2 > x1 and y2 > y1: the inputs
    # already meet encode's conditions.
    matched_boxes = gt_boxes[matched].astype(dtype)
    if (learner_encode := learner_function("encode")) is None:
        encoded = _encode(matched_boxes, priors[positive].astype(dtype), variances, xp)
    else:
        encoded = call_learner("encode", learner_encode, matched_boxes,
                               priors[positive].astype(dtype), variances,
                               shape=(int(positive.shape[0]), 4), kind="f", dtype=dtype,
                               like=priors, where="boxes.match")
    loc[positive] = encoded.astype(priors.dtype)
    labels[positive] = gt_labels[matched] + 1
    return MatchResult(loc=loc, labels=labels, gt_index=gt_index)


def match_overlaps(overlaps, iou_threshold=0.5):
    """Steps 1 and 2 of ``match`` on an IoU matrix: which ground truth each prior takes.

    overlaps: (G, P) IoU of every ground truth with every prior; iou_threshold in [0, 1].
    Returns ``gt_index (P,)`` int64: the ground truth prior ``p`` matched, -1 for background
    (the paper's ``x_ij^p = 1`` exactly when ``gt_index[i] = j``). The rules (ties, IoU 0) are
    ``match``'s; an IoU matrix of G = 0 rows gives all background.
    """
    xp = get_array_module(overlaps)
    overlaps = xp.asarray(overlaps)
    if overlaps.ndim != 2:
        raise ValueError(f"overlaps must have shape (G, P), got shape {tuple(overlaps.shape)}")
    iou_threshold = _check_threshold(iou_threshold)
    gt_index = xp.full(overlaps.shape[1], -1, dtype=xp.int64)
    if overlaps.shape[0] == 0 or overlaps.shape[1] == 0:
        return gt_index
    _bipartite_match(overlaps, gt_index, xp)
    _threshold_match(overlaps, gt_index, iou_threshold, xp)
    return gt_index


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
