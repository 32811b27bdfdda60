"""Pictures people look at: boxes on images, loss curves.

Figures are drawn on their own Agg canvas (``matplotlib.figure.Figure``), never through pyplot,
so they work without a screen and leave the caller's pyplot backend alone (a notebook keeps its
inline figures). Every function saves a PNG and returns its path (or returns the figure).
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


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def draw_detections(image, boxes, labels, scores=None, class_names=None, path=None, title=None,
                    gt_boxes=None, score_threshold=0.0):
    """Draw corner boxes ``(D, 4)`` in pixels on an ``(H, W, 3)`` uint8 image; ground truth, when
    given, in dashed white. Returns the figure's path (or the figure when ``path`` is None)."""
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    image = np.asarray(image)
    h, w = image.shape[:2]
    fig = _figure((max(3.0, w / 100), max(3.0, h / 100)))
    ax = fig.add_subplot()
    ax.imshow(image)
    cmap = colormaps["tab20"]
    for b in [] if gt_boxes is None else np.asarray(gt_boxes):
        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False,
                                   edgecolor="white", linestyle="--", linewidth=1.2))
    for i, (b, lab) in enumerate(zip(np.asarray(boxes), np.asarray(labels))):
        s = None if scores is None else float(scores[i])
        if s is not None and s < score_threshold:
            continue
        colour = cmap(int(lab) % 20)
        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False,
                                   edgecolor=colour, linewidth=2))
        name = class_names[int(lab)] if class_names is not None else str(int(lab))
        text = name if s is None else f"{name} {s:.2f}"
        ax.text(b[0], b[1], text, fontsize=7, color="black", va="bottom",
                bbox=dict(facecolor=colour, alpha=0.8, pad=1, edgecolor="none"))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig if path is None else _save(fig, path)


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
