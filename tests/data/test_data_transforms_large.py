"""Large inputs: the training augmentation shrinks them first, so memory stays bounded."""

import tracemalloc

import numpy as np
import pytest

from minissd.data.transforms import (
    AUGMENTATIONS,
    SSD_PATCH_SAMPLERS,
    AugmentationConfig,
    ExpandConfig,
    PhotometricConfig,
    SSDAugmentation,
    resize,
    sample_patch,
    shrink,
    smallest_patch_fraction,
)


def smooth_image(height, width):
    """uint8 (H, W, 3) gradients: cheap to make, and resizing them is nearly lossless."""
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    return np.stack([y + 0 * x, x + 0 * y, (x + y) / 2], axis=-1).astype(np.uint8)


def test_smallest_patch_fraction():
    w, h = smallest_patch_fraction(SSD_PATCH_SAMPLERS)
    assert w == pytest.approx(0.3 * np.sqrt(0.5)) and h == pytest.approx(0.3 / np.sqrt(2))
    assert smallest_patch_fraction(()) == (1.0, 1.0)
    assert SSDAugmentation(300).max_input_size() == (1415, 1415)
    assert SSDAugmentation((300, 500)).max_input_size() == (1415, 2358)
    assert SSDAugmentation(300, config=AUGMENTATIONS["flip"]).max_input_size() == (300, 300)


def test_every_patch_of_a_shrunk_image_still_spans_the_model_input():
    """The premise of the shrink: the final resize never enlarges a patch."""
    aug = SSDAugmentation(64)
    limit_h, limit_w = aug.max_input_size()
    rng = np.random.default_rng(0)
    for sampler in SSD_PATCH_SAMPLERS:
        for _ in range(200):
            x1, y1, x2, y2 = sample_patch(sampler, limit_w, limit_h, rng)
            assert x2 - x1 >= 64 - 1 and y2 - y1 >= 64 - 1  # whole-pixel rounding


def test_shrink_scales_boxes_and_leaves_small_images_alone():
    image = smooth_image(400, 600)
    boxes = np.array([[60, 40, 300, 200]], np.float32)
    out, out_boxes = shrink(image, boxes, (100, 300))
    assert out.shape == (100, 300, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out_boxes, [[30, 10, 150, 50]])
    np.testing.assert_array_equal(out, resize(image, (100, 300)))  # channel by channel
    same, same_boxes = shrink(image, boxes, (400, 600))
    assert same is image and same_boxes is boxes


def test_large_image_memory_is_bounded_regression_issue_11():
    """An 8000 x 8000 photo peaked at 7.3 GB in the "ssd" recipe (float32 colour steps at
    full resolution, then a zoom-out canvas up to 16x the image). Now the transform's
    NumPy allocations stay below half the input's size: one channel copy (a third) and
    small arrays at the shrunk size. Every random stage is on here: the worst case."""
    image = smooth_image(3000, 4000)  # 36 MB
    boxes = np.array([[100, 200, 3000, 2500], [3000, 100, 3900, 2900]], np.float32)
    always = PhotometricConfig(brightness_prob=1, contrast_prob=1, saturation_prob=1, hue_prob=1)
    config = AugmentationConfig(photometric=always, expand=ExpandConfig(prob=1.0))
    for seed in range(2):
        tracemalloc.start()
        out, out_boxes, labels = SSDAugmentation(64, config=config)(
            image, boxes, np.array([0, 1]), np.random.default_rng(seed)
        )
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert out.shape == (3, 64, 64) and labels.shape == (len(out_boxes),)
        assert peak < image.nbytes / 2, f"peak {peak / 2**20:.0f} MiB"


class WithoutShrink(SSDAugmentation):
    """The augmentation as it was before the shrink (for comparison only)."""

    def max_input_size(self):
        return (2**31, 2**31)


def test_shrinking_first_is_the_same_augmentation():
    """The same draws with and without the shrink give the same crop (up to whole-pixel
    rounding of the patch), the same objects and nearly the same pixels."""
    big = smooth_image(600, 450)  # 151 x 151 is the limit for a 32-pixel model
    boxes = np.array([[50, 100, 300, 400], [20, 30, 130, 170]], np.float32)
    labels = np.array([0, 1])
    for seed in range(6):
        a = SSDAugmentation(32)(big, boxes, labels, np.random.default_rng(seed))
        b = WithoutShrink(32)(big, boxes, labels, np.random.default_rng(seed))
        np.testing.assert_array_equal(a[2], b[2])
        np.testing.assert_allclose(a[1], b[1], atol=0.02)
        assert np.abs(a[0] - b[0]).mean() < 2.0  # of 255 grey levels
