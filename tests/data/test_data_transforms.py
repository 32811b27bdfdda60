"""SSD augmentation: properties of each step and of the composed transforms."""

import dataclasses

import matplotlib.colors
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minissd.data.transforms import (
    AUGMENTATIONS,
    SSD_PATCH_SAMPLERS,
    VGG_MEAN,
    AugmentationConfig,
    PatchSampler,
    PhotometricConfig,
    SSDAugmentation,
    SSDTransformEval,
    crop,
    expand,
    generate_patches,
    hflip,
    hsv_to_rgb,
    photometric_distort,
    random_crop,
    resize,
    rgb_to_hsv,
    sample_patch,
    to_chw,
)


def iou_reference(a, b):
    """Plain float64 IoU of two corner boxes, written independently of the library."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@st.composite
def scenes(draw, max_boxes=4):
    """(image uint8 (H, W, 3), boxes float32 (K, 4) with sides >= 1 px, labels, seed)."""
    width = draw(st.integers(8, 64))
    height = draw(st.integers(8, 64))
    k = draw(st.integers(0, max_boxes))
    boxes = []
    for _ in range(k):
        x1 = draw(st.floats(0, width - 1, allow_nan=False))
        y1 = draw(st.floats(0, height - 1, allow_nan=False))
        x2 = draw(st.floats(min(x1 + 1, width), width))
        y2 = draw(st.floats(min(y1 + 1, height), height))
        boxes.append((x1, y1, x2, y2))
    seed = draw(st.integers(0, 2**32 - 1))
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return image, boxes, np.arange(k, dtype=np.int64), seed


def assert_valid_normalised(boxes):
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


# ----------------------------------------------------------------------------- crop


def test_paper_samplers():
    whole, *constrained, anything = SSD_PATCH_SAMPLERS
    assert whole == PatchSampler() and not whole.constrained
    assert [s.min_jaccard_overlap for s in constrained] == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert anything.max_jaccard_overlap == 1.0 and anything.min_jaccard_overlap is None
    for s in (*constrained, anything):
        assert (s.min_scale, s.max_scale, s.max_trials) == (0.3, 1.0, 50)
        assert (s.min_aspect_ratio, s.max_aspect_ratio) == (0.5, 2.0)


@given(scenes(), st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]))
@settings(max_examples=60)
def test_every_accepted_patch_meets_its_iou_constraint(scene, threshold):
    image, boxes, _, seed = scene
    h, w = image.shape[:2]
    sampler = dataclasses.replace(SSD_PATCH_SAMPLERS[1], min_jaccard_overlap=threshold)
    accepted = generate_patches(boxes, w, h, [sampler], np.random.default_rng(seed))
    assert len(accepted) <= 1
    for _, patch in accepted:
        assert 0 <= patch[0] < patch[2] <= w and 0 <= patch[1] < patch[3] <= h
        assert max(iou_reference(patch, b) for b in boxes) >= threshold
    if len(boxes) == 0:
        assert accepted == []


def test_iou_constraint_rejects_patches_regression_ssd_pytorch_68():
    """ssd.pytorch's crop accepts every patch (and/or bug); ours must reject bad ones."""
    boxes = np.array([[40, 40, 60, 60]], dtype=np.float32)  # small box in a 100x100 image
    strict = dataclasses.replace(SSD_PATCH_SAMPLERS[5], min_jaccard_overlap=0.9, max_trials=1)
    rng = np.random.default_rng(0)
    outcomes = [generate_patches(boxes, 100, 100, [strict], rng) for _ in range(2000)]
    # a patch of at least 30% of each side around a 20% box reaches IoU 0.9 rarely
    assert sum(bool(o) for o in outcomes) < 100
    for o in outcomes:
        for _, patch in o:
            assert iou_reference(patch, boxes[0]) >= 0.9


def test_constraint_needs_any_box_not_all():
    """Caffe semantics: one box meeting the threshold is enough."""
    boxes = np.array([[0, 0, 100, 100], [0, 0, 2, 2]], dtype=np.float32)
    sampler = dataclasses.replace(SSD_PATCH_SAMPLERS[5], min_jaccard_overlap=0.81)
    found = generate_patches(boxes, 100, 100, [sampler], np.random.default_rng(1))
    assert found, "a near-whole patch overlaps the big box by >= 0.81"
    patch = found[0][1]
    assert iou_reference(patch, boxes[1]) < 0.81 <= iou_reference(patch, boxes[0])


def test_crop_picks_uniformly_among_accepted_samplers():
    boxes = np.array([[10, 10, 90, 90]], dtype=np.float32)
    image = np.zeros((100, 100, 3), np.uint8)
    rng = np.random.default_rng(0)
    sizes = [random_crop(image, boxes, np.array([0]), rng)[0].shape[:2] for _ in range(400)]
    whole = sum(s == (100, 100) for s in sizes)
    # 7 samplers, nearly all succeed here: the whole image is picked about 1/7 of the time
    assert 30 < whole < 90


@given(scenes())
@settings(max_examples=60)
def test_random_crop_keeps_valid_boxes_by_centre(scene):
    image, boxes, labels, seed = scene
    out, out_boxes, out_labels = random_crop(image, boxes, labels, np.random.default_rng(seed))
    h, w = out.shape[:2]
    assert out_boxes.shape == (len(out_labels), 4)
    assert (out_boxes[:, 0] >= 0).all() and (out_boxes[:, 2] <= w).all()
    assert (out_boxes[:, 1] >= 0).all() and (out_boxes[:, 3] <= h).all()
    assert (out_boxes[:, 2] > out_boxes[:, 0]).all() and (out_boxes[:, 3] > out_boxes[:, 1]).all()
    assert set(out_labels.tolist()) <= set(labels.tolist())


def test_crop_centre_rule_and_clipping():
    image = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    boxes = np.array([[0, 0, 30, 30], [20, 20, 80, 40], [60, 60, 100, 100]], np.float32)
    out, out_boxes, out_labels = crop(image, boxes, np.array([5, 6, 7]), np.array([25, 10, 75, 50]))
    np.testing.assert_array_equal(out, image[10:50, 25:75])
    # box 0 centre (15, 15) is outside; box 1 centre (50, 30) inside; box 2 centre (80, 80) out
    assert out_labels.tolist() == [6]
    np.testing.assert_array_equal(out_boxes, [[0, 10, 50, 30]])


@given(scenes())
@settings(max_examples=30)
def test_whole_image_crop_is_identity(scene):
    image, boxes, labels, seed = scene
    out, out_boxes, out_labels = random_crop(
        image, boxes, labels, np.random.default_rng(seed), [PatchSampler()]
    )
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out_boxes, boxes)
    np.testing.assert_array_equal(out_labels, labels)


def test_sample_patch_respects_scale_and_aspect():
    rng = np.random.default_rng(0)
    sampler = SSD_PATCH_SAMPLERS[-1]
    for _ in range(500):
        x1, y1, x2, y2 = sample_patch(sampler, 1000, 500, rng)
        w, h = (x2 - x1) / 1000, (y2 - y1) / 500
        assert 0.3 - 1e-3 <= np.sqrt(w * h) <= 1 + 1e-3
        assert 0.5 - 1e-2 <= w / h <= 2 + 1e-2
        assert 0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 500


# ----------------------------------------------------------------------------- expand, flip


@given(scenes(), st.floats(1.0, 4.0))
@settings(max_examples=40)
def test_expand_preserves_box_content(scene, max_ratio):
    image, boxes, _, seed = scene
    boxes = np.floor(boxes)  # whole-pixel boxes so contents can be compared exactly
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    out, out_boxes = expand(image, boxes, np.random.default_rng(seed), VGG_MEAN, max_ratio)
    h, w = image.shape[:2]
    assert h <= out.shape[0] <= h * max_ratio and w <= out.shape[1] <= w * max_ratio
    for (x1, y1, x2, y2), (a1, b1, a2, b2) in zip(boxes.astype(int), out_boxes.astype(int)):
        np.testing.assert_array_equal(out[b1:b2, a1:a2], image[y1:y2, x1:x2])
    # the canvas outside the pasted image is the mean
    left, top = (out_boxes - boxes)[0, :2].astype(int) if len(boxes) else (None, None)
    if left is not None:
        np.testing.assert_array_equal(out[top : top + h, left : left + w], image)
        canvas = out.copy()
        canvas[top : top + h, left : left + w] = np.array(VGG_MEAN, np.uint8)
        assert (canvas == np.array(VGG_MEAN, np.uint8)).all()


@given(scenes())
@settings(max_examples=40)
def test_flip_twice_is_identity(scene):
    image, boxes, _, _ = scene
    once_image, once_boxes = hflip(image, boxes)
    twice_image, twice_boxes = hflip(once_image, once_boxes)
    np.testing.assert_array_equal(twice_image, image)
    np.testing.assert_allclose(twice_boxes, boxes, atol=1e-4)
    assert (once_boxes[:, 2] >= once_boxes[:, 0]).all()
    if len(boxes):  # the mirrored box frames the mirrored pixels
        np.testing.assert_array_equal(once_image[:, ::-1], image)


# ----------------------------------------------------------------------------- colour


def test_hsv_matches_matplotlib_and_round_trips():
    rgb = np.random.default_rng(0).uniform(0, 255, (2000, 3)).astype(np.float32)
    rgb[:10] = [
        [0, 0, 0],
        [255, 255, 255],
        [10, 10, 10],
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [0, 255, 255],
        [255, 0, 255],
        [128, 64, 64],
    ]
    hsv = rgb_to_hsv(rgb)
    oracle = matplotlib.colors.rgb_to_hsv(rgb / 255)
    np.testing.assert_allclose(hsv[:, 0] / 360, oracle[:, 0], atol=1e-5)
    np.testing.assert_allclose(hsv[:, 1], oracle[:, 1], atol=1e-5)
    np.testing.assert_allclose(hsv[:, 2] / 255, oracle[:, 2], atol=1e-6)
    np.testing.assert_allclose(hsv_to_rgb(hsv), rgb, atol=1e-3)
    shifted = hsv.copy()
    shifted[:, 0] += 360  # hue wraps
    np.testing.assert_allclose(hsv_to_rgb(shifted), rgb, atol=1e-3)


def test_photometric_ranges():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    off = PhotometricConfig(brightness_prob=0, contrast_prob=0, saturation_prob=0, hue_prob=0)
    np.testing.assert_array_equal(photometric_distort(image, np.random.default_rng(1), off), image)
    only_brightness = dataclasses.replace(off, brightness_prob=1.0)
    flat = np.full((8, 8, 3), 100, np.uint8)
    for seed in range(50):
        out = photometric_distort(flat, np.random.default_rng(seed), only_brightness)
        assert out.dtype == np.uint8 and abs(int(out[0, 0, 0]) - 100) <= 32
        assert (out == out[0, 0, 0]).all()
    only_hue = dataclasses.replace(off, hue_prob=1.0)
    grey = np.full((4, 4, 3), 77, np.uint8)  # no chroma: a hue shift leaves grey alone
    out = photometric_distort(grey, np.random.default_rng(0), only_hue)
    np.testing.assert_array_equal(out, grey)
    only_contrast = dataclasses.replace(off, contrast_prob=1.0)
    out = photometric_distort(image, np.random.default_rng(3), only_contrast).astype(float)
    ratio = out[image > 20] / image[image > 20]
    assert 0.45 < ratio.min() and ratio.max() < 1.55


# ----------------------------------------------------------------------------- composed


@given(scenes(), st.sampled_from([32, (24, 40)]))
@settings(max_examples=40)
def test_augmentation_outputs_valid_boxes(scene, size):
    image, boxes, labels, seed = scene
    out, out_boxes, out_labels = SSDAugmentation(size)(
        image, boxes, labels, np.random.default_rng(seed)
    )
    expected = (size, size) if isinstance(size, int) else size
    assert out.shape == (3, *expected) and out.dtype == np.float32
    assert_valid_normalised(out_boxes)
    assert out_labels.dtype == np.int64 and out_labels.shape == (len(out_boxes),)
    assert out.min() >= -max(VGG_MEAN) and out.max() <= 255 - min(VGG_MEAN)


def test_augmentation_is_deterministic_per_rng_and_varies():
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 50, 40]], np.float32)
    aug = SSDAugmentation(32)
    a = aug(image, boxes, np.array([1]), np.random.default_rng(42))
    b = aug(image, boxes, np.array([1]), np.random.default_rng(42))
    c = aug(image, boxes, np.array([1]), np.random.default_rng(43))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_augmentation_with_everything_off_is_the_eval_transform():
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 50, 40], [0, 0, 80, 60]], np.float32)
    labels = np.array([1, 2])
    config = AugmentationConfig(photometric=None, expand=None, samplers=(), flip_prob=0.0)
    train = SSDAugmentation(32, config=config)(image, boxes, labels, np.random.default_rng(0))
    test = SSDTransformEval(32)(image, boxes, labels)
    for x, y in zip(train, test):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(test[1], [[0.125, 1 / 6, 0.625, 2 / 3], [0, 0, 1, 1]], rtol=1e-6)
    resized = np.asarray(test[0]) + np.array(VGG_MEAN, np.float32)[:, None, None]
    assert resized.shape == (3, 32, 32) and np.allclose(resized, np.rint(resized))


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_named_recipe_gives_valid_output(name):
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 50, 40], [30, 5, 79, 59]], np.float32)
    for seed in range(20):
        out, out_boxes, labels = SSDAugmentation(32, config=AUGMENTATIONS[name])(
            image, boxes, np.array([1, 2]), np.random.default_rng(seed))
        assert out.shape == (3, 32, 32)
        assert_valid_normalised(out_boxes)
        assert labels.shape == (len(out_boxes),)


def test_photometric_after_resize_distorts_the_resized_image():
    """The late order is photometric(resize(image)) with the same random draws (the flip's
    draw comes first)."""
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 50, 40]], np.float32)
    config = AugmentationConfig(expand=None, samplers=(), flip_prob=0.0,
                                photometric_after_resize=True)
    for seed in range(10):
        out, out_boxes, _ = SSDAugmentation(32, config=config)(
            image, boxes, np.array([1]), np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        rng.random()  # the flip's draw
        expected = to_chw(photometric_distort(resize(image, (32, 32)), rng))
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_allclose(out_boxes, [[0.125, 1 / 6, 0.625, 2 / 3]], rtol=1e-6)


def test_flip_in_pipeline_mirrors_boxes():
    image = np.zeros((40, 40, 3), np.uint8)
    boxes = np.array([[0, 0, 10, 40]], np.float32)
    config = AugmentationConfig(photometric=None, expand=None, samplers=(), flip_prob=1.0)
    _, out_boxes, _ = SSDAugmentation(40, config=config)(
        image, boxes, np.array([0]), np.random.default_rng(0)
    )
    np.testing.assert_allclose(out_boxes, [[0.75, 0, 1, 1]])


@pytest.mark.parametrize("size", [0, -3, (10, 0), 2.5])
def test_bad_size_is_a_clear_error(size):
    with pytest.raises(ValueError, match="size: expected a positive int"):
        SSDTransformEval(size)
    with pytest.raises(ValueError, match="size: expected a positive int"):
        SSDAugmentation(size)


@given(
    patch=st.tuples(*[st.floats(-5, 60, allow_nan=False)] * 4),
    boxes=st.lists(st.tuples(*[st.floats(-5, 60, allow_nan=False)] * 4), max_size=6),
)
def test_crop_jaccard_equals_the_reference_iou(patch, boxes):
    """The crop sampler's fast one-patch IoU is the project's reference formula."""
    from minissd.boxes import iou_reference
    from minissd.data.transforms import jaccard

    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    expected = iou_reference(np.array([patch]), b)[0]
    np.testing.assert_allclose(jaccard(np.array(patch), b), expected, rtol=1e-12, atol=0)
