"""Input checks of ``minissd.boxes``: a clear ``ValueError`` or ``TypeError`` naming the argument
(the rules are in the ``minissd.boxes`` docstring)."""

from __future__ import annotations

import numpy as np

from minissd.backend import get_array_module, to_numpy


def _as_float_array(x, name: str, xp):
    x = xp.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.dtype.kind != "f":
        x = x.astype(xp.float64)
    elif x.dtype.itemsize < 4:  # float16 -> float32: the kernels handle float32/float64
        x = x.astype(xp.float32)
    return x


def _check_finite(x, name: str, xp) -> None:
    if x.size and not bool(xp.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; every value must be finite")


def _check_boxes(boxes, name: str, xp=None):
    """``boxes`` as a finite float array of shape (N, 4), or a clear error naming ``name``."""
    xp = xp or get_array_module(boxes)
    boxes = _as_float_array(boxes, name, xp)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got shape {tuple(boxes.shape)}")
    _check_finite(boxes, name, xp)
    return boxes


def _check_scores(scores, num_boxes: int, name: str, xp):
    scores = _as_float_array(scores, name, xp)
    if scores.shape != (num_boxes,):
        raise ValueError(
            f"{name} must have shape ({num_boxes},) to match boxes, got shape {tuple(scores.shape)}"
        )
    _check_finite(scores, name, xp)
    return scores


def _check_labels(labels, num_boxes: int, name: str, xp):
    labels = xp.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integers, got dtype {labels.dtype}")
    if labels.shape != (num_boxes,):
        raise ValueError(
            f"{name} must have shape ({num_boxes},) to match boxes, got shape {tuple(labels.shape)}"
        )
    return labels.astype(xp.int64)


def _check_threshold(iou_threshold: float) -> float:
    iou_threshold = float(iou_threshold)
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
    return iou_threshold


#: One variance per encoded coordinate: ``(cx, cy, w, h)``.
NUM_VARIANCES = 4


def _check_variances(variances) -> tuple:
    """``variances`` as 4 finite Python floats ``> 0``, or a ``ValueError`` naming it."""
    v = to_numpy(variances)
    if v.dtype.kind not in "fiu":
        raise TypeError(f"variances must hold real numbers, got dtype {v.dtype}")
    if v.shape != (NUM_VARIANCES,):
        raise ValueError(f"variances must be {NUM_VARIANCES} numbers (for cx, cy, w, h), got "
                         f"shape {v.shape}: {variances!r}")
    if not (np.isfinite(v).all() and (v > 0).all()):
        raise ValueError(f"variances must be finite and > 0 (they divide the offsets), got "
                         f"{v.tolist()}")
    return tuple(float(x) for x in v)


def _check_priors(priors, xp):
    """``priors`` as a float array (P, 4) in centre form with finite values and sizes ``> 0``."""
    priors = _as_float_array(priors, "priors", xp)
    if priors.ndim != 2 or priors.shape[1] != 4:
        raise ValueError(f"priors must have shape (P, 4) (centre form cx, cy, w, h), got shape "
                         f"{tuple(priors.shape)}")
    # One reduction (one device sync on CuPy) in the common case; the details only on failure.
    if priors.size and not bool(xp.isfinite(priors).all() & (priors[:, 2:] > 0).all()):
        _check_finite(priors, "priors", xp)
        row = int(xp.argmax((priors[:, 2:] <= 0).any(axis=1)))
        raise ValueError(f"priors must have width and height > 0 (centre form cx, cy, w, h); "
                         f"prior {row} is {to_numpy(priors[row]).tolist()}")
    return priors


def _check_offsets(x, num_priors: int, name: str, xp):
    """``x`` as a finite float array of shape (..., P, 4) for ``P = num_priors``."""
    x = _as_float_array(x, name, xp)
    if x.ndim < 2 or tuple(x.shape[-2:]) != (num_priors, 4):
        raise ValueError(f"{name} must have shape (..., P, 4) with P = {num_priors} priors, got "
                         f"shape {tuple(x.shape)}")
    _check_finite(x, name, xp)
    return x


def _check_count(value, name: str):
    if value is None:
        return None
    if int(value) != value or value < 0:
        raise ValueError(f"{name} must be None or a non-negative integer, got {value!r}")
    return int(value)
