"""Precision-recall curves of a :class:`~minissd.eval.voc.VOCEvalResult`, drawn with matplotlib.

The figure is built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, so no
pyplot window opens and the caller's pyplot backend is left alone.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from minissd.eval.report import _names
from minissd.eval.voc import VOC07_RECALL_LEVELS, VOCEvalResult
from minissd.fileio import atomic_write

__all__ = ["pr_curves_figure", "save_pr_curves"]


def pr_curves_figure(result: VOCEvalResult, class_names=None, ncols: int = 5):
    """A grid with one precision-recall panel per class.

    Each panel shows the raw curve (thin line, one point per detection in score order) and the
    interpolated precision used by the AP (thick line): the envelope for the VOC2010+ metric,
    and the 11 sampled levels as dots for the VOC2007 metric. The title gives the AP.

    Args:
        result: the evaluation.
        class_names: ``C`` names, or None for ``class 0``, ``class 1``, ...
        ncols: panels per row.

    Returns:
        A ``matplotlib.figure.Figure`` (Agg canvas).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = _names(result, class_names)
    n = max(result.n_classes, 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.9 * nrows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    for c in range(nrows * ncols):
        ax = axes[c // ncols][c % ncols]
        if c >= result.n_classes:
            ax.set_axis_off()
            continue
        ap = result.ap[c]
        recall, precision = result.recall[c], result.precision[c]
        if math.isnan(ap):
            ax.set_title(f"{names[c]}: no ground truth", fontsize=10)
        else:
            ax.set_title(f"{names[c]}: AP {100 * ap:.1f}", fontsize=10)
        if len(recall) and not math.isnan(ap):
            ax.plot(recall, precision, color="tab:blue", lw=0.8, label="raw")
            if result.use_07_metric:
                levels = np.array(VOC07_RECALL_LEVELS)  # the ones voc_ap averages
                best = [
                    precision[recall >= t].max() if np.any(recall >= t) else 0.0 for t in levels
                ]
                ax.plot(levels, best, "o", color="tab:red", ms=3, label="11 levels")
            else:
                mrec = np.concatenate(([0.0], recall, [1.0]))
                mpre = np.concatenate(([0.0], precision, [0.0]))
                mpre = np.maximum.accumulate(mpre[::-1])[::-1]
                ax.step(mrec, mpre, where="pre", color="tab:red", lw=1.6, label="envelope")
        elif not math.isnan(ap):
            ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.03, 1.05)
        if c == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left", fontsize=7)
        ax.grid(True, lw=0.4, alpha=0.6)
        if c % ncols == 0:
            ax.set_ylabel("precision")
        if c // ncols == nrows - 1 or c + ncols >= result.n_classes:
            ax.set_xlabel("recall")
            ax.tick_params(labelbottom=True)
    map_text = "n/a" if math.isnan(result.map) else f"{100 * result.map:.2f}"
    fig.suptitle(
        f"Precision-recall per class, IoU >= {result.iou_threshold:g}, "
        f"{result.metric_name} metric: mAP {map_text}",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def save_pr_curves(result: VOCEvalResult, path, class_names=None, ncols: int = 5) -> Path:
    """Draw :func:`pr_curves_figure` and save it as a PNG at ``path`` (temporary file + rename).

    Returns the path.
    """
    fig = pr_curves_figure(result, class_names, ncols)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))
