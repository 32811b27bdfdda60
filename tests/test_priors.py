"""Default boxes: counts, exact first/last boxes against the Caffe formulas, presets,
non-square images (torchvision PR 6551), and equality with torchvision's generator."""

import math

import numpy as np
import pytest

from minissd import priors as P
from minissd.boxes import centre_to_corners


def test_counts():
    assert P.make_priors(P.SSD300).shape == (8732, 4)
    assert P.make_priors(P.SSD512).shape == (24564, 4)
    assert P.make_priors(P.TORCHVISION_SSD300).shape == (8732, 4)
    assert P.make_priors(P.SMALL).shape == (P.SMALL.num_priors, 4) == (6132, 4)
    assert P.SSD300.boxes_per_location == [4, 6, 6, 6, 4, 4]
    assert P.SSD512.boxes_per_location == [4, 6, 6, 6, 6, 4, 4]


def test_caffe_sizes_reproduce_the_published_numbers():
    assert P.SSD300.min_sizes == (30, 60, 111, 162, 213, 264)
    assert P.SSD300.max_sizes == (60, 111, 162, 213, 264, 315)
    np.testing.assert_allclose(P.SSD512.min_sizes, (35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8))
    np.testing.assert_allclose(P.SSD512.max_sizes, (76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6))


def test_dtype_and_device_options():
    assert P.make_priors(P.SMALL).dtype == np.float32
    p64 = P.make_priors(P.SMALL, dtype=np.float64)
    assert p64.dtype == np.float64
    np.testing.assert_array_equal(P.make_priors(P.SMALL), p64.astype(np.float32))


def test_first_ssd300_location_by_hand():
    """Cell (0, 0) of conv4_3: centre 0.5 * 8 / 300, min 30, max 60, ratio 2 (Caffe PriorBox)."""
    priors = P.make_priors(P.SSD300, dtype=np.float64)
    c = 0.5 * 8 / 300
    r2 = math.sqrt(2)
    expected = [
        [c, c, 30 / 300, 30 / 300],  # min-size square
        [c, c, math.sqrt(30 * 60) / 300, math.sqrt(30 * 60) / 300],  # sqrt(min * max)
        [c, c, 30 * r2 / 300, 30 / r2 / 300],  # ratio 2
        [c, c, 30 / r2 / 300, 30 * r2 / 300],  # ratio 1/2
    ]
    np.testing.assert_allclose(priors[:4], expected, rtol=1e-15)
    # next location along x (j = 1), same row
    np.testing.assert_allclose(priors[4, :2], [1.5 * 8 / 300, c], rtol=1e-15)
    # first box of the second row (i = 1) comes after 38 cells
    np.testing.assert_allclose(priors[38 * 4, :2], [c, 1.5 * 8 / 300], rtol=1e-15)


def test_first_fc7_location_and_last_box_by_hand():
    priors = P.make_priors(P.SSD300, dtype=np.float64)
    start = 38 * 38 * 4  # fc7 begins
    c = 0.5 * 16 / 300
    r3 = math.sqrt(3)
    np.testing.assert_allclose(priors[start + 4], [c, c, 60 * r3 / 300, 60 / r3 / 300], rtol=1e-15)
    np.testing.assert_allclose(priors[start + 5], [c, c, 60 / r3 / 300, 60 * r3 / 300], rtol=1e-15)
    # the 1x1 map: centre 0.5, min 264, max 315, ratio 2
    last = priors[-4:]
    np.testing.assert_allclose(last[:, :2], 0.5)
    np.testing.assert_allclose(last[1, 2], math.sqrt(264 * 315) / 300, rtol=1e-15)
    np.testing.assert_allclose(last[3, 2:], [264 / math.sqrt(2) / 300, 264 * math.sqrt(2) / 300])


def test_ssd512_first_box():
    priors = P.make_priors(P.SSD512, dtype=np.float64)
    c = 0.5 * 8 / 512
    np.testing.assert_allclose(priors[0], [c, c, 35.84 / 512, 35.84 / 512], rtol=1e-15)
    np.testing.assert_allclose(priors[1, 2], math.sqrt(35.84 * 76.8) / 512, rtol=1e-15)


def test_unclipped_presets_and_clip_modes():
    ssd300 = P.make_priors(P.SSD300, dtype=np.float64)
    assert ssd300[:, 2:].max() > 1  # Caffe clip: false keeps the big boxes (sqrt(264*315)*sqrt2)
    cfg = P.PriorConfig(image_size=300, feature_maps=(10,), steps=(32,), min_sizes=(250,),
                        max_sizes=(400,), aspect_ratios=((2,),))
    raw = P.make_priors(cfg, dtype=np.float64)
    assert raw[:, 0].max() > 1  # 9.5 * 32 / 300: a centre beyond the image
    wh = P.make_priors(P.PriorConfig(**{**cfg.__dict__, "clip": "wh"}), dtype=np.float64)
    np.testing.assert_array_equal(wh[:, :2], raw[:, :2])
    np.testing.assert_array_equal(wh[:, 2:], np.clip(raw[:, 2:], 0, 1))
    all4 = P.make_priors(P.PriorConfig(**{**cfg.__dict__, "clip": "cxcywh"}), dtype=np.float64)
    np.testing.assert_array_equal(all4, np.clip(raw, 0, 1))


def test_non_square_image_gives_correct_widths_heights_and_centres():
    """Regression for torchvision PR 6551 (x and y swapped on non-square inputs)."""
    height, width = 300, 600
    cfg = P.PriorConfig(image_size=(height, width), feature_maps=((10, 20), (5, 10)),
                        min_sizes=(60, 120), max_sizes=(120, 200),
                        aspect_ratios=((2,), (2, 3)))
    priors = P.make_priors(cfg, dtype=np.float64)
    assert priors.shape == (10 * 20 * 4 + 5 * 10 * 6, 4)
    first_map = priors[: 10 * 20 * 4].reshape(10, 20, 4, 4)
    # centres: x over the 20 columns spans the width, y over the 10 rows the height
    np.testing.assert_allclose(first_map[0, :, 0, 0], (np.arange(20) + 0.5) / 20)
    np.testing.assert_allclose(first_map[:, 0, 0, 1], (np.arange(10) + 0.5) / 10)
    # a min-size "square" is square in pixels: w * W == h * H == 60
    np.testing.assert_allclose(first_map[0, 0, 0, 2] * width, 60)
    np.testing.assert_allclose(first_map[0, 0, 0, 3] * height, 60)
    # the ratio-2 box is twice as wide as tall, in pixels
    w_px, h_px = first_map[0, 0, 2, 2] * width, first_map[0, 0, 2, 3] * height
    np.testing.assert_allclose(w_px / h_px, 2.0)
    # with torchvision-style scales, sizes are fractions of each side
    tv = P.PriorConfig(image_size=(height, width), feature_maps=((10, 20),), steps=((30, 30),),
                       scales=(0.2, 0.4), aspect_ratios=((2,),))
    p = P.make_priors(tv, dtype=np.float64)
    np.testing.assert_allclose(p[0, 2:], [0.2, 0.2])
    np.testing.assert_allclose(p[:20 * 4:4, 0], (np.arange(20) + 0.5) * 30 / width)
    np.testing.assert_allclose(p[::20 * 4, 1], (np.arange(10) + 0.5) * 30 / height)


def test_config_errors():
    base = dict(image_size=300, feature_maps=(38, 19), aspect_ratios=((2,), (2, 3)),
                min_sizes=(30, 60), max_sizes=(60, 111))
    P.PriorConfig(**base)
    with pytest.raises(ValueError, match="aspect_ratios has 1 entries"):
        P.PriorConfig(**{**base, "aspect_ratios": ((2,),)})
    with pytest.raises(ValueError, match="steps has 1 entries"):
        P.PriorConfig(**{**base, "steps": (8,)})
    with pytest.raises(ValueError, match="min_sizes and max_sizes need 2"):
        P.PriorConfig(**{**base, "max_sizes": (60,)})
    with pytest.raises(ValueError, match="either min_sizes/max_sizes or scales"):
        P.PriorConfig(**{**base, "scales": (0.1, 0.2, 0.3)})
    with pytest.raises(ValueError, match="scales needs 3 entries"):
        P.PriorConfig(**{**base, "min_sizes": None, "max_sizes": None, "scales": (0.1, 0.2)})
    with pytest.raises(ValueError, match="clip must be one of"):
        P.PriorConfig(**{**base, "clip": "yes"})
    with pytest.raises(ValueError, match="an \\(H, W\\) pair"):
        P.make_priors(P.PriorConfig(**{**base, "image_size": (1, 2, 3)}))


def _torchvision_generator(config):
    tv_anchor_utils = pytest.importorskip(
        "torchvision.models.detection.anchor_utils",
        reason="torchvision is not installed (it is not in the test venv; see benchmarks/)",
    )
    return tv_anchor_utils.DefaultBoxGenerator(
        [list(r) for r in config.aspect_ratios], scales=list(config.scales),
        steps=list(config.steps), clip=config.clip == "wh",
    )


def test_torchvision_preset_equals_default_box_generator():
    generator = _torchvision_generator(P.TORCHVISION_SSD300)
    import torch
    from torchvision.models.detection.image_list import ImageList

    config = P.TORCHVISION_SSD300
    ours = P.make_priors(config)
    grid = [[f, f] for f in config.feature_maps]
    theirs = generator._grid_default_boxes(grid, [300, 300]).numpy()  # centre form, clipped
    np.testing.assert_array_equal(ours, theirs)
    # and the public forward: pixel corners
    images = ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)])
    maps = [torch.zeros(1, 1, f, f) for f in config.feature_maps]
    corners = generator(images, maps)[0].numpy()
    np.testing.assert_array_equal(centre_to_corners(ours) * np.float32(300), corners)


def test_torchvision_generator_on_a_non_square_image():
    base = P.TORCHVISION_SSD300
    generator = _torchvision_generator(base)
    height, width = 300, 500
    maps = ((38, 63), (19, 32), (10, 16), (5, 8), (3, 5), (1, 2))
    config = P.PriorConfig(image_size=(height, width), feature_maps=maps, steps=base.steps,
                           scales=base.scales, aspect_ratios=base.aspect_ratios, clip="wh")
    theirs = generator._grid_default_boxes([list(f) for f in maps], [height, width]).numpy()
    # torchvision divides in float32, we in float64: equal to within one float32 ulp
    np.testing.assert_allclose(P.make_priors(config), theirs, rtol=0, atol=1.2e-7)


def test_map_sizes_and_priors_per_map():
    assert P.SSD300.map_sizes[:2] == [(38, 38), (19, 19)]
    assert P.SSD300.priors_per_map == [5776, 2166, 600, 150, 36, 4]
    assert sum(P.SSD300.priors_per_map) == P.SSD300.num_priors == 8732
    config = P.PriorConfig(image_size=(30, 50), feature_maps=((3, 5), 1), min_sizes=(10, 20),
                           max_sizes=(20, 30), aspect_ratios=((2,), ()))
    assert config.map_sizes == [(3, 5), (1, 1)] and config.priors_per_map == [60, 2]


@pytest.mark.parametrize("size, maps", [(128, (32, 16, 8, 4, 2, 1)), (192, (48, 24, 12, 6, 3, 2)),
                                        (256, (64, 32, 16, 8, 4, 2))])
def test_small_priors_follow_the_small_network(size, maps):
    """Maps at strides 4, 8, then ceil-halving (the small model's stride-2 extras); steps tile
    the image; sizes scale with the image; the first boxes shrink with ``first_min_ratio``."""
    cfg = P.small_priors(size)
    assert cfg.feature_maps == maps
    assert all(s * m == size for s, m in zip(cfg.steps, maps))
    assert cfg.min_sizes[0] == pytest.approx(0.10 * size)
    assert P.make_priors(cfg).shape == (cfg.num_priors, 4)
    small_first = P.small_priors(size, first_min_ratio=5, first_max_ratio=10)
    assert small_first.min_sizes[0] == pytest.approx(0.05 * size)
    assert small_first.min_sizes[1:] == cfg.min_sizes[1:]


@pytest.mark.parametrize("size", [100, 96, 300])
def test_small_priors_reject_sizes_the_network_cannot_tile(size):
    with pytest.raises(ValueError, match="image_size"):
        P.small_priors(size)
