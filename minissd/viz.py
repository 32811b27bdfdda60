"""Pictures people look at: boxes on images, loss curves, default boxes.

Figures are drawn on their own Agg canvas (``matplotlib.figure.Figure``), never through pyplot,
so they work without a screen and leave the caller's pyplot backend alone (a notebook keeps its
inline figures). Every function saves a PNG and returns its path (or returns the figure), except
``draw_priors``, which draws into a matplotlib Axes for the chapters (a notebook's, or a new
pyplot figure) and returns it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(figsize, dpi=100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, **kw):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **kw)
    return path


#: Where a box's label tag may go, in order of preference: (corner x, corner y, horizontal and
#: vertical alignment). The first is above the top-left corner; the others inside the box's
#: corners and below it, for tags that would cover an earlier one.
TAG_PLACES = (("x1", "y1", "left", "bottom"), ("x1", "y1", "left", "top"),
              ("x2", "y1", "right", "top"), ("x1", "y2", "left", "bottom"),
              ("x2", "y2", "right", "bottom"), ("x1", "y2", "left", "top"),
              ("x2", "y1", "right", "bottom"))
TAG_PAD = 1.5  # display pixels around a tag's text that its coloured box covers
GROUND_TRUTH_STYLE = dict(edgecolor="white", linestyle="--", linewidth=1.2)


def draw_detections(image, boxes, labels, scores=None, class_names=None, path=None, title=None,
                    gt_boxes=None, score_threshold=0.0):
    """Draw corner boxes ``(D, 4)`` in pixels on an ``(H, W, 3)`` uint8 image, each with a tag
    "class score"; ground truth, when given, in dashed white. A legend under the image names
    the colours and the dashed boxes. Tags are placed highest score first, each where it covers
    no earlier tag (``TAG_PLACES``), so busy images stay readable. Returns the figure's path
    (or the figure when ``path`` is None)."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    image = np.asarray(image)
    h, w = image.shape[:2]
    fig = _figure((max(3.0, w / 100), max(3.0, h / 100)))
    ax = fig.add_subplot()
    ax.imshow(image)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    cmap = colormaps["tab20"]
    boxes, labels = np.asarray(boxes).reshape(-1, 4), np.asarray(labels).reshape(-1)
    order = (np.arange(len(boxes)) if scores is None
             else np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"))
    if scores is not None:
        order = [i for i in order if float(scores[i]) >= score_threshold]
    name_of = (lambda lab: class_names[lab]) if class_names is not None else str
    # the legend first: the layout it needs fixes the scale the tags are placed at
    legend = {}
    if gt_boxes is not None and len(gt_boxes):
        legend["ground truth"] = Line2D([], [], color="white", linestyle="--", linewidth=1.2)
    for lab in sorted({int(labels[i]) for i in order}):
        legend[name_of(lab)] = Patch(facecolor="none", edgecolor=cmap(lab % 20), linewidth=2)
    if legend:
        ax.legend(legend.values(), legend.keys(), loc="upper center", fontsize=7,
                  bbox_to_anchor=(0.5, 0.0), ncol=min(len(legend), 4), facecolor="0.55",
                  framealpha=1.0, labelcolor="white", handlelength=2.5)
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    for b in [] if gt_boxes is None else np.asarray(gt_boxes):
        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False,
                               **GROUND_TRUTH_STYLE))
    renderer = fig.canvas.get_renderer()
    placed = []  # the tags' extents in display pixels
    for i in order:
        b, lab = boxes[i], int(labels[i])
        colour = cmap(lab % 20)
        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False,
                               edgecolor=colour, linewidth=2))
        tag = name_of(lab) if scores is None else f"{name_of(lab)} {float(scores[i]):.2f}"
        text = ax.text(b[0], b[1], tag, fontsize=7, color="black",
                       bbox=dict(facecolor=colour, alpha=0.8, pad=1, edgecolor="none"))
        placed.append(_place_tag(text, b, placed, renderer))
    return fig if path is None else _save(fig, path, bbox_inches="tight")


def _place_tag(text, box, placed, renderer):
    """Move ``text`` to the first of ``TAG_PLACES`` where it overlaps none of ``placed`` (else
    to the place of least overlap); returns its extent."""
    corner = dict(zip(("x1", "y1", "x2", "y2"), box))
    best = None
    for cx, cy, ha, va in TAG_PLACES:
        text.set_position((corner[cx], corner[cy]))
        text.set_horizontalalignment(ha)
        text.set_verticalalignment(va)
        extent = text.get_window_extent(renderer).padded(TAG_PAD)
        overlap = sum(_overlap_area(extent, other) for other in placed)
        if best is None or overlap < best[0]:
            best = (overlap, (cx, cy, ha, va), extent)
        if overlap == 0:
            break
    cx, cy, ha, va = best[1]
    text.set_position((corner[cx], corner[cy]))
    text.set_horizontalalignment(ha)
    text.set_verticalalignment(va)
    return best[2]


def _overlap_area(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def plot_loss_curves(iterations, series: dict, path, title="training loss", smooth=0):
    """Plot named loss series against iterations (optionally a running mean over ``smooth``)."""
    fig = _figure((6, 4))
    ax = fig.add_subplot()
    it = np.asarray(iterations)
    for name, values in series.items():
        v = np.asarray(values, dtype=np.float64)
        if smooth and len(v) > smooth:
            kernel = np.ones(smooth) / smooth
            ax.plot(it[smooth - 1:], np.convolve(v, kernel, mode="valid"), label=name)
        else:
            ax.plot(it, v, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def draw_priors(config, map_index: int, cells=None, image=None, ax=None):
    """Draw the default boxes of one source map of a ``minissd.priors.PriorConfig`` (for
    teaching).

    cells: list of ``(i, j)`` cells whose boxes to draw (default: the centre cell);
    image: optional (H, W[, 3]) array shown underneath, in the config's pixel size;
    ax: the Axes to draw into (default: a new pyplot figure). Returns the Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .priors import make_priors

    height, width = config.image_hw
    f_h, f_w = config.map_sizes[map_index]
    cells = cells if cells is not None else [(f_h // 2, f_w // 2)]
    if ax is None:
        _, ax = plt.subplots()
    if image is not None:
        ax.imshow(image, extent=(0, width, height, 0))
    priors = make_priors(config, dtype=np.float64)
    first = sum(config.priors_per_map[:map_index])  # the map's first box in make_priors' list
    per_cell = config.boxes_per_location[map_index]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, j in cells:
        start = first + (i * f_w + j) * per_cell
        for b, (cx, cy, w, h) in enumerate(priors[start:start + per_cell]):
            ax.add_patch(Rectangle(((cx - w / 2) * width, (cy - h / 2) * height), w * width,
                                   h * height, fill=False, color=colours[b % len(colours)]))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_aspect("equal")
    ax.set_title(f"map {map_index}: {f_h}x{f_w} cells, {per_cell} boxes per cell")
    return ax
