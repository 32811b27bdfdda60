import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minissd.boxes import corners_to_centre, decode, encode, iou_reference, nms
from minissd.ssd.detect import Detections, _softmax, detect, detect_image
from minissd.ssd.model import DetectConfig

VAR = (0.1, 0.1, 0.2, 0.2)


def scene(num_priors=50, num_classes=3, seed=0):
    """Priors, and predictions that decode to chosen boxes with chosen class scores."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0.1, 0.7, (num_priors, 2))
    wh = rng.uniform(0.1, 0.3, (num_priors, 2))
    priors = np.concatenate([xy + wh / 2, wh], 1)
    target = np.concatenate([xy, xy + wh], 1) + rng.normal(0, 0.01, (num_priors, 4))
    loc = encode(target, priors, VAR)
    conf = rng.normal(0, 1, (num_priors, num_classes))
    return loc, conf, priors, target


def test_boxes_come_out_in_pixels_sorted_and_suppressed():
    loc, conf, priors, target = scene()
    d = detect_image(loc, conf, priors, DetectConfig(score_threshold=0.0), VAR,
                     image_size=(200, 400), clip=False)
    assert np.all(np.diff(d.scores) <= 0)
    assert d.boxes[:, [0, 2]].max() > 1.5  # pixels, not normalised
    for c in np.unique(d.labels):  # per class: no two kept boxes overlap above 0.45
        b = d.boxes[d.labels == c]
        o = iou_reference(b, b)
        np.fill_diagonal(o, 0)
        assert o.max(initial=0) <= 0.45


def test_per_class_pre_nms_top_k_and_per_image_keep_top_k_both_cut():
    """Both of Caffe's cuts: the per-class ``top_k`` before NMS (ssd.pytorch's ``nms`` keeps its
    ``top_k`` best before suppressing too) and the per-image ``keep_top_k`` after it (the one
    ssd.pytorch's ``Detect`` loses, #168: its ``fill_(0)`` writes into a copy)."""
    n = 30
    far = np.stack([np.array([i, 0, i + 0.5, 0.5]) / n for i in range(n)])  # disjoint boxes
    priors = corners_to_centre(far)
    loc = np.zeros((n, 4))
    conf = np.zeros((n, 2))
    conf[:, 1] = np.linspace(5, 1, n)  # descending scores for class 1
    d = detect_image(loc, conf, priors, DetectConfig(score_threshold=0.0, pre_nms_top_k=7))
    assert len(d) == 7
    np.testing.assert_allclose(d.boxes, far[:7], atol=1e-12)
    d = detect_image(loc, conf, priors, DetectConfig(score_threshold=0.0, keep_top_k=4))
    assert len(d) == 4


def test_score_threshold_is_strict_and_background_never_reported():
    loc, conf, priors, _ = scene(num_classes=2)
    conf[:, 0] = 10.0  # background wins everywhere: object scores ~ e^-10
    d = detect_image(loc, conf, priors, DetectConfig(score_threshold=0.01))
    assert len(d) == 0 and d.boxes.shape == (0, 4)
    d = detect_image(loc, conf, priors, DetectConfig(score_threshold=0.0))
    assert len(d) > 0 and set(d.labels.tolist()) == {0}  # 0-based object class


def test_batch_api():
    loc, conf, priors, _ = scene()
    out = detect(np.stack([loc, loc]), np.stack([conf, conf]), priors, DetectConfig(), VAR,
                 image_sizes=[(10, 10), (20, 20)])
    np.testing.assert_allclose(out[1].boxes, out[0].boxes * 2)


def test_keep_top_k_cuts_over_all_classes_of_an_image():
    # ssd.pytorch #168: its final per-image top-k is a no-op, so (classes - 1) * top_k come out.
    n = 12
    far = np.stack([np.array([i, 0, i + 0.5, 0.5]) / n for i in range(n)])  # disjoint boxes
    priors = corners_to_centre(far)
    score = np.linspace(5, 1, n)
    conf = np.zeros((n, 3))
    conf[:, 1] = np.where(np.arange(n) % 2 == 0, score, -10.0)  # class 1 on the even priors
    conf[:, 2] = np.where(np.arange(n) % 2 == 1, score, -10.0)  # class 2 on the odd ones
    d = detect_image(np.zeros((n, 4)), conf, priors, DetectConfig(score_threshold=0.0,
                                                                   keep_top_k=5))
    assert len(d) == 5
    assert np.all(np.diff(d.scores) <= 0)
    expected = np.sort(np.concatenate([_softmax_rows(conf)[:, 1], _softmax_rows(conf)[:, 2]]))
    np.testing.assert_allclose(d.scores, expected[::-1][:5])
    assert set(d.labels.tolist()) == {0, 1}


def _softmax_rows(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_bad_offsets_and_variances_name_the_argument():
    loc, conf, priors, _ = scene()
    bad = loc.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="loc contains NaN"):  # was NMS's "boxes contains NaN"
        detect_image(bad, conf, priors, DetectConfig(), VAR)
    with pytest.raises(ValueError, match=r"variances must be 4 numbers"):  # was silently used
        detect_image(loc, conf, priors, DetectConfig(), (0.1, 0.1, 0.2))
    with pytest.raises(ValueError, match=r"loc must have shape \(\.\.\., P, 4\) with P = 50"):
        detect_image(loc[:, :3], conf, priors, DetectConfig(), VAR)


def detect_image_by_class_loop(loc, conf, priors, config, variances=VAR, image_size=(1.0, 1.0),
                               clip=True):
    """``detect_image`` as it was before it went through ``boxes.batched_nms``: one ``nms`` per
    class, then the image's ``keep_top_k`` best by a stable sort (the reference it must equal)."""
    scores = _softmax(conf.astype(np.float64))
    boxes = decode(loc.astype(np.float64), priors.astype(np.float64), variances)
    if clip:
        boxes = np.clip(boxes, 0.0, 1.0)
    h, w = image_size
    boxes = boxes * np.array([w, h, w, h], dtype=np.float64)
    out_boxes, out_labels, out_scores = [], [], []
    for c in range(1, scores.shape[1]):
        candidates = np.flatnonzero(scores[:, c] > config.score_threshold)
        if candidates.size == 0:
            continue
        keep = candidates[nms(boxes[candidates], scores[candidates, c], config.nms_threshold,
                              pre_nms_top_k=config.pre_nms_top_k)]
        out_boxes.append(boxes[keep])
        out_scores.append(scores[keep, c])
        out_labels.append(np.full(len(keep), c - 1, dtype=np.int64))
    if not out_scores:
        return Detections(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))
    boxes, labels = np.concatenate(out_boxes), np.concatenate(out_labels)
    scores = np.concatenate(out_scores)
    order = np.argsort(-scores, kind="stable")[:config.keep_top_k]
    return Detections(boxes[order], labels[order], scores[order])


@st.composite
def detection_problems(draw):
    """Few priors on a coarse grid (duplicates, nesting, touching), offsets from a small set and
    logits from a few integers: equal scores within a class, across classes and across boxes."""
    p = draw(st.integers(1, 24))
    c = draw(st.integers(2, 5))
    grid = st.integers(0, 4)
    centres = np.array(draw(st.lists(st.tuples(grid, grid), min_size=p, max_size=p))) / 4
    sizes = np.array(draw(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)),
                                   min_size=p, max_size=p))) / 4
    priors = np.concatenate([centres, sizes], axis=1)
    loc = np.array(draw(st.lists(st.sampled_from([-1.0, 0.0, 0.0, 0.5, 2.0]),
                                 min_size=4 * p, max_size=4 * p))).reshape(p, 4)
    conf = np.array(draw(st.lists(st.integers(-2, 2), min_size=p * c, max_size=p * c)),
                    dtype=np.float64).reshape(p, c)
    config = DetectConfig(score_threshold=draw(st.sampled_from([0.0, 0.01, 0.2, 0.4])),
                          pre_nms_top_k=draw(st.sampled_from([1, 2, 5, 400])),
                          nms_threshold=draw(st.sampled_from([0.0, 0.3, 0.45, 1.0])),
                          keep_top_k=draw(st.sampled_from([1, 3, 7, 200])))
    image_size = draw(st.sampled_from([(1.0, 1.0), (300, 500)]))
    return loc, conf, priors, config, image_size, draw(st.booleans())


@given(detection_problems())
def test_detect_through_batched_nms_equals_the_per_class_loop(problem):
    """Same detections, in the same order, as the per-class loop: the 0.01-style score threshold,
    the per-class pre-NMS top-k, the per-image keep_top_k and every tie-break."""
    loc, conf, priors, config, image_size, clip = problem
    got = detect_image(loc, conf, priors, config, VAR, image_size, clip)
    want = detect_image_by_class_loop(loc, conf, priors, config, VAR, image_size, clip)
    for field in ("boxes", "labels", "scores"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
        assert getattr(got, field).dtype == getattr(want, field).dtype, field
    assert got.boxes.shape == want.boxes.shape


@st.composite
def detection_batches(draw):
    """Several images of one problem's shape: each image its own offsets and logits (ties inside
    and across images), one config; some images may have no candidate at all."""
    loc, conf, priors, config, _, clip = draw(detection_problems())
    n = draw(st.integers(1, 4))
    p, c = conf.shape
    locs = [loc] + [np.array(draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0]), min_size=4 * p,
                                           max_size=4 * p))).reshape(p, 4) for _ in range(n - 1)]
    confs = [conf] + [np.array(draw(st.lists(st.integers(-2, 2), min_size=p * c,
                                             max_size=p * c)), dtype=np.float64).reshape(p, c)
                      for _ in range(n - 1)]
    if n > 1 and draw(st.booleans()):  # an image whose every box is background
        confs[-1] = np.tile([[50.0] + [0.0] * (c - 1)], (p, 1))
    sizes = [draw(st.sampled_from([(1.0, 1.0), (300, 500), (17, 9)])) for _ in range(n)]
    return np.stack(locs), np.stack(confs), priors, config, sizes, clip


@given(detection_batches())
def test_batch_detect_equals_image_by_image(problem):
    """``detect`` (one batched NMS over (image, class) pairs) gives each image exactly what
    ``detect_image`` gives it: the same boxes, labels, scores, order and dtypes."""
    loc, conf, priors, config, sizes, clip = problem
    got = detect(loc, conf, priors, config, VAR, sizes, clip)
    assert len(got) == len(loc)
    for i, d in enumerate(got):
        want = detect_image(loc[i], conf[i], priors, config, VAR, sizes[i], clip)
        for field in ("boxes", "labels", "scores"):
            np.testing.assert_array_equal(getattr(d, field), getattr(want, field),
                                          err_msg=f"image {i} {field}")
            assert getattr(d, field).dtype == getattr(want, field).dtype, field
        assert d.boxes.shape == want.boxes.shape


def test_batch_detect_checks_image_sizes():
    loc, conf, priors, _ = scene()
    with pytest.raises(ValueError, match="image_sizes.*2 images, 1 sizes"):
        detect(np.stack([loc, loc]), np.stack([conf, conf]), priors, DetectConfig(), VAR,
               image_sizes=[(10, 10)])
