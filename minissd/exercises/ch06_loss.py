"""Chapter 06 (the MultiBox loss): checker for the hard-negative selection.

``check_hard_negatives(fn)`` holds the learner's ``fn(conf_loss, labels, neg_pos_ratio)`` to
``minissd.ssd.multibox_loss.hard_negative_mask`` on hand-made edge cases (no positives, ties,
more negatives requested than exist, a batch whose images differ) and on drawn batches.
"""

from __future__ import annotations

import numpy as np

from minissd.ssd.multibox_loss import hard_negative_mask

from . import run_safely, verdict

WHAT = "hard-negative selection matches minissd.ssd.multibox_loss.hard_negative_mask"


def _cases():
    """``(name, conf_loss (N, P), labels (N, P), neg_pos_ratio, hint)``: edge cases first."""
    yield ("one image, 1 positive, ratio 3: the 3 highest-loss negatives",
           np.array([[0.5, 2.0, 0.1, 3.0, 1.0, 0.2, 4.0]]),
           np.array([[0, 0, 2, 0, 0, 0, 0]]), 3,
           "rank only the negatives (labels == 0) by loss, highest first, keep "
           "neg_pos_ratio * (number of positives) of them, and include the positives too")
    yield ("a positive's own loss never ranks it among the negatives",
           np.array([[9.0, 1.0, 2.0, 3.0, 8.0]]), np.array([[4, 0, 0, 0, 1]]), 1,
           "exclude the positives from the ranking (e.g. set their loss to -inf first)")
    yield ("no positives at all", np.array([[0.3, 0.9, 0.1], [2.0, 1.0, 3.0]]),
           np.zeros((2, 3), dtype=np.int64), 3,
           "with zero positives no negative is kept: the mask is all False (and must not crash)")
    yield ("ties: equal losses keep the lower prior index first",
           np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]), np.array([[0, 0, 0, 0, 0, 1]]), 3,
           "sort with a stable sort (np.argsort(-loss, kind='stable')) so that equal losses "
           "keep the lower index first")
    yield ("more negatives requested than exist", np.array([[0.2, 5.0, 1.0, 0.1]]),
           np.array([[1, 0, 3, 0]]), 3,
           "when 3 * positives exceeds the number of negatives, keep every negative "
           "(and never a positive counted as a negative)")
    yield ("the count is per image, not per batch",
           np.array([[9.0, 8.0, 7.0, 6.0, 0.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.5]]),
           np.array([[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]), 1,
           "count the positives of each image separately (sum over axis 1): an image "
           "without positives keeps no negatives even if others have positives")
    rng = np.random.default_rng(6)
    for k in range(200):
        n, p = int(rng.integers(1, 4)), int(rng.integers(1, 40))
        values = int(rng.integers(1, 6))  # few distinct losses: many ties
        loss = rng.integers(0, values, (n, p)).astype(np.float64) * 0.5
        if k % 2:
            loss = loss + rng.random((n, p))
        labels = np.where(rng.random((n, p)) < rng.uniform(0, 0.5), rng.integers(1, 5, (n, p)), 0)
        yield (f"drawn batch #{k} (N={n}, P={p})", loss, labels, int(rng.integers(0, 5)),
               "print your mask beside this batch's losses and labels (the checker draws them "
               "with numpy.random.default_rng(6))")


def _first_difference(got, want):
    i, j = (int(v) for v in np.argwhere(got != want)[0])
    return (f"image {i}, prior {j}: you say {bool(got[i, j])}, expected {bool(want[i, j])}")


def check_hard_negatives(fn) -> bool:
    """``fn(conf_loss (N, P) float, labels (N, P) int, neg_pos_ratio int) -> (N, P) bool``,
    True for the positives and the mined negatives."""
    for name, loss, labels, ratio, hint in _cases():
        ok, got = run_safely(f"{WHAT} [case '{name}']", fn, loss.copy(), labels.copy(), ratio)
        if not ok:
            return False
        want = hard_negative_mask(loss, labels, ratio)
        got = np.asarray(got)
        if got.shape != want.shape:
            return verdict(False, WHAT, f"case '{name}': returned shape {got.shape}, expected "
                                        f"{want.shape} (one flag per prior of each image)")
        if got.dtype != np.bool_:
            return verdict(False, WHAT, f"case '{name}': returned dtype {got.dtype}, expected "
                                        f"bool")
        if not np.array_equal(got, want):
            if np.array_equal(got, want & (labels == 0)):
                hint = "the positives are missing: the mask is positives OR mined negatives"
            return verdict(False, WHAT, f"case '{name}': {_first_difference(got, want)}"
                                        + (f"; {hint}" if hint else ""))
    return verdict(True, WHAT + " on 206 batches (no positives, ties, too few negatives)")
