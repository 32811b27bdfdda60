"""Reporting a :class:`~minissd.eval.voc.VOCEvalResult`: a text table and a JSON file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from minissd.eval.voc import VOCEvalResult
from minissd.fileio import atomic_write_text

__all__ = ["format_ap_table", "result_to_dict", "write_json"]


def _names(result: VOCEvalResult, class_names) -> list[str]:
    if class_names is None:
        return [f"class {c}" for c in range(result.n_classes)]
    class_names = list(class_names)
    if len(class_names) != result.n_classes:
        raise ValueError(
            f"class_names must name the {result.n_classes} classes of the result, "
            f"got {len(class_names)} names"
        )
    return class_names


def format_ap_table(result: VOCEvalResult, class_names=None) -> str:
    """Per-class AP (in %) and mAP as a plain-text table.

    Args:
        result: the evaluation.
        class_names: ``C`` names, or None for ``class 0``, ``class 1``, ...

    Returns:
        A multi-line string: a header naming the metric, one row per class with its AP, its
        number of non-difficult ground-truth boxes (``gt``) and of detections (``det``), and a
        last ``mAP`` row. A class without ground truth shows ``n/a`` and is left out of the mAP.
    """
    names = _names(result, class_names)
    width = max([len(n) for n in names] + [len("class")])
    lines = [
        f"VOC AP, IoU >= {result.iou_threshold:g}, {result.metric_name} metric"
        + ("" if result.plus_one else ", continuous pixels (no +1)"),
        f"{'class':<{width}}  {'AP (%)':>7}  {'gt':>6}  {'det':>6}",
    ]
    for name, ap, n_pos, n_det in zip(
        names, result.ap, result.n_positives, result.n_detections, strict=True
    ):
        ap_text = "n/a" if math.isnan(ap) else f"{100 * ap:.2f}"
        lines.append(f"{name:<{width}}  {ap_text:>7}  {n_pos:>6d}  {n_det:>6d}")
    n_valid = int(np.sum(~np.isnan(result.ap)))
    map_text = "n/a" if math.isnan(result.map) else f"{100 * result.map:.2f}"
    lines.append(f"{'mAP':<{width}}  {map_text:>7}  over {n_valid} of {result.n_classes} classes")
    return "\n".join(lines)


def _float_or_none(x: float):
    x = float(x)
    return None if math.isnan(x) else x


def result_to_dict(result: VOCEvalResult, class_names=None, include_curves: bool = True) -> dict:
    """The result as plain JSON-ready Python (NaN becomes None, i.e. JSON ``null``).

    Returns:
        ``{"metric", "iou_threshold", "use_07_metric", "plus_one", "map", "classes"}`` where
        ``classes`` is a list of ``{"id", "name", "ap", "n_positives", "n_detections"}``, plus
        ``"precision"``, ``"recall"``, ``"scores"`` lists when ``include_curves``.
    """
    names = _names(result, class_names)
    classes = []
    for c in range(result.n_classes):
        entry = {
            "id": c,
            "name": names[c],
            "ap": _float_or_none(result.ap[c]),
            "n_positives": int(result.n_positives[c]),
            "n_detections": int(result.n_detections[c]),
        }
        if include_curves:
            entry["precision"] = [float(p) for p in result.precision[c]]
            entry["recall"] = [_float_or_none(r) for r in result.recall[c]]
            entry["scores"] = [float(s) for s in result.scores[c]]
        classes.append(entry)
    return {
        "metric": result.metric_name,
        "iou_threshold": result.iou_threshold,
        "use_07_metric": result.use_07_metric,
        "plus_one": result.plus_one,
        "map": _float_or_none(result.map),
        "classes": classes,
    }


def write_json(result: VOCEvalResult, path, class_names=None, include_curves: bool = True) -> Path:
    """Write :func:`result_to_dict` as JSON to ``path``, atomically (temporary file + rename).

    The file is strict JSON (no ``NaN`` literals: undefined values are ``null``). Returns the path.
    """
    text = json.dumps(
        result_to_dict(result, class_names, include_curves), indent=1, allow_nan=False
    )
    return atomic_write_text(path, text + "\n")
