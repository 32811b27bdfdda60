"""The MultiBox loss with hard-negative mining (paper Sec. 2.2, "Training objective").

    L = (L_conf + alpha * L_loc) / N

* ``N`` is the number of positive (matched) default boxes in the batch; ``N = 0`` gives
  ``L = 0`` with zero gradients (never NaN).
* ``L_loc`` is the smooth L1 loss between predicted and target offsets, over positives only.
* ``L_conf`` is the softmax cross-entropy over the positives and the *hard negatives*: in each
  image, the negatives (background boxes) are ranked by their confidence loss
  ``-log p(background)``, highest first (ties: lower prior index first), and at most
  ``neg_pos_ratio`` (3) per positive of that image are kept.

Every term is a sum over images (the mining is per image), so the loss of a batch split into
shards is the sum of the shards' losses when each shard divides by the whole batch's ``N``
(``num_positives``): data-parallel training relies on it.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor, cross_entropy, smooth_l1
from ..backend import get_array_module
from ..boxes import match
from ..learner import call_learner, learner_function
from ..priors import SSD_VARIANCES
from .model import LossConfig


def build_targets(gt_boxes, gt_labels, priors, iou_threshold=0.5, variances=SSD_VARIANCES):
    """Match every image's ground truth to the default boxes.

    Args:
        gt_boxes: list of ``(K_i, 4)`` corner boxes, normalised to [0, 1].
        gt_labels: list of ``(K_i,)`` 0-based object classes.
        priors: ``(P, 4)`` default boxes, centre form, normalised.
    Returns:
        ``loc_targets (N, P, 4)`` encoded offsets and ``labels (N, P)`` int64, 0 = background.
    """
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f"build_targets: {len(gt_boxes)} box arrays but {len(gt_labels)} "
                         f"label arrays")
    xp = get_array_module(priors)
    locs, labels = [], []
    for boxes, lab in zip(gt_boxes, gt_labels):
        loc_t, lab_t = match(boxes, lab, priors, iou_threshold=iou_threshold,
                             variances=variances)[:2]
        locs.append(loc_t)
        labels.append(lab_t)
    return xp.stack(locs).astype(priors.dtype), xp.stack(labels).astype(np.int64)


def hard_negative_mask(conf_loss, labels, neg_pos_ratio):
    """Which default boxes take part in ``L_conf``: positives and the mined negatives.

    Args:
        conf_loss: ``(N, P)`` per-box cross-entropy (for negatives: ``-log p(background)``).
        labels: ``(N, P)`` int, 0 = background.
    Returns:
        ``(N, P)`` bool.
    """
    xp = get_array_module(conf_loss)
    positive = labels > 0
    num_pos = positive.sum(axis=1, keepdims=True)
    num_neg = xp.minimum(neg_pos_ratio * num_pos, (~positive).sum(axis=1, keepdims=True))
    ranked = xp.where(positive, -xp.inf, conf_loss)  # positives go last
    order = xp.argsort(-ranked, axis=1, kind="stable")  # highest loss first, ties by index
    rank = xp.empty_like(order)
    xp.put_along_axis(rank, order, xp.arange(order.shape[1])[None].repeat(len(order), 0), axis=1)
    return positive | (rank < num_neg)


def multibox_loss(loc, conf, loc_targets, labels, config: LossConfig | None = None,
                  num_positives: int | None = None):
    """The MultiBox loss of a batch.

    Args:
        loc: Tensor ``(N, P, 4)`` predicted offsets.
        conf: Tensor ``(N, P, C)`` class scores (unnormalised).
        loc_targets: array ``(N, P, 4)`` encoded ground-truth offsets (``build_targets``).
        labels: array ``(N, P)`` int, 0 = background.
        num_positives: the ``N`` to divide by; default: the positives in ``labels``. In
            data-parallel training each process holds a shard of the global batch and passes
            the global batch's count (summed over the processes), so that the processes' losses
            add up to the global batch's loss, and their gradients to its gradient
            (``minissd.distributed``).
    Returns:
        ``(loss, loc_loss, conf_loss)``: Tensors, each already divided by ``N``; ``loss`` is the
        one to call ``backward`` on, the parts are for logging.
    """
    if loc.shape[:2] != conf.shape[:2] or loc.shape[2] != 4:
        raise ValueError(f"multibox_loss: loc {loc.shape} and conf {conf.shape} must be "
                         f"(N, P, 4) and (N, P, C)")
    if tuple(loc_targets.shape) != loc.shape or tuple(labels.shape) != loc.shape[:2]:
        raise ValueError(f"multibox_loss: targets {tuple(loc_targets.shape)} / labels "
                         f"{tuple(labels.shape)} do not match loc {loc.shape}")
    config = config or LossConfig()
    xp = get_array_module(labels)
    positive = labels > 0
    n = int(positive.sum()) if num_positives is None else int(num_positives)
    ce = cross_entropy(conf, labels)  # (N, P)
    if (learner_mining := learner_function("hard_negatives")) is None:
        selected = hard_negative_mask(ce.data, labels, config.neg_pos_ratio)
    else:  # minissd.learner.use_learner_functions(hard_negatives=...)
        selected = call_learner("hard_negatives", learner_mining, ce.data, labels,
                                config.neg_pos_ratio, shape=tuple(labels.shape), kind="b",
                                like=ce.data, where="ssd.multibox_loss.multibox_loss")
    conf_loss = (ce * selected.astype(ce.dtype)).sum()
    per_coord = smooth_l1(loc, Tensor(xp.asarray(loc_targets, dtype=loc.dtype)),
                          config.smooth_l1_beta)
    loc_loss = (per_coord * positive[..., None].astype(loc.dtype)).sum()
    scale = 1.0 / max(n, 1)  # N = 0: both sums are empty, so the loss is 0 with 0 gradients
    loc_loss, conf_loss = loc_loss * scale, conf_loss * scale
    return conf_loss + loc_loss * config.alpha, loc_loss, conf_loss
