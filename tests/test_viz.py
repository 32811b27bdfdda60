"""Pictures: detections carry a legend (classes and the dashed ground truth) and tags that do
not cover each other."""

import numpy as np

from minissd.viz import _overlap_area, draw_detections, draw_priors


def _tags(fig):
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in ax.texts]


def test_legend_names_the_classes_and_the_ground_truth():
    image = np.zeros((100, 120, 3), np.uint8)
    boxes = np.array([[10, 10, 50, 50], [60, 20, 110, 90]], float)
    fig = draw_detections(image, boxes, [0, 2], [0.9, 0.5], ["cat", "dog", "cow"],
                          gt_boxes=boxes[:1])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["ground truth", "cat", "cow"]


def test_tags_of_a_busy_image_do_not_overlap():
    image = np.zeros((128, 128, 3), np.uint8)
    boxes = np.array([[20, 20, 80, 80]] * 4 + [[22, 22, 60, 60], [70, 10, 120, 50]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    fig = draw_detections(image, boxes, [0, 1, 2, 3, 0, 1], scores,
                          ["circle", "square", "triangle", "ring"])
    tags = _tags(fig)
    assert len(tags) == 6
    overlaps = [(i, j) for i in range(6) for j in range(i) if _overlap_area(tags[i], tags[j])]
    assert not overlaps
    # the best score keeps the preferred place: above the box's top-left corner
    best = next(t for t in fig.axes[0].texts if t.get_text() == "circle 0.90")
    assert best.get_position() == (20.0, 20.0) and best.get_verticalalignment() == "bottom"


def test_no_detections_draws_no_legend(tmp_path):
    path = draw_detections(np.zeros((50, 50, 3), np.uint8), np.zeros((0, 4)), [], [],
                           ["a"], tmp_path / "empty.png")
    assert path.exists()


def test_draw_priors_draws_the_boxes_of_the_chosen_cells():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minissd.priors import SSD300, make_priors

    ax = draw_priors(SSD300, 1, cells=[(0, 0), (9, 9)])
    assert len(ax.patches) == 2 * 6
    # cell (9, 9) of map 1 (19 x 19): its first box is the square s_1, centred on the cell
    first = SSD300.priors_per_map[0] + (9 * 19 + 9) * 6
    cx, cy, w, h = make_priors(SSD300, dtype=np.float64)[first] * 300
    x, y = ax.patches[6].get_xy()
    np.testing.assert_allclose([x, y, ax.patches[6].get_width()], [cx - w / 2, cy - h / 2, w])
    plt.close(ax.figure)
