"""The evaluation on real data: voc2012-sample's detections, and the full VOC2007 test ground truth.

The independent reference is a line-by-line port of py-faster-rcnn's ``lib/datasets/voc_eval.py``
(Bharath Hariharan, MIT licence), kept as close to the original as possible. The changes that
bring it to the devkit's rules are marked ``# DEVKIT:``. (rafaelpadilla/review_object_detection_
metrics, where voc2012-sample comes from, publishes no VOC AP for this data: its tests use other
data, so there is no published number to compare with.)
"""

import time

import numpy as np
import pytest

from minissd.eval import eval_detection_voc, format_ap_table, load_detection_txt_dir

# The devkit's `for t=0:0.1:1`: MATLAB's colon counts the first half of the points up from 0 and
# the rest down from 1, so its levels are 3*0.1 = 0.30000000000000004 but the plain 0.6 and 0.7
# (np.arange gives 0.6000000000000001 and 0.7000000000000001).
DEVKIT_LEVELS = [k * 0.1 for k in range(5)] + [1 - (10 - k) * 0.1 for k in range(5, 11)]


def voc_ap_port(rec, prec, use_07_metric=False):
    """py-faster-rcnn ``voc_ap``."""
    if use_07_metric:
        # 11 point metric
        ap = 0.0
        for t in DEVKIT_LEVELS:  # DEVKIT: was np.arange(0., 1.1, 0.1)
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
    else:
        # correct AP calculation
        # first append sentinel values at the end
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))

        # compute the precision envelope
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])

        # to calculate area under PR curve, look for points
        # where X axis (recall) changes value
        i = np.where(mrec[1:] != mrec[:-1])[0]

        # and sum (\Delta recall) * prec
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def voc_eval_port(detlines, recs, imagenames, classname, ovthresh=0.5, use_07_metric=False):
    """py-faster-rcnn ``voc_eval`` for one class.

    ``detlines``: the lines of the class's detection file, ``[image_id, score, x1, y1, x2, y2]``
    strings in file order; ``recs``: image id -> list of ``{"name", "bbox", "difficult"}``.
    (The original reads both from disk and caches the annotations; the loop is unchanged.)
    """
    # extract gt objects for this class
    class_recs = {}
    npos = 0
    for imagename in imagenames:
        R = [obj for obj in recs[imagename] if obj["name"] == classname]
        bbox = np.array([x["bbox"] for x in R])
        difficult = np.array([x["difficult"] for x in R]).astype(bool)
        det = [False] * len(R)
        npos = npos + sum(~difficult)
        class_recs[imagename] = {"bbox": bbox, "difficult": difficult, "det": det}

    splitlines = detlines
    image_ids = [x[0] for x in splitlines]
    confidence = np.array([float(x[1]) for x in splitlines])
    BB = np.array([[float(z) for z in x[2:]] for x in splitlines]).reshape(-1, 4)

    # sort by confidence
    sorted_ind = np.argsort(-confidence, kind="stable")  # DEVKIT: stable, as MATLAB's sort
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]

    # go down dets and mark TPs and FPs
    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)

        if BBGT.size > 0:
            # compute overlaps
            # intersection
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih

            # union
            uni = (
                (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0)
                - inters
            )

            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)

        if ovmax >= ovthresh:  # DEVKIT: was `ovmax > ovthresh`
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0

    # compute precision recall
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, 1)  # DEVKIT: 0/0 -> 0 (NaN would poison np.max)
    ap = voc_ap_port(rec, prec, use_07_metric)

    return rec, prec, ap


def detection_lines(ids, boxes, labels, scores, class_index):
    """One class's detection file, as py-faster-rcnn writes it: images in order, boxes in order."""
    lines = []
    for image_id, b, lab, s in zip(ids, boxes, labels, scores, strict=True):
        for k in np.flatnonzero(lab == class_index):
            lines.append([image_id, repr(float(s[k]))] + [repr(float(v)) for v in b[k]])
    return lines


def records_from_arrays(ids, class_names, gt):
    boxes, labels, difficults = gt
    return {
        i: [
            {"name": class_names[lab], "bbox": list(b), "difficult": int(d)}
            for b, lab, d in zip(bx, lb, df, strict=True)
        ]
        for i, bx, lb, df in zip(ids, boxes, labels, difficults, strict=True)
    }


def assert_matches_port(result, ids, class_names, records, dets, use_07_metric, iou=0.5):
    for c, name in enumerate(class_names):
        lines = detection_lines(ids, *dets, c)
        rec, prec, ap = voc_eval_port(lines, records, ids, name, iou, use_07_metric)
        np.testing.assert_allclose(result.recall[c], rec, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(result.precision[c], prec, rtol=0, atol=1e-12, err_msg=name)
        assert result.ap[c] == pytest.approx(ap, abs=1e-12), name


# ---------------------------------------------------------------- voc2012-sample


def test_detection_files_load_in_ground_truth_order(voc2012_sample):
    ids = voc2012_sample["ids"]
    boxes, labels, scores = load_detection_txt_dir(voc2012_sample["detections_dir"], ids)
    assert len(boxes) == len(ids) == 100
    # 98 files, 452 detections; the two images without a file have no detections.
    assert sum(len(b) for b in boxes) == 452
    missing = [i for i, b in zip(ids, boxes, strict=True) if len(b) == 0]
    assert sorted(missing) == ["2007_000676", "2007_001377"]
    assert all(lab.min() >= 0 and lab.max() < 20 for lab in labels if len(lab))
    first = ids.index("2007_000027")
    np.testing.assert_array_equal(boxes[first], [[162.0, 96.0, 351.0, 341.0]])
    assert labels[first].tolist() == [14] and scores[first].tolist() == [0.431418]


@pytest.mark.parametrize("use_07_metric", [True, False], ids=["voc07", "voc10"])
def test_voc2012_sample_matches_py_faster_rcnn_port(voc2012_sample, use_07_metric):
    ids, names = voc2012_sample["ids"], voc2012_sample["class_names"]
    dets = load_detection_txt_dir(voc2012_sample["detections_dir"], ids)
    result = eval_detection_voc(*dets, *voc2012_sample["gt"], use_07_metric=use_07_metric)
    assert result.n_classes == 20
    # 273 objects, 38 difficult -> 235 positives.
    assert result.n_positives.sum() == 235
    assert_matches_port(result, ids, names, voc2012_sample["records"], dets, use_07_metric)
    print(format_ap_table(result, names))


def test_voc2012_sample_map(voc2012_sample):
    # Regression values, produced by this code and equal (above) to the port's: they catch a
    # change in the loaders or the fixtures that would move both sides together.
    ids = voc2012_sample["ids"]
    dets = load_detection_txt_dir(voc2012_sample["detections_dir"], ids)
    r07 = eval_detection_voc(*dets, *voc2012_sample["gt"], use_07_metric=True)
    r10 = eval_detection_voc(*dets, *voc2012_sample["gt"], use_07_metric=False)
    assert r07.map == pytest.approx(0.607511, abs=1e-6)
    assert r10.map == pytest.approx(0.613875, abs=1e-6)


# ---------------------------------------------------------------- VOC2007 test ground truth

# A guard against a per-detection Python loop over all images (minutes), not a speed figure:
# about 1 s here on an idle machine; the margin absorbs a shared, loaded CI machine.
GUARD_SECONDS = 30.0


@pytest.mark.parametrize("use_07_metric", [True, False], ids=["voc07", "voc10"])
def test_voc2007_ground_truth_as_detections_gives_ap_one(voc2007_test_gt, use_07_metric):
    boxes, labels, difficults = voc2007_test_gt["gt"]
    assert sum(len(b) for b in boxes) == 14976 and sum(d.sum() for d in difficults) == 2944
    rng = np.random.default_rng(0)
    scores = [rng.random(len(b)) for b in boxes]  # any scores; difficult ones are ignored
    start = time.perf_counter()
    result = eval_detection_voc(
        boxes, labels, scores, boxes, labels, difficults, 0.5, use_07_metric
    )
    elapsed = time.perf_counter() - start
    assert result.n_positives.sum() == 14976 - 2944
    np.testing.assert_allclose(result.ap, 1.0, rtol=0, atol=1e-12)
    assert elapsed < GUARD_SECONDS, f"15k objects took {elapsed:.2f} s"


def test_voc2007_half_detected_gives_known_ap(voc2007_test_gt):
    # Every difficult object is detected exactly (ignored, whatever its score). Of the other
    # objects a random half is detected exactly with scores in [1, 2), the rest get a box far
    # outside every image with scores in [0, 1): all TPs rank before all FPs. With n_good of
    # npos found, precision is 1 up to recall r = n_good / npos, then falls, so
    #   area AP     = r
    #   11-point AP = #{devkit levels t : t <= r} / 11
    #               = (floor(10 n_good / npos) + 1) / 11, less 1 if r is exactly 3/10.
    boxes, labels, difficults = voc2007_test_gt["gt"]
    rng = np.random.default_rng(1)
    pred_boxes, pred_scores, good_count = [], [], np.zeros(20, np.int64)
    for b, lab, d in zip(boxes, labels, difficults, strict=True):
        good = ~d & (rng.random(len(b)) < 0.5)
        bad = ~d & ~good
        pb = b.copy()
        pb[bad] = [-10000.0, -10000.0, -9990.0, -9990.0]
        s = np.where(good, 1 + rng.random(len(b)), rng.random(len(b)))
        s[d] = 2 * rng.random(d.sum())
        pred_boxes.append(pb)
        pred_scores.append(s)
        np.add.at(good_count, lab[good], 1)
    r07 = eval_detection_voc(pred_boxes, labels, pred_scores, boxes, labels, difficults, 0.5, True)
    r10 = eval_detection_voc(pred_boxes, labels, pred_scores, boxes, labels, difficults, 0.5, False)
    npos = r07.n_positives
    np.testing.assert_allclose(r10.ap, good_count / npos, rtol=0, atol=1e-12)
    levels_reached = [sum(t <= g / n for t in DEVKIT_LEVELS) for g, n in zip(good_count, npos)]
    np.testing.assert_allclose(r07.ap, np.array(levels_reached) / 11, rtol=0, atol=1e-12)
    exact_tenths = 10 * good_count // npos + 1 - (10 * good_count == 3 * npos)
    np.testing.assert_array_equal(levels_reached, exact_tenths)


def test_voc2007_jittered_ground_truth_matches_port(voc2007_test_gt):
    # Every object detected 1 to 3 times with integer jitter of up to 12 pixels per side and
    # scores rounded to 2 decimals (many ties), plus random boxes: TPs, duplicates, misses,
    # near-threshold IoUs and difficult hits, compared with the port on the full test set.
    ids, names = voc2007_test_gt["ids"], voc2007_test_gt["class_names"]
    boxes, labels, difficults = voc2007_test_gt["gt"]
    rng = np.random.default_rng(2)
    pb, pl, ps = [], [], []
    for b, lab in zip(boxes, labels, strict=True):
        repeat = rng.integers(1, 4, len(b))
        jb = np.repeat(b, repeat, axis=0) + rng.integers(-12, 13, (repeat.sum(), 4))
        jb[:, 2:] = np.maximum(jb[:, 2:], jb[:, :2])  # keep x1 <= x2, y1 <= y2
        jl = np.repeat(lab, repeat)
        noise = rng.integers(0, 400, (2, 2)).astype(float)
        jb = np.concatenate([jb, np.hstack([noise[:, :1], noise[:, 1:], noise + 60])])
        jl = np.concatenate([jl, rng.integers(0, 20, 2)])
        pb.append(jb)
        pl.append(jl)
        ps.append(np.round(rng.random(len(jl)), 2))
    records = records_from_arrays(ids, names, (boxes, labels, difficults))
    for use_07_metric in (True, False):
        start = time.perf_counter()
        result = eval_detection_voc(pb, pl, ps, boxes, labels, difficults, 0.5, use_07_metric)
        elapsed = time.perf_counter() - start
        assert elapsed < GUARD_SECONDS, f"{sum(map(len, pb))} detections took {elapsed:.2f} s"
        assert 0.1 < result.map < 0.9  # a mix of hits and misses, not a degenerate case
        assert_matches_port(result, ids, names, records, (pb, pl, ps), use_07_metric)
