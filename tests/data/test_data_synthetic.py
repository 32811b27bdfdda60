"""The built-in synthetic shapes dataset: determinism, exact boxes, VOC round trip."""

import numpy as np
import pytest

from minissd.data import VOCDataset
from minissd.data.synthetic import (
    SYNTHETIC_CLASSES,
    SyntheticConfig,
    _background,
    draw_scene,
    make_synthetic_voc,
)


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    make_synthetic_voc(tmp_path / "a", 6, 3, image_size=64, seed=7)
    make_synthetic_voc(tmp_path / "b", 6, 3, image_size=64, seed=7)
    make_synthetic_voc(tmp_path / "c", 6, 3, image_size=64, seed=8)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert len(a) == 9 * 2 + 3 and a == b
    assert a.keys() == c.keys() and a != c


def test_round_trip_through_the_voc_reader(tmp_path):
    names = make_synthetic_voc(tmp_path, 40, 10, image_size=96, seed=0, num_val=5)
    assert names == SYNTHETIC_CLASSES and len(names) == 5
    train = VOCDataset(tmp_path, "train", class_names=names)
    val = VOCDataset(tmp_path, "val", class_names=names)
    test = VOCDataset(tmp_path, "test", class_names=names)
    trainval = VOCDataset(tmp_path, "trainval", class_names=names)
    assert (len(train), len(val), len(test)) == (40, 5, 10)
    assert trainval.ids == train.ids + val.ids and not set(train.ids) & set(test.ids)
    anns = [train.annotation(i) for i in range(len(train))]
    counts = [len(a.boxes) for a in anns]
    assert min(counts) >= 1 and max(counts) <= 4
    labels = np.concatenate([a.labels for a in anns])
    assert set(labels.tolist()) == set(range(5))
    boxes = np.concatenate([a.boxes for a in anns])
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) / 96
    assert sides.min() >= 0.10 and sides.max() <= 0.72
    assert (boxes >= 0).all() and (boxes <= 96).all() and (boxes == np.rint(boxes)).all()
    assert train.report.total() == 0 and not any(a.difficult.any() for a in anns)
    sample = train[0]
    assert sample.image.shape == (96, 96, 3) and sample.image.dtype == np.uint8


@pytest.mark.parametrize("seed", range(12))
def test_boxes_are_tight_around_the_drawn_shape(seed):
    """With noise and clutter off, the changed pixels span exactly the box."""
    cfg = SyntheticConfig(max_objects=1, noise_std=0.0, max_distractors=0)
    background = np.asarray(_background(64, np.random.default_rng(seed), cfg))
    image, boxes, labels = draw_scene(64, np.random.default_rng(seed), cfg)
    assert boxes.shape == (1, 4) and labels.shape == (1,)
    changed = np.argwhere((image != background).any(axis=2))
    (y1, x1), (y2, x2) = changed.min(axis=0), changed.max(axis=0) + 1
    assert [x1, y1, x2, y2] == boxes[0].tolist(), SYNTHETIC_CLASSES[labels[0]]


def test_overlap_limits_hold():
    cfg = SyntheticConfig()
    rng = np.random.default_rng(0)
    for _ in range(100):
        _, boxes, _ = draw_scene(64, rng, cfg)
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
                iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
                area_a = (a[2] - a[0]) * (a[3] - a[1])
                area_b = (b[2] - b[0]) * (b[3] - b[1])
                assert ix * iy / (area_a + area_b - ix * iy) <= cfg.max_overlap_iou
                assert ix * iy / area_a <= cfg.max_occlusion  # earlier box i, covered by j


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="num_test"):
        make_synthetic_voc(tmp_path, 3, 0)
    with pytest.raises(ValueError, match="num_train: expected an int >= 0"):
        make_synthetic_voc(tmp_path, -1, 3)
    with pytest.raises(ValueError, match="image_size"):
        make_synthetic_voc(tmp_path, 3, 3, image_size=8)
    with pytest.raises(ValueError, match="unknown shape"):
        from minissd.data.synthetic import _draw_shape

        _draw_shape(
            None, "hexagon", (0, 0, 4, 4), (0, 0, 0), np.random.default_rng(0), SyntheticConfig()
        )
