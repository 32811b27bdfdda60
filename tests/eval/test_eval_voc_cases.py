"""Hand-computed cases for the VOC evaluation: every devkit rule on a box or two.

Boxes use VOC pixels (inclusive corners): [0, 0, 9, 9] is 10 x 10 = 100 pixels.
"""

import math

import numpy as np
import pytest

from minissd.eval import VOC07_RECALL_LEVELS, devkit_iou, eval_detection_voc, voc_ap

G0 = [0, 0, 9, 9]
G1 = [20, 0, 29, 9]
G2 = [40, 0, 49, 9]
FAR = [100, 100, 109, 109]  # overlaps nothing


def one_image(dets, scores, gts, det_labels=None, gt_labels=None, difficult=None, **kwargs):
    """Evaluate a single image; labels default to class 0."""
    dets = np.array(dets, dtype=float).reshape(-1, 4)
    gts = np.array(gts, dtype=float).reshape(-1, 4)
    det_labels = np.zeros(len(dets), int) if det_labels is None else np.array(det_labels)
    gt_labels = np.zeros(len(gts), int) if gt_labels is None else np.array(gt_labels)
    difficult = np.zeros(len(gts), bool) if difficult is None else np.array(difficult, bool)
    return eval_detection_voc(
        [dets], [det_labels], [np.array(scores, float)], [gts], [gt_labels], [difficult], **kwargs
    )


def both_metrics(*args, **kwargs):
    return (
        one_image(*args, use_07_metric=True, **kwargs),
        one_image(*args, use_07_metric=False, **kwargs),
    )


def test_single_true_positive_gives_ap_one():
    r07, r10 = both_metrics([G0], [0.9], [G0])
    assert r07.ap[0] == 1.0 and r10.ap[0] == 1.0 and r07.map == 1.0
    np.testing.assert_array_equal(r07.precision[0], [1.0])
    np.testing.assert_array_equal(r07.recall[0], [1.0])
    assert r07.n_positives.tolist() == [1]


def test_tp_fp_sequence_matches_hand_computed_ap():
    # 3 positives. In score order: TP (G0), FP (nothing there), TP (G1), FP (duplicate of G0).
    # cum tp 1 1 2 2, cum fp 0 1 1 2:
    #   precision 1, 1/2, 2/3, 1/2;  recall 1/3, 1/3, 2/3, 2/3.
    # Area (VOC2010+): envelope 1, 2/3, 2/3, 1/2 -> 1/3 * 1 + 1/3 * 2/3 = 5/9.
    # 11-point: t = 0, .1, .2, .3 -> best precision at recall >= t is 1       (4 levels)
    #           t = .4, .5, .6     -> max(2/3, 1/2) = 2/3                     (3 levels)
    #           t = .7 ... 1       -> recall never reaches t: 0               (4 levels)
    #           AP = (4 * 1 + 3 * 2/3) / 11 = 6/11.
    args = ([G0, FAR, G1, G0], [0.9, 0.8, 0.7, 0.6], [G0, G1, G2])
    r07, r10 = both_metrics(*args)
    np.testing.assert_allclose(r07.precision[0], [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(r07.recall[0], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(r07.scores[0], [0.9, 0.8, 0.7, 0.6])
    assert r10.ap[0] == pytest.approx(5 / 9, abs=1e-12)
    assert r07.ap[0] == pytest.approx(6 / 11, abs=1e-12)


def test_detections_are_sorted_by_score_before_matching():
    # The same detections as above given in another order: the result depends on scores only.
    r10 = one_image([G0, G1, FAR, G0], [0.6, 0.7, 0.8, 0.9], [G0, G1, G2], use_07_metric=False)
    # Score order: G0 (0.9, TP), FAR (FP), G1 (TP), G0 (0.6, duplicate FP): the same 5/9.
    assert r10.ap[0] == pytest.approx(5 / 9, abs=1e-12)


def test_duplicate_detection_is_a_false_positive():
    r = one_image([G0, G0], [0.9, 0.8], [G0])
    np.testing.assert_array_equal(r.precision[0], [1.0, 0.5])
    np.testing.assert_array_equal(r.recall[0], [1.0, 1.0])
    assert r.ap[0] == 1.0  # a FP after every positive is found costs nothing


def test_difficult_ground_truth_is_ignored_and_not_counted():
    # The detection on the difficult box is neither TP nor FP; npos counts only G1.
    # Counted as FP it would give precision 0, 1/2 and AP 0.5; here AP is 1.
    r07, r10 = both_metrics([G0, G1], [0.9, 0.8], [G0, G1], difficult=[True, False])
    assert r07.n_positives.tolist() == [1]
    # After the ignored detection tp = fp = 0: precision 0/0 is reported as 0, not NaN.
    np.testing.assert_array_equal(r07.precision[0], [0.0, 1.0])
    np.testing.assert_array_equal(r07.recall[0], [0.0, 1.0])
    assert r07.ap[0] == 1.0 and r10.ap[0] == 1.0


def test_only_ignored_detections_give_ap_zero_not_nan():
    r07, r10 = both_metrics([G0], [0.9], [G0, G1], difficult=[True, False])
    np.testing.assert_array_equal(r07.precision[0], [0.0])
    assert r07.ap[0] == 0.0 and r10.ap[0] == 0.0


def test_best_overlap_on_a_difficult_box_is_ignored_even_if_a_normal_box_overlaps():
    # G0 (normal) and a slightly taller difficult box D. The detection equals D: IoU 1 with D,
    # 100/110 with G0. It takes D, the best, and is ignored: G0 stays unmatched.
    d = [0, 0, 9, 10]
    assert devkit_iou([d], [G0])[0, 0] == pytest.approx(100 / 110)
    r = one_image([d], [0.9], [G0, d], difficult=[False, True])
    np.testing.assert_array_equal(r.recall[0], [0.0])
    assert r.ap[0] == 0.0


def test_no_fallback_to_the_second_best_ground_truth():
    # A = G0 and B = [0, 0, 9, 10], both normal. Both detections equal A: IoU 1 with A and
    # 100/110 with B. The second one still takes A, already matched: a FP, although B is free.
    # precision 1, 1/2; recall 1/2, 1/2 -> area 1/2; 11-point 6 levels (t <= .5) / 11.
    r07, r10 = both_metrics([G0, G0], [0.9, 0.8], [G0, [0, 0, 9, 10]])
    np.testing.assert_array_equal(r10.precision[0], [1.0, 0.5])
    assert r10.ap[0] == pytest.approx(0.5)
    assert r07.ap[0] == pytest.approx(6 / 11)


def test_equal_overlaps_take_the_first_ground_truth():
    # Two identical normal boxes: both detections pick the first (the devkit's `ov > ovmax`
    # keeps the first maximum), so the second detection is a duplicate FP and one box is missed.
    r = one_image([G0, G0], [0.9, 0.8], [G0, G0], use_07_metric=False)
    np.testing.assert_array_equal(r.recall[0], [0.5, 0.5])
    assert r.ap[0] == pytest.approx(0.5)


def test_iou_exactly_at_threshold_is_a_match_with_the_plus_one_convention():
    # G0 covers 10 x 10 = 100 pixels; [0, 0, 9, 4] covers 10 x 5 = 50 of them: IoU exactly 0.5.
    half = [0, 0, 9, 4]
    assert devkit_iou([half], [G0])[0, 0] == 0.5
    # The devkit tests `ovmax >= minoverlap`: a TP. (py-faster-rcnn's `>` makes it a FP.)
    assert one_image([half], [0.9], [G0]).ap[0] == 1.0
    # Just above the threshold it is a FP.
    assert one_image([half], [0.9], [G0], iou_threshold=0.5 + 1e-9).ap[0] == 0.0
    # Without the +1, the same numbers are continuous boxes 9 x 9 and 9 x 4: IoU 36/81 < 0.5.
    assert devkit_iou([half], [G0], plus_one=False)[0, 0] == pytest.approx(36 / 81)
    assert one_image([half], [0.9], [G0], plus_one=False).ap[0] == 0.0


def test_plus_one_changes_which_boxes_touch():
    # [10, 0, 19, 9] starts right after G0's last column: no shared pixel with the +1
    # convention; without it the two continuous boxes share only an edge. Either way, no
    # intersection, and the devkit never matches a box it does not intersect, even at
    # threshold 0. [9, 0, 18, 9] shares G0's last pixel column: 10 pixels of 190.
    beside, overlapping = [10, 0, 19, 9], [9, 0, 18, 9]
    assert devkit_iou([beside], [G0])[0, 0] == -np.inf
    assert devkit_iou([beside], [G0], plus_one=False)[0, 0] == -np.inf
    assert devkit_iou([overlapping], [G0])[0, 0] == pytest.approx(10 / 190)
    assert devkit_iou([overlapping], [G0], plus_one=False)[0, 0] == -np.inf
    assert one_image([beside], [0.9], [G0], iou_threshold=0.0).ap[0] == 0.0
    assert one_image([overlapping], [0.9], [G0], iou_threshold=0.0).ap[0] == 1.0


def test_tied_scores_keep_the_order_within_an_image():
    # Same score: the detection given first is ranked first.
    fp_first = one_image([FAR, G0], [0.5, 0.5], [G0], use_07_metric=False)
    tp_first = one_image([G0, FAR], [0.5, 0.5], [G0], use_07_metric=False)
    # FP then TP: precision 0, 1/2 at recall 0, 1 -> envelope 1/2 over [0, 1]: AP 1/2.
    np.testing.assert_array_equal(fp_first.precision[0], [0.0, 0.5])
    assert fp_first.ap[0] == 0.5
    assert tp_first.ap[0] == 1.0


def test_tied_scores_keep_image_order_across_images():
    # Image A holds a FP with score 0.5, image B a TP with score 0.5. Input order is image
    # order, so listing A first ranks the FP first (AP 1/2); listing B first gives AP 1.
    a = ([np.array([FAR], float)], [np.array([0])], [np.array([0.5])])
    a_gt = ([np.array([G1], float)], [np.array([0])])
    b = ([np.array([G0], float)], [np.array([0])], [np.array([0.5])])
    b_gt = ([np.array([G0], float)], [np.array([0])])

    def run(first, first_gt, second, second_gt):
        preds = [x + y for x, y in zip(first, second, strict=True)]
        gts = [x + y for x, y in zip(first_gt, second_gt, strict=True)]
        return eval_detection_voc(*preds, *gts, use_07_metric=False)

    # A then B: FP (A), TP (B); 2 positives (G1 in A, G0 in B): precision 0, 1/2; recall 0, 1/2.
    assert run(a, a_gt, b, b_gt).ap[0] == pytest.approx(0.25)
    # B then A: TP, FP: precision 1, 1/2; recall 1/2, 1/2 -> AP 1/2.
    assert run(b, b_gt, a, a_gt).ap[0] == pytest.approx(0.5)


def test_no_detections_gives_ap_zero_and_empty_curves():
    r07, r10 = both_metrics([], [], [G0, G1])
    assert r07.ap[0] == 0.0 and r10.ap[0] == 0.0 and r07.map == 0.0
    assert r07.precision[0].shape == (0,) and r07.recall[0].shape == (0,)
    assert r07.n_detections.tolist() == [0]


def test_class_absent_from_ground_truth_is_nan_and_left_out_of_map():
    # Class 0: one TP. Class 1: a detection but no ground truth. Class 2: nothing at all.
    r = one_image([G0, G1], [0.9, 0.8], [G0], det_labels=[0, 1], gt_labels=[0], n_classes=3)
    assert r.ap[0] == 1.0
    assert math.isnan(r.ap[1]) and math.isnan(r.ap[2])
    assert r.n_positives.tolist() == [1, 0, 0]
    np.testing.assert_array_equal(r.precision[1], [0.0])
    assert np.isnan(r.recall[1]).all()
    assert r.map == 1.0  # the mean over class 0 only


def test_map_is_nan_when_no_class_has_positives():
    r = one_image([G0], [0.9], [G0], difficult=[True])
    assert math.isnan(r.ap[0]) and math.isnan(r.map)


def test_classes_do_not_match_each_other():
    # A class-1 detection on the class-0 box G0 is a FP of class 1 (whose box is G1), and
    # leaves G0 to the later class-0 detection.
    r = one_image([G0, G0], [0.9, 0.1], [G0, G1], det_labels=[1, 0], gt_labels=[0, 1])
    assert r.ap.tolist() == [1.0, 0.0]
    np.testing.assert_array_equal(r.precision[1], [0.0])


def test_one_pass_iterables_are_accepted():
    def once(*arrays):
        return (np.array(a) for a in arrays)

    r = eval_detection_voc(
        once([G0]), once([0]), once([0.9]), once([G0, G1]), once([0, 0]), use_07_metric=False
    )
    assert r.ap[0] == 0.5 and r.n_positives.tolist() == [2]


def test_n_classes_is_inferred_from_the_largest_label():
    r = one_image([G0], [0.9], [G0], det_labels=[4], gt_labels=[2])
    assert r.n_classes == 5


def matlab_colon(a, d, b):
    """MATLAB's ``a:d:b`` for a positive step, as its documented algorithm builds it.

    ``n = round((b - a) / d)`` steps, one fewer if ``a + n*d`` overshoots ``b`` by more than
    the tolerance; the end point is ``b`` when ``a + n*d`` is within the tolerance of it.
    Point ``k`` is ``a + k*d`` for ``k < n/2`` and ``last - (n-k)*d`` from the middle on;
    for even ``n`` the middle point is ``(a + last) / 2``.
    """
    tol = 2.0 * np.finfo(float).eps * max(abs(a), abs(b))
    n = round((b - a) / d)
    if a + n * d - b > tol:
        n -= 1
    last = b if abs(a + n * d - b) <= tol else a + n * d
    points = [a + k * d if k < n / 2 else last - (n - k) * d for k in range(n + 1)]
    if n % 2 == 0:
        points[n // 2] = (a + last) / 2
    return points


def test_eleven_point_levels_are_the_devkits_doubles():
    # VOCevaldet.m: `for t=0:0.1:1`.
    assert list(VOC07_RECALL_LEVELS) == matlab_colon(0.0, 0.1, 1.0)
    assert [repr(t) for t in VOC07_RECALL_LEVELS] == [
        "0.0", "0.1", "0.2", "0.30000000000000004", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9",
        "1.0"]
    # where they differ from the two usual Python spellings
    tenths = [k / 10 for k in range(11)]
    arange = np.arange(0, 1.1, 0.1).tolist()
    assert [k for k in range(11) if VOC07_RECALL_LEVELS[k] != tenths[k]] == [3]
    assert [k for k in range(11) if VOC07_RECALL_LEVELS[k] != arange[k]] == [6, 7]


@pytest.mark.parametrize("found, devkit_levels, tenths_levels, arange_levels", [
    # 10 positives, `found` of them detected first (precision 1), then nothing: the AP is the
    # number of levels t with t <= found / 10, over 11.
    (3, 3, 4, 3),  # 3/10 = 0.3 < 3*0.1 = 0.30000000000000004: the devkit misses its level
    (6, 7, 7, 6),  # 6/10 = 0.6 reaches the devkit's 0.6, not arange's 0.6000000000000001
    (7, 8, 8, 7),  # likewise 0.7
])
def test_recall_of_exactly_3_6_and_7_tenths(found, devkit_levels, tenths_levels, arange_levels):
    gts = [[20 * k, 0, 20 * k + 9, 9] for k in range(10)]
    r07, r10 = both_metrics(gts[:found], [0.9 - 0.05 * k for k in range(found)], gts)
    assert r07.recall[0][-1] == found / 10
    assert r07.ap[0] == devkit_levels / 11
    assert r10.ap[0] == pytest.approx(found / 10)
    # what the other two spellings of the levels would give on this curve
    recall, precision = r07.recall[0], r07.precision[0]
    for levels, count in ((np.arange(11) / 10, tenths_levels),
                          (np.arange(0, 1.1, 0.1), arange_levels)):
        assert sum(precision[recall >= t].max(initial=0.0) for t in levels) == count


def test_voc_ap_at_recall_3_tenths_differs_from_tenths_levels():
    # The same through voc_ap directly: recall 0.3 with precision 1, then precision 0.5 up to
    # recall 0.35. Devkit: levels 0..0.2 at 1, 0.30000000000000004 at 0.5 -> 3.5 / 11.
    # k/10 would count 0.3 at precision 1 -> 4 / 11.
    assert voc_ap([0.3, 0.35], [1.0, 0.5], use_07_metric=True) == pytest.approx(3.5 / 11)


def test_voc_ap_on_curves_given_directly():
    # Envelope: precision 1 on (0, .5], .5 on (.5, 1]: area .75. 11 levels: 6 at 1, 5 at .5.
    recall, precision = [0.5, 0.5, 1.0], [1.0, 0.5, 0.5]
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(0.75)
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(8.5 / 11)
    # A precision that rises again lifts the envelope before it: .25 then 1 at recall 1 -> 1.
    assert voc_ap([0.5, 1.0], [0.25, 1.0], use_07_metric=False) == 1.0
    assert voc_ap([], [], use_07_metric=True) == 0.0
    assert voc_ap([], [], use_07_metric=False) == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pred_boxes=[np.zeros((2, 3))]), r"pred_boxes\[0\] must have shape \(K, 4\)"),
        (dict(pred_labels=[np.zeros(3, int)]), r"pred_labels\[0\] must have shape \(2,\)"),
        (dict(pred_labels=[np.zeros(2)]), r"pred_labels\[0\] must be integers"),
        (dict(pred_scores=[np.array([0.5, np.nan])]), r"pred_scores\[0\] holds a non-finite"),
        (dict(gt_difficults=[np.zeros(2, bool)]), r"gt_difficults\[0\] must have shape \(1,\)"),
        (dict(gt_labels=[np.array([-1])]), r"gt_labels\[0\] holds labels outside"),
        (dict(pred_labels=[np.array([0, 3])], n_classes=2), r"pred_labels\[0\] holds labels"),
        (dict(gt_boxes=[], gt_labels=[], gt_difficults=[]), r"1 images but ground truth covers 0"),
        (dict(pred_scores=[]), r"one entry per image, got 1, 1 and 0"),
        (dict(iou_threshold=1.5), r"iou_threshold must lie in \[0, 1\]"),
        # Each case below gave an AP (or a NumPy error) before it was checked.
        (dict(pred_boxes=[np.array([G0, [np.nan, 0, 9, 9]], float)]),
         r"pred_boxes\[0\] must be finite; box 1 is \[nan, 0.0, 9.0, 9.0\]"),
        (dict(pred_boxes=[np.array([G0, [0, 0, np.inf, 9]], float)]),
         r"pred_boxes\[0\] must be finite"),
        (dict(gt_boxes=[np.array([[0, 0, 9, -np.inf]])]), r"gt_boxes\[0\] must be finite; box 0"),
        (dict(pred_boxes=[np.array([G0, [5, 0, 4, 9]], float)]),
         r"pred_boxes\[0\] must be corners with x1 <= x2 and y1 <= y2; box 1 is \[5.0"),
        (dict(gt_boxes=[np.array([[0, 9, 9, 0]], float)]), r"gt_boxes\[0\] must be corners"),
        (dict(pred_boxes=[np.array([list("abcd")] * 2)]),
         r"pred_boxes\[0\] must hold real numbers"),
        (dict(pred_boxes=[np.zeros((2, 0))]), r"pred_boxes\[0\] must have shape \(K, 4\)"),
        (dict(pred_scores=[np.array(["a", "b"])]), r"pred_scores\[0\] must hold real numbers"),
        (dict(pred_scores=[np.array([0.5, np.inf])]), r"pred_scores\[0\] holds a non-finite"),
        (dict(gt_labels=[np.array([0.0])]), r"gt_labels\[0\] must be integers, got dtype float64"),
        (dict(pred_labels=[np.array([0, -1])]), r"pred_labels\[0\] holds labels outside \[0, 1\)"),
        (dict(pred_labels=[np.array([0, 1])], n_classes=1), r"pred_labels\[0\] holds labels"),
        (dict(gt_difficults=[np.array([0.5])]), r"gt_difficults\[0\] must be booleans"),
        (dict(gt_difficults=[np.array([np.nan])]), r"gt_difficults\[0\] must be booleans"),
        (dict(gt_difficults=[np.array([2])]), r"gt_difficults\[0\] must be booleans .*\[2\]"),
        (dict(gt_difficults=[]), r"one entry per image, got 1, 1 and 0"),
        (dict(gt_labels=[]), r"gt_boxes, gt_labels and gt_difficults must have one entry"),
        (dict(pred_boxes=[np.array([G0, G1], float)] * 2), r"got 2, 1 and 1"),
        (dict(n_classes=-1), r"n_classes must be None or an integer >= 0, got -1"),
        (dict(n_classes=2.5), r"n_classes must be None or an integer >= 0, got 2.5"),
        (dict(iou_threshold=float("nan")), r"iou_threshold must lie in \[0, 1\], got nan"),
        (dict(iou_threshold="0.5"), r"iou_threshold must lie in \[0, 1\], got '0.5'"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, message):
    args = dict(
        pred_boxes=[np.array([G0, G1], float)],
        pred_labels=[np.array([0, 0])],
        pred_scores=[np.array([0.9, 0.8])],
        gt_boxes=[np.array([G0], float)],
        gt_labels=[np.array([0])],
        gt_difficults=[np.array([False])],
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        eval_detection_voc(**args)


def test_boxes_of_zero_size_empty_lists_and_0_1_difficult_flags_are_accepted():
    # x1 == x2 is a legal (one-pixel or zero-width) box; an image without boxes may be []
    r = eval_detection_voc([np.array([[5.0, 5, 5, 5]]), []], [np.array([0]), []],
                           [np.array([0.9]), []], [np.array([G0], float), np.zeros((0, 4))],
                           [np.array([0]), np.zeros(0, int)], [np.array([1]), []])
    assert r.n_positives.tolist() == [0]  # G0 is difficult (flag 1)


@pytest.mark.parametrize("recall, precision, message", [
    ([0.5, np.nan], [1.0, 0.5], r"recall must be finite, got recall\[1\] = nan"),
    ([0.5, 1.0], [np.nan, 0.5], r"precision must be finite, got precision\[0\] = nan"),
])
def test_voc_ap_rejects_non_finite_curves(recall, precision, message):
    # py-faster-rcnn's 0/0 precision is NaN; the AP of such a curve used to be NaN or to skip it
    for use_07_metric in (True, False):
        with pytest.raises(ValueError, match=message):
            voc_ap(recall, precision, use_07_metric=use_07_metric)
