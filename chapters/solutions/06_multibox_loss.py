"""Worked solutions for chapters/06_multibox_loss.ipynb (the notebook has imported numpy as np)."""

import numpy as np


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
