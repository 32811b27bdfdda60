"""Matching ground truth to priors: Caffe's MatchBBox, checked against a slow plain loop."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minissd import boxes as B
from minissd import priors as P

VARIANCES = P.SSD_VARIANCES


def slow_caffe_match(overlaps, threshold):
    """The authors' MatchBBox written as obviously as possible (lists, nested loops).

    Bipartite: repeatedly scan priors (outer) and free ground truths (inner) for the largest
    IoU > 0, strict '>' so the first found wins ties; then per free prior: best gt if its
    IoU >= threshold and > 0 (Caffe only keeps overlaps > 1e-6).
    """
    num_gt, num_priors = len(overlaps), len(overlaps[0]) if overlaps else 0
    owner = [-1] * num_priors
    free_gt = list(range(num_gt))
    while free_gt:
        best = None
        for p in range(num_priors):
            if owner[p] != -1:
                continue
            for g in free_gt:
                if overlaps[g][p] > 0 and (best is None or overlaps[g][p] > best[0]):
                    best = (overlaps[g][p], p, g)
        if best is None:
            break
        owner[best[1]] = best[2]
        free_gt.remove(best[2])
    for p in range(num_priors):
        if owner[p] != -1:
            continue
        best_g, best_iou = -1, -1.0
        for g in range(num_gt):
            if overlaps[g][p] > best_iou:
                best_g, best_iou = g, overlaps[g][p]
        if best_iou >= threshold and best_iou > 0:
            owner[p] = best_g
    return owner


GRID = st.integers(0, 8).map(lambda v: v / 8)  # coarse: ties and shared best priors


@st.composite
def scenes(draw):
    """(gt corners (G, 4), labels (G,), priors centre (P, 4)) in the unit square."""
    num_priors = draw(st.integers(1, 25))
    priors = np.array([
        [draw(GRID), draw(GRID), draw(st.integers(1, 8)) / 8, draw(st.integers(1, 8)) / 8]
        for _ in range(num_priors)
    ])
    num_gt = draw(st.integers(0, 6))
    gt = []
    for _ in range(num_gt):
        x1, y1 = draw(GRID), draw(GRID)
        gt.append([x1, y1, x1 + draw(st.integers(0, 4)) / 8, y1 + draw(st.integers(0, 4)) / 8])
    gt = np.array(gt).reshape(num_gt, 4)
    labels = np.array([draw(st.integers(0, 4)) for _ in range(num_gt)], dtype=np.int64)
    return gt, labels, priors


@given(scenes(), st.sampled_from([0.0, 0.3, 0.5, 0.7]))
def test_match_equals_the_slow_loop(scene, threshold):
    gt, labels, priors = scene
    result = B.match(gt, labels, priors, threshold, variances=VARIANCES)
    overlaps = B.iou_reference(gt, B.centre_to_corners(priors)).tolist() if len(gt) else []
    expected = slow_caffe_match(overlaps, threshold) if len(gt) else [-1] * len(priors)
    np.testing.assert_array_equal(result.gt_index, expected)

    # labels: class + 1 where matched, 0 (background) elsewhere
    expected_labels = [labels[g] + 1 if g >= 0 else 0 for g in result.gt_index]
    np.testing.assert_array_equal(result.labels, expected_labels)
    assert result.labels.dtype == np.int64 and result.gt_index.dtype == np.int64
    # loc: the encoding of the matched box; zero for background
    positive = result.gt_index >= 0
    if positive.any():
        enc = B.encode(gt[result.gt_index[positive]], priors[positive], VARIANCES)
        np.testing.assert_allclose(result.loc[positive], enc)
    np.testing.assert_array_equal(result.loc[~positive], 0)


@given(scenes())
def test_every_gt_with_area_owns_a_prior_unless_all_its_priors_are_taken(scene):
    gt, labels, priors = scene
    result = B.match(gt, labels, priors, variances=VARIANCES)
    overlaps = B.iou_reference(gt, B.centre_to_corners(priors)) if len(gt) else None
    for g in range(len(gt)):
        owned = np.flatnonzero(result.gt_index == g)
        if B.box_area(gt[g]) == 0:
            assert owned.size == 0, "a zero-area ground truth matches nothing"
        elif owned.size == 0:
            touching = np.flatnonzero(overlaps[g] > 0)
            assert np.all(result.gt_index[touching] >= 0), "a free prior overlaps this gt"
            assert np.all(result.gt_index[touching] != g)


def test_two_gts_sharing_a_best_prior_both_get_one():
    """Regression for ssd.pytorch #354 / #193: the second gt used to lose its prior."""
    priors = P.make_priors(P.SSD300, dtype=np.float64)
    gt = np.array([[0.40, 0.40, 0.60, 0.60], [0.41, 0.40, 0.61, 0.60]])
    overlaps = B.iou_reference(gt, B.centre_to_corners(priors))
    assert overlaps[0].argmax() == overlaps[1].argmax(), "precondition: same best prior"
    result = B.match(gt, np.array([3, 7]), priors, variances=VARIANCES)
    assert (result.gt_index == 0).any() and (result.gt_index == 1).any()
    # the gt overlapping the shared prior most takes it; the other takes its next best prior
    shared = overlaps[0].argmax()
    winner = overlaps[:, shared].argmax()
    assert result.gt_index[shared] == winner
    assert result.labels[shared] == [3, 7][winner] + 1


def test_gt_whose_best_priors_are_all_below_threshold_still_gets_one():
    priors = np.array([[0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.05, 0.05]])
    gt = np.array([[0.0, 0.0, 0.3, 0.3]])  # IoU with prior 1 is small, but > 0
    result = B.match(gt, np.array([0]), priors, variances=VARIANCES)
    assert result.gt_index.tolist() == [0, -1] or result.gt_index.tolist() == [-1, 0]
    assert (result.gt_index == 0).sum() == 1


def test_no_objects_gives_all_background():
    priors = P.make_priors(P.SMALL)
    result = B.match(np.zeros((0, 4)), np.zeros(0, np.int64), priors, variances=VARIANCES)
    assert result.loc.shape == (priors.shape[0], 4)
    assert result.loc.dtype == np.float32  # the priors' dtype, whatever the gt dtype
    assert not result.loc.any()
    assert (result.labels == 0).all() and (result.gt_index == -1).all()


def test_zero_area_gt_is_ignored_and_others_unaffected():
    priors = P.make_priors(P.SMALL, dtype=np.float64)
    gt = np.array([[0.2, 0.2, 0.5, 0.6], [0.3, 0.3, 0.3, 0.7]])  # second: zero width
    both = B.match(gt, np.array([1, 2]), priors, variances=VARIANCES)
    alone = B.match(gt[:1], np.array([1]), priors, variances=VARIANCES)
    assert not (both.gt_index == 1).any()
    np.testing.assert_array_equal(both.gt_index, alone.gt_index)
    assert np.isfinite(both.loc).all()


def test_every_gt_owns_a_prior_on_real_priors():
    rng = np.random.default_rng(0)
    priors = P.make_priors(P.SSD300)
    xy = rng.uniform(0, 0.9, (40, 2))
    gt = np.concatenate([xy, xy + rng.uniform(0.01, 0.1, (40, 2))], 1).astype(np.float32)
    result = B.match(gt, rng.integers(0, 20, 40), priors, variances=VARIANCES)
    assert set(result.gt_index[result.gt_index >= 0].tolist()) == set(range(40))
    assert result.loc.dtype == np.float32


def test_match_errors_name_the_argument():
    priors = P.make_priors(P.SMALL)
    with pytest.raises(ValueError, match="gt_boxes must have shape"):
        B.match(np.zeros((2, 5)), np.zeros(2, np.int64), priors, variances=VARIANCES)
    with pytest.raises(ValueError, match=r"gt_labels must have shape \(2,\)"):
        B.match(np.zeros((2, 4)), np.zeros(3, np.int64), priors, variances=VARIANCES)
    with pytest.raises(TypeError, match="gt_labels must hold integers"):
        B.match(np.zeros((2, 4)), np.zeros(2), priors, variances=VARIANCES)
    with pytest.raises(ValueError, match="gt_labels must be 0-based"):
        B.match(np.zeros((1, 4)), np.array([-1]), priors, variances=VARIANCES)
    with pytest.raises(ValueError, match="gt_boxes contains NaN"):
        B.match(np.full((1, 4), np.nan), np.array([0]), priors, variances=VARIANCES)
    with pytest.raises(ValueError, match="priors must have shape"):
        B.match(np.zeros((1, 4)), np.array([0]), priors[:, :3], variances=VARIANCES)


@pytest.mark.parametrize("variances, message", [
    ((0.1, 0.1, 0.2), r"variances must be 4 numbers .* shape \(3,\)"),  # was silently used
    ((0.1, 0.2), r"variances must be 4 numbers .* shape \(2,\)"),  # was a broadcast error
    ((0.0, 0.1, 0.2, 0.2), r"variances must be finite and > 0"),  # was inf targets
    ((-0.1, 0.1, 0.2, 0.2), r"variances must be finite and > 0"),  # was sign-flipped targets
])
def test_match_rejects_bad_variances_even_without_objects(variances, message):
    priors = np.array([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]])
    gt = B.centre_to_corners(priors) + 0.001
    with pytest.raises(ValueError, match=message):
        B.match(gt, np.array([0, 1]), priors, variances=variances)
    with pytest.raises(ValueError, match=message):
        B.match(np.zeros((0, 4)), np.zeros(0, np.int64), priors, variances=variances)


def test_match_rejects_a_prior_without_area():
    priors = np.array([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.0]])
    with pytest.raises(ValueError, match=r"priors must have width and height > 0 .*prior 1"):
        B.match(np.array([[0.4, 0.4, 0.6, 0.6]]), np.array([0]), priors, variances=VARIANCES)


def test_threshold_zero_leaves_priors_without_overlap_in_the_background():
    # At iou_threshold 0 the threshold step used to give every prior a ground truth, even
    # one it does not overlap, and a zero-area ground truth got -inf targets (log 0).
    priors = np.array([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05], [0.9, 0.9, 0.1, 0.1]])
    gt = np.array([[0.3, 0.3, 0.3, 0.5], [0.4, 0.4, 0.6, 0.6]])  # a zero-width one, then prior 0
    result = B.match(gt, np.array([0, 1]), priors, 0.0, variances=VARIANCES)
    np.testing.assert_array_equal(result.gt_index, [1, -1, -1])
    np.testing.assert_array_equal(result.labels, [2, 0, 0])
    assert np.isfinite(result.loc).all()
