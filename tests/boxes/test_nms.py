"""NMS and per-class NMS: the contract, the reference, and the fast path against it."""

import numpy as np
import pytest
from box_strategies import scored_boxes, thresholds
from hypothesis import given
from hypothesis import strategies as st

from minissd import boxes as B


def test_nms_by_hand():
    boxes = np.array([
        [0, 0, 10, 10],
        [1, 1, 11, 11],  # IoU 81/119 = 0.68 with box 0
        [20, 20, 30, 30],  # disjoint
        [0, 0, 10, 10],  # identical to box 0, same score: lower index (0) first
    ], dtype=np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.9], dtype=np.float32)
    np.testing.assert_array_equal(B.nms(boxes, scores, 0.5), [1, 2])
    np.testing.assert_array_equal(B.nms(boxes, scores, 0.7), [1, 0, 2])
    np.testing.assert_array_equal(B.nms_reference(boxes, scores, 0.7), [1, 0, 2])
    assert B.nms(boxes, scores, 0.5).dtype == np.int64


def test_suppression_is_strictly_greater_than_threshold():
    boxes = np.array([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]])  # IoU exactly 1/3
    scores = np.array([1.0, 0.5])
    iou = B.iou_reference(boxes, boxes)[0, 1]
    for nms in (B.nms, B.nms_reference):
        assert nms(boxes, scores, iou).tolist() == [0, 1]  # IoU == threshold: kept
        assert nms(boxes, scores, np.nextafter(iou, 0)).tolist() == [0]


def test_equal_scores_keep_the_lower_index_first():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0]] * 4)
    for nms in (B.nms, B.nms_reference):
        assert nms(boxes, np.ones(4), 0.5).tolist() == [0]
        assert nms(boxes, np.ones(4), 1.0).tolist() == [0, 1, 2, 3]


def test_zero_area_boxes_never_suppress():
    boxes = np.array([[1.0, 1.0, 1.0, 1.0]] * 3)
    assert B.nms(boxes, np.array([0.1, 0.3, 0.2]), 0.0).tolist() == [1, 2, 0]


def test_pre_nms_top_k_cuts_candidates_before_and_top_k_output_after():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # all four candidates: 1 is suppressed by 0 -> [0, 2, 3]
    assert B.nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    # only the 2 best are candidates: [0, 1] -> [0]
    assert B.nms(boxes, scores, 0.5, pre_nms_top_k=2).tolist() == [0]
    # at most 2 outputs: [0, 2]
    assert B.nms(boxes, scores, 0.5, top_k=2).tolist() == [0, 2]
    assert B.nms_reference(boxes, scores, 0.5, top_k=2).tolist() == [0, 2]
    assert B.nms(boxes, scores, 0.5, top_k=0).tolist() == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nms_empty(dtype):
    out = B.nms(np.zeros((0, 4), dtype), np.zeros(0, dtype), 0.5)
    assert out.shape == (0,) and out.dtype == np.int64
    assert B.batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5).shape == (0,)
    assert B.nms_reference(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_nms_errors_name_the_argument():
    boxes = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"scores must have shape \(3,\).*got shape \(2,\)"):
        B.nms(boxes, np.zeros(2), 0.5)
    with pytest.raises(ValueError, match="scores contains NaN"):
        B.nms(boxes, np.array([0.1, np.nan, 0.2]), 0.5)
    with pytest.raises(ValueError, match="boxes contains NaN"):
        B.nms(np.full((3, 4), np.inf), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        B.nms(np.zeros((3, 2)), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="iou_threshold must lie in"):
        B.nms(boxes, np.zeros(3), 1.5)
    with pytest.raises(ValueError, match="pre_nms_top_k must be None or a non-negative"):
        B.nms(boxes, np.zeros(3), 0.5, pre_nms_top_k=-1)
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        B.batched_nms(boxes, np.zeros(3), np.zeros(4, np.int64), 0.5)


@given(st.data(), st.sampled_from([np.float32, np.float64]))
def test_nms_equals_reference(data, dtype):
    boxes, scores = data.draw(scored_boxes(dtype=dtype))
    threshold = data.draw(thresholds(boxes))
    pre = data.draw(st.one_of(st.none(), st.integers(0, 12)))
    top = data.draw(st.one_of(st.none(), st.integers(0, 12)))
    expected = B.nms_reference(boxes, scores, threshold, pre_nms_top_k=pre, top_k=top)
    got = B.nms(boxes, scores, threshold, pre_nms_top_k=pre, top_k=top)
    np.testing.assert_array_equal(got, expected)


@given(st.data())
def test_nms_properties(data):
    boxes, scores = data.draw(scored_boxes())
    threshold = data.draw(thresholds(boxes))
    keep = B.nms(boxes, scores, threshold)
    iou = B.iou_reference(boxes, boxes)
    # sorted by descending score, ties by ascending index
    order = np.lexsort((keep, -scores[keep]))
    np.testing.assert_array_equal(keep, keep[order])
    # no two kept boxes overlap above the threshold
    kept_iou = iou[np.ix_(keep, keep)]
    assert not (np.triu(kept_iou, 1) > threshold).any()
    # every dropped box overlaps a kept box with a score at least its own, ranked earlier
    rank = np.empty(len(scores), dtype=np.int64)
    rank[np.lexsort((np.arange(len(scores)), -scores))] = np.arange(len(scores))
    for d in np.setdiff1d(np.arange(len(scores)), keep):
        culprits = keep[(iou[d, keep] > threshold) & (rank[keep] < rank[d])]
        assert culprits.size and (scores[culprits] >= scores[d]).all()


@given(st.data(), st.sampled_from([np.float32, np.float64]))
def test_batched_nms_equals_per_class_reference(data, dtype):
    boxes, scores = data.draw(scored_boxes(max_n=14, dtype=dtype))
    n = boxes.shape[0]
    labels = np.array(data.draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n)), np.int64)
    threshold = data.draw(thresholds(boxes))
    pre = data.draw(st.one_of(st.none(), st.integers(0, 5)))
    top = data.draw(st.one_of(st.none(), st.integers(0, 10)))
    options = dict(pre_nms_top_k=pre, top_k=top)
    expected = B.batched_nms_reference(boxes, scores, labels, threshold, **options)
    got = B.batched_nms(boxes, scores, labels, threshold, **options)
    np.testing.assert_array_equal(got, expected)
    # and the reference is per-class NMS merged by score
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        per_class = members[B.nms_reference(boxes[members], scores[members], threshold,
                                            pre_nms_top_k=pre)]
        if top is None:
            np.testing.assert_array_equal(np.sort(got[labels[got] == c]), np.sort(per_class))


def test_batched_nms_classes_do_not_suppress_each_other():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0]] * 3)
    scores = np.array([0.5, 0.9, 0.7])
    # class 0: box 2 (0.7) suppresses box 0 (0.5); class 1: box 1 alone
    assert B.batched_nms(boxes, scores, np.array([0, 1, 0]), 0.5).tolist() == [1, 2]
    assert B.batched_nms(boxes, scores, np.array([0, 1, 2]), 0.5).tolist() == [1, 2, 0]


def test_nms_on_many_clustered_boxes_equals_reference():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 500, (30, 2))
    which = rng.integers(0, 30, 600)
    xy = centres[which] + rng.normal(0, 5, (600, 2))
    wh = rng.uniform(20, 60, (600, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.random(600).astype(np.float32)
    for t in (0.3, 0.45, 0.7):
        np.testing.assert_array_equal(B.nms(boxes, scores, t), B.nms_reference(boxes, scores, t))
    labels = rng.integers(0, 5, 600)
    np.testing.assert_array_equal(
        B.batched_nms(boxes, scores, labels, 0.45, pre_nms_top_k=50, top_k=100),
        B.batched_nms_reference(boxes, scores, labels, 0.45, pre_nms_top_k=50, top_k=100),
    )


@given(st.lists(st.tuples(st.integers(-1, 3), st.sampled_from([0.0, -0.0, 0.25, 0.5, 1.0])),
                max_size=40), st.integers(0, 6))
def test_per_label_cut_keeps_what_ranking_everything_keeps(pairs, k):
    """The partition-based pre-NMS cut (``best_per_label``) selects exactly the candidates that
    sorting every candidate by (label, -score, index) and keeping each label's first k would:
    ties at the k-th score (signed zeros included) go to the lower indices."""
    from minissd.boxes.non_maximum_suppression import best_per_label

    labels = np.array([p[0] for p in pairs], dtype=np.int64)
    scores = np.array([p[1] for p in pairs], dtype=np.float64)
    ranked = np.lexsort((np.arange(len(pairs)), -scores, labels))
    rank_in_label = np.arange(len(pairs)) - np.searchsorted(labels[ranked], labels[ranked])
    expected = np.sort(ranked[rank_in_label < k])
    np.testing.assert_array_equal(best_per_label(scores, labels, k), expected)
