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


def box_intersection(a, b) -> np.ndarray:
    """Area of ``a ∩ b`` for corner boxes ``a (..., 4)`` and ``b (..., 4)``, taken element by
    element after NumPy broadcasting: float64 ``(...)``, no input checks."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    # The intersection of two boxes is the box between the larger left/top edges and the
    # smaller right/bottom edges; it is empty when that box has a negative side.
    width = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
    height = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0)
    return width * height


def iou_elementwise(a, b) -> np.ndarray:
    """IoU of corner boxes ``a (..., 4)`` and ``b (..., 4)``, element by element after NumPy
    broadcasting: float64 ``(...)``, 0 where the union is empty; no input checks.

    This is minissd's one IoU formula: ``iou_reference`` (every pair), the NMS references,
    the crop sampler (``minissd.data.transforms.jaccard``) and the built-in dataset call it,
    and the Numba and CUDA kernels are tested against it.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    inter = box_intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    safe_union = np.where(union > 0, union, 1.0)
    return np.where(union > 0, inter / safe_union, 0.0)


def iou_reference(a, b) -> np.ndarray:
    """IoU (Jaccard overlap) of every pair of corner boxes, in float64, for reading.

    a: (N, 4) corners, b: (M, 4) corners -> (N, M) float64 NumPy array with
    ``out[i, j] = |a_i ∩ b_j| / |a_i ∪ b_j|``, 0 where the union is empty.
    """
    a = _check_boxes(np.asarray(a), "a")
    b = _check_boxes(np.asarray(b), "b")
    return iou_elementwise(a[:, None, :], b[None, :, :])  # (N, 1, 4) with (1, M, 4)


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
