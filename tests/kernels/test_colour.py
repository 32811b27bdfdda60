"""The Numba saturation/hue kernel against the readable reference: the same bits on drawn images,
degenerate ones included (greys, black, white, channels tied), and whole augmentations unchanged."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minissd.data.transforms import (
    PIXEL_MAX,
    SSDAugmentation,
    adjust_saturation_hue,
    adjust_saturation_hue_reference,
)

# pixels as the photometric step makes them: uint8 values scaled by contrast/brightness and
# clipped, so any float32 in [0, 255]; a few exact values that take the special branches
special = st.sampled_from([0.0, 1.0, 127.5, 254.99998, PIXEL_MAX])
pixel = st.one_of(special, st.floats(0, PIXEL_MAX, width=32))


@st.composite
def images(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    img = draw(arrays(np.float32, (h, w, 3), elements=pixel))
    tie = draw(st.sampled_from(["none", "rg", "gb", "rb", "grey"]))
    if tie == "grey":
        img[..., 1] = img[..., 2] = img[..., 0]
    elif tie != "none":
        a, b = {"rg": (0, 1), "gb": (1, 2), "rb": (0, 2)}[tie]
        img[..., b] = img[..., a]
    return img


adjustments = st.tuples(st.one_of(st.none(), st.floats(0.0, 3.0)),
                        st.one_of(st.none(), st.floats(-400.0, 400.0)))


@given(img=images(), adjustment=adjustments)
def test_kernel_is_bit_identical_to_reference(img, adjustment):
    scale, shift = adjustment
    got = adjust_saturation_hue(img, scale, shift)
    expected = adjust_saturation_hue_reference(img.copy(), scale, shift)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_non_contiguous_and_float64_images():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (8, 10, 3)).astype(np.float32)
    view = img[::2, ::-1]  # not contiguous: the kernel gets a copy
    np.testing.assert_array_equal(adjust_saturation_hue(view, 1.3, 7.0),
                                  adjust_saturation_hue_reference(view.copy(), 1.3, 7.0))
    as64 = img.astype(np.float64)  # not float32: the reference itself
    np.testing.assert_array_equal(adjust_saturation_hue(as64, 0.7, None),
                                  adjust_saturation_hue_reference(as64, 0.7, None))


@pytest.mark.parametrize("seed", range(4))
def test_augmentation_equals_the_reference_path(seed, monkeypatch):
    """The whole SSD augmentation, kernel against reference, on a photo-like image."""
    from minissd.data import transforms

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:60, 0:80]
    image = np.stack([x * 3, y * 4, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)
    image[20:30, 10:40] = rng.integers(0, 256, (10, 30, 3))
    boxes = np.array([[5, 5, 40, 30], [30, 20, 75, 58]], np.float32)
    aug = SSDAugmentation(48)
    fast = aug(image, boxes, np.array([0, 1]), np.random.default_rng(seed))
    monkeypatch.setattr(transforms, "adjust_saturation_hue",
                        transforms.adjust_saturation_hue_reference)
    slow = aug(image, boxes, np.array([0, 1]), np.random.default_rng(seed))
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)
