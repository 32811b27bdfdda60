"""Property tests: the vectorised evaluation against a naive transcription of VOCevaldet.m.

The naive version below is written from the devkit's MATLAB loop, one detection and one ground
truth at a time, with Python floats; it shares no code with ``minissd.eval``.
"""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from minissd.eval import eval_detection_voc

# MATLAB's 0:0.1:1 (10 steps) counts the first half up from 0 and the rest down from 1.
MATLAB_0_TO_1_BY_TENTHS = [k * 0.1 for k in range(5)] + [1 - (10 - k) * 0.1 for k in range(5, 11)]


def naive_devkit_eval(dets, gts, n_classes, iou_threshold, use_07_metric, plus_one):
    """dets: per image lists of (label, score, box); gts: per image lists of (label, box, diff).

    Returns a list of (ap, precision list, recall list) per class.
    """
    one = 1.0 if plus_one else 0.0
    out = []
    for c in range(n_classes):
        # gt(i).BB, gt(i).diff, gt(i).det for this class
        gt = [[(box, diff) for label, box, diff in image if label == c] for image in gts]
        matched = [[False] * len(g) for g in gt]
        npos = sum(not diff for g in gt for _, diff in g)
        # ids, confidence, BB in input order (image, then within image); MATLAB sort is stable
        found = [
            (score, i, box)
            for i, image in enumerate(dets)
            for label, score, box in image
            if label == c
        ]
        found = sorted(found, key=lambda d: -d[0])
        tp, fp = [], []
        for _, i, bb in found:
            ovmax, jmax = -math.inf, None
            for j, (bbgt, _) in enumerate(gt[i]):
                bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]),
                      min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]  # fmt: skip
                iw = bi[2] - bi[0] + one
                ih = bi[3] - bi[1] + one
                if iw > 0 and ih > 0:
                    ua = ((bb[2] - bb[0] + one) * (bb[3] - bb[1] + one)
                          + (bbgt[2] - bbgt[0] + one) * (bbgt[3] - bbgt[1] + one)
                          - iw * ih)  # fmt: skip
                    ov = iw * ih / ua
                    if ov > ovmax:
                        ovmax, jmax = ov, j
            t = f = 0
            if ovmax >= iou_threshold:
                if not gt[i][jmax][1]:
                    if not matched[i][jmax]:
                        t = 1
                        matched[i][jmax] = True
                    else:
                        f = 1
            else:
                f = 1
            tp.append(t)
            fp.append(f)
        ctp = list(np.cumsum(tp)) if tp else []
        cfp = list(np.cumsum(fp)) if fp else []
        prec = [a / (a + b) if a + b > 0 else 0.0 for a, b in zip(ctp, cfp, strict=True)]
        if npos == 0:
            out.append((math.nan, prec, [math.nan] * len(prec)))
            continue
        rec = [a / npos for a in ctp]
        if use_07_metric:
            ap = 0.0
            for t in MATLAB_0_TO_1_BY_TENTHS:  # for t=0:0.1:1
                ps = [p for p, r in zip(prec, rec, strict=True) if r >= t]
                ap += max(ps) if ps else 0.0
            ap /= 11
        else:
            mrec = [0.0] + rec + [1.0]
            mpre = [0.0] + prec + [0.0]
            for k in range(len(mpre) - 2, -1, -1):
                mpre[k] = max(mpre[k], mpre[k + 1])
            ap = sum(
                (mrec[k] - mrec[k - 1]) * mpre[k]
                for k in range(1, len(mrec))
                if mrec[k] != mrec[k - 1]
            )
        out.append((ap, prec, rec))
    return out


# Small integer boxes on a small grid make equal IoUs, IoUs exactly at the threshold, duplicate
# detections and tied scores common.
coord = st.integers(0, 12)
size = st.integers(0, 6)


@st.composite
def boxes(draw):
    x1, y1 = draw(coord), draw(coord)
    return [float(x1), float(y1), float(x1 + draw(size)), float(y1 + draw(size))]


@st.composite
def scenes(draw, distinct_scores=False):
    n_classes = draw(st.integers(1, 3))
    n_images = draw(st.integers(1, 4))
    label = st.integers(0, n_classes - 1)
    gts = [
        draw(st.lists(st.tuples(label, boxes(), st.booleans()), max_size=4))
        for _ in range(n_images)
    ]
    dets = []
    for image in gts:
        # Detections: some copies of the image's ground truths, some anywhere.
        copies = [(lab, box) for lab, box, _ in image if draw(st.booleans())]
        others = draw(st.lists(st.tuples(label, boxes()), max_size=5))
        dets.append(draw(st.permutations(copies + others)))
    n_dets = sum(len(d) for d in dets)
    if distinct_scores:
        scores = draw(
            st.lists(st.integers(1, 10**6), min_size=n_dets, max_size=n_dets, unique=True)
        )
        scores = [s / 10**6 for s in scores]
    else:
        scores = draw(
            st.lists(st.sampled_from([0.2, 0.4, 0.6, 0.8]), min_size=n_dets, max_size=n_dets)
        )
    it = iter(scores)
    dets = [[(lab, next(it), box) for lab, box in image] for image in dets]
    return n_classes, dets, gts


def to_arrays(dets, gts):
    """The per-image array lists taken by eval_detection_voc."""
    pred = (
        [np.array([b for _, _, b in d], float).reshape(-1, 4) for d in dets],
        [np.array([lab for lab, _, _ in d], np.int64) for d in dets],
        [np.array([s for _, s, _ in d], float) for d in dets],
    )
    gt = (
        [np.array([b for _, b, _ in g], float).reshape(-1, 4) for g in gts],
        [np.array([lab for lab, _, _ in g], np.int64) for g in gts],
        [np.array([diff for _, _, diff in g], bool) for g in gts],
    )
    return pred, gt


@given(
    scenes(),
    st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0]),
    st.booleans(),
    st.booleans(),
)
def test_matches_naive_devkit_transcription(scene, iou_threshold, use_07_metric, plus_one):
    n_classes, dets, gts = scene
    pred, gt = to_arrays(dets, gts)
    result = eval_detection_voc(
        *pred, *gt, iou_threshold, use_07_metric, n_classes=n_classes, plus_one=plus_one
    )
    expected = naive_devkit_eval(dets, gts, n_classes, iou_threshold, use_07_metric, plus_one)
    for c, (ap, prec, rec) in enumerate(expected):
        np.testing.assert_allclose(result.precision[c], prec, rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.recall[c], rec, rtol=0, atol=1e-12)
        if math.isnan(ap):
            assert math.isnan(result.ap[c])
        else:
            assert abs(result.ap[c] - ap) < 1e-12


@given(scenes(), st.booleans())
def test_ap_lies_in_unit_interval(scene, use_07_metric):
    n_classes, dets, gts = scene
    pred, gt = to_arrays(dets, gts)
    result = eval_detection_voc(*pred, *gt, use_07_metric=use_07_metric, n_classes=n_classes)
    ap = result.ap[~np.isnan(result.ap)]
    assert np.all((0 <= ap) & (ap <= 1))
    assert math.isnan(result.map) or 0 <= result.map <= 1
    for p in result.precision:
        assert np.all((0 <= p) & (p <= 1))


@given(scenes(), st.booleans(), st.data())
def test_perfect_detections_give_ap_one(scene, use_07_metric, data):
    n_classes, _, gts = scene
    # Identical ground-truth boxes of one class and image would both be claimed by the first
    # (the devkit's rule): keep one of each.
    gts = [
        [g for k, g in enumerate(image) if all(g[:2] != h[:2] for h in image[:k])] for image in gts
    ]
    dets = [[(lab, data.draw(st.floats(0.01, 1.0)), box) for lab, box, _ in image] for image in gts]
    pred, gt = to_arrays(dets, gts)
    result = eval_detection_voc(*pred, *gt, use_07_metric=use_07_metric, n_classes=n_classes)
    for c in range(n_classes):
        if result.n_positives[c] > 0:
            assert abs(result.ap[c] - 1.0) < 1e-12
        else:
            assert math.isnan(result.ap[c])


@given(scenes(), st.booleans(), st.integers(0, 2))
def test_a_last_false_positive_changes_no_ap(scene, use_07_metric, label):
    n_classes, dets, gts = scene
    label = label % n_classes
    pred, gt = to_arrays(dets, gts)
    before = eval_detection_voc(*pred, *gt, use_07_metric=use_07_metric, n_classes=n_classes)
    # A box far from everything, scored below every other detection.
    dets = [list(d) for d in dets]
    dets[-1].append((label, 0.001, [500.0, 500.0, 510.0, 510.0]))
    pred, gt = to_arrays(dets, gts)
    after = eval_detection_voc(*pred, *gt, use_07_metric=use_07_metric, n_classes=n_classes)
    np.testing.assert_array_equal(before.ap, after.ap)
    assert after.n_detections[label] == before.n_detections[label] + 1


@given(scenes(distinct_scores=True), st.booleans(), st.randoms(use_true_random=False))
def test_image_order_does_not_matter_with_distinct_scores(scene, use_07_metric, random):
    n_classes, dets, gts = scene
    order = list(range(len(dets)))
    random.shuffle(order)
    pred, gt = to_arrays(dets, gts)
    pred_p, gt_p = to_arrays([dets[i] for i in order], [gts[i] for i in order])
    a = eval_detection_voc(*pred, *gt, use_07_metric=use_07_metric, n_classes=n_classes)
    b = eval_detection_voc(*pred_p, *gt_p, use_07_metric=use_07_metric, n_classes=n_classes)
    np.testing.assert_array_equal(a.ap, b.ap)
    for c in range(n_classes):
        np.testing.assert_array_equal(a.precision[c], b.precision[c])
