"""Box formats, area and IoU (formats and numeric rules: the ``minissd.boxes`` docstring)."""

from __future__ import annotations

import numpy as np

from minissd.backend import get_array_module, is_cupy_array

from ._checks import _check_boxes

# ----------------------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------------------


def corners_to_centre(boxes):
    """(..., 4) corners ``(x1, y1, x2, y2)`` -> (..., 4) centre form ``(cx, cy, w, h)``."""
    xp = get_array_module(boxes)
    boxes = xp.asarray(boxes)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = boxes[..., 2:] - boxes[..., :2]
    return xp.concatenate([centre, size], axis=-1)


def centre_to_corners(boxes):
    """(..., 4) centre form ``(cx, cy, w, h)`` -> (..., 4) corners ``(x1, y1, x2, y2)``."""
    xp = get_array_module(boxes)
    boxes = xp.asarray(boxes)
    half = boxes[..., 2:] / 2
    return xp.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def box_area(boxes):
    """(..., 4) corners -> (...) areas, with each side clamped at zero (inverted box -> 0)."""
    xp = get_array_module(boxes)
    boxes = xp.asarray(boxes)
    width = xp.maximum(boxes[..., 2] - boxes[..., 0], 0)
    height = xp.maximum(boxes[..., 3] - boxes[..., 1], 0)
    return width * height


# ----------------------------------------------------------------------------------------
# IoU
# ----------------------------------------------------------------------------------------


def iou_reference(a, b) -> np.ndarray:
    """IoU (Jaccard overlap) of every pair of corner boxes, in float64, for reading.

    a: (N, 4) corners, b: (M, 4) corners -> (N, M) float64 NumPy array with
    ``out[i, j] = |a_i ∩ b_j| / |a_i ∪ b_j|``, 0 where the union is empty.
    """
    a = _check_boxes(np.asarray(a), "a").astype(np.float64)
    b = _check_boxes(np.asarray(b), "b").astype(np.float64)
    area_a = box_area(a)[:, None]  # (N, 1)
    area_b = box_area(b)[None, :]  # (1, M)
    # The intersection of two boxes is the box between the larger left/top edges and the
    # smaller right/bottom edges; it is empty when that box has a negative side.
    ax1, ay1, ax2, ay2 = (a[:, None, c] for c in range(4))  # each (N, 1)
    bx1, by1, bx2, by2 = (b[None, :, c] for c in range(4))  # each (1, M)
    inter_w = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0.0)
    inter_h = np.maximum(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0.0)
    inter = inter_w * inter_h
    union = area_a + area_b - inter
    safe_union = np.where(union > 0, union, 1.0)
    return np.where(union > 0, inter / safe_union, 0.0)


def iou(a, b):
    """IoU of every pair of corner boxes: a (N, 4), b (M, 4) -> (N, M).

    NumPy input runs the Numba kernel (parallel over rows), CuPy input the CUDA kernel in
    ``kernels/iou.cu``. The result has the common float dtype of the inputs (float32 math
    for float32 boxes; integer boxes become float64). Empty inputs give (0, M) / (N, 0).
    """
    xp = get_array_module(a, b)
    a = _check_boxes(a, "a", xp)
    b = _check_boxes(b, "b", xp)
    dtype = xp.result_type(a.dtype, b.dtype)
    a = xp.ascontiguousarray(a, dtype=dtype)
    b = xp.ascontiguousarray(b, dtype=dtype)
    if is_cupy_array(a):
        from minissd.kernels import cuda

        return cuda.iou_matrix(a, b)
    out = np.empty((a.shape[0], b.shape[0]), dtype=dtype)
    if out.size == 0:
        return out
    from minissd.kernels import cpu  # imported here: importing minissd compiles nothing

    return cpu.iou(a, b, out)
