"""Reading detections stored as one text file per image.

The format (used by ``voc2012-sample/detections`` and by rafaelpadilla's metrics toolbox):
a folder with one file ``<image_id>.txt`` per image, one detection per line::

    class_id score x1 y1 x2 y2

``class_id`` is the 0-based object class (the line number in a ``classes.txt``), ``score`` the
confidence, and ``x1 y1 x2 y2`` the corners in absolute pixels. Fields are separated by
whitespace; blank lines are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["load_detection_txt", "load_detection_txt_dir"]


def load_detection_txt(path):
    """One image's detections.

    Returns:
        ``(boxes, labels, scores)``: ``(K, 4)`` float64 corners, ``(K,)`` int64 class ids,
        ``(K,)`` float64 scores, in file order.
    """
    path = Path(path)
    boxes, labels, scores = [], [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise ValueError(
                f"{path}:{n}: expected 6 fields 'class_id score x1 y1 x2 y2', "
                f"got {len(fields)}: {line!r}"
            )
        try:
            labels.append(int(fields[0]))
            scores.append(float(fields[1]))
            boxes.append([float(v) for v in fields[2:]])
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: {exc}: {line!r}") from None
    return (
        np.array(boxes, dtype=np.float64).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
        np.array(scores, dtype=np.float64),
    )


def load_detection_txt_dir(directory, image_ids, missing: str = "empty"):
    """The detections of the images ``image_ids`` from ``directory/<image_id>.txt``.

    Args:
        directory: the folder of per-image files.
        image_ids: the ids to read, in the order wanted (the order of the ground truth).
        missing: ``"empty"`` (default): an image without a file has no detections (its ground
            truth then counts as missed); ``"error"``: raise ``FileNotFoundError``.

    Returns:
        ``(boxes, labels, scores)``, three lists with one array per image id, as taken by
        :func:`minissd.eval.eval_detection_voc`: ``(K_i, 4)`` float64, ``(K_i,)`` int64 and
        ``(K_i,)`` float64.
    """
    if missing not in ("empty", "error"):
        raise ValueError(f"missing must be 'empty' or 'error', got {missing!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no detection folder at {directory}")
    all_boxes, all_labels, all_scores = [], [], []
    for image_id in image_ids:
        path = directory / f"{image_id}.txt"
        if path.is_file():
            boxes, labels, scores = load_detection_txt(path)
        elif missing == "empty":
            boxes = np.zeros((0, 4))
            labels = np.zeros(0, dtype=np.int64)
            scores = np.zeros(0)
        else:
            raise FileNotFoundError(f"no detection file for image {image_id!r}: {path}")
        all_boxes.append(boxes)
        all_labels.append(labels)
        all_scores.append(scores)
    return all_boxes, all_labels, all_scores
