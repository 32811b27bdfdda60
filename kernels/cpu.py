"""Numba CPU kernels for the box hot paths: pairwise IoU and greedy NMS.

These are the fast twins of the float64 references in :mod:`minissd.boxes`
(``iou_reference``, ``nms_reference``); the tests hold them to the same answers. Callers
should use ``minissd.boxes.iou`` / ``nms`` / ``batched_nms``, which validate their inputs
and dispatch here for NumPy arrays; the kernels themselves assume clean, contiguous input.

Nothing here compiles at import: ``@njit`` compiles on the first call for each input type,
and ``cache=True`` stores the machine code under ``__pycache__`` so that later processes
only load it (see ``benchmarks/bench_boxes.py`` for both costs).

Numerics, shared with the references and the CUDA kernels:

* box extents are clamped at zero, ``w = max(x2 - x1, 0)``, so an empty or inverted box
  has area 0 and IoU 0 with everything;
* ``iou = inter / (area_a + area_b - inter)``, and 0 when the union is 0 (two empty boxes);
* ``error_model="numpy"``: a division never raises (the union-is-zero case is selected
  away), which also lets LLVM vectorise the inner loop. No ``fastmath``: the float64 results
  are bit-identical to the NumPy reference.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

#: Below this many box pairs, ``iou`` runs the kernel on one thread: waking the worker
#: threads costs more than it saves, and far more when other processes hold the cores.
PARALLEL_MIN_PAIRS = 1 << 20


def iou(a, b, out):
    """``iou_matrix`` on one thread for small problems, on all of Numba's threads else."""
    if out.size >= PARALLEL_MIN_PAIRS:
        return iou_matrix(a, b, out)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return iou_matrix(a, b, out)
    finally:
        numba.set_num_threads(previous)


@njit(parallel=True, cache=True, error_model="numpy")
def iou_matrix(a, b, out):
    """Fill ``out[i, j]`` with the IoU of corner boxes ``a[i]`` and ``b[j]``.

    a: (N, 4), b: (M, 4), out: (N, M), all of one float dtype, C-contiguous. The arithmetic
    runs in float64 for float32 boxes too (as in the NMS kernel), and the result is rounded
    once on the store: float32 math would lose all precision on boxes whose areas are
    subnormal (a width of 1e-45 gives IoU 0 instead of 0.5), and this way the float32 output
    is exactly the float64 reference rounded to float32. Rows are split over threads
    (``prange``); each output element is written once.
    """
    n = a.shape[0]
    m = b.shape[0]

    # Columns of b as contiguous float64 vectors, and their areas, computed once.
    bx1 = np.empty(m)
    by1 = np.empty(m)
    bx2 = np.empty(m)
    by2 = np.empty(m)
    area_b = np.empty(m)
    for j in range(m):
        bx1[j] = b[j, 0]
        by1[j] = b[j, 1]
        bx2[j] = b[j, 2]
        by2[j] = b[j, 3]
        area_b[j] = max(bx2[j] - bx1[j], 0.0) * max(by2[j] - by1[j], 0.0)

    for i in prange(n):
        ax1 = np.float64(a[i, 0])
        ay1 = np.float64(a[i, 1])
        ax2 = np.float64(a[i, 2])
        ay2 = np.float64(a[i, 3])
        area_a = max(ax2 - ax1, 0.0) * max(ay2 - ay1, 0.0)
        for j in range(m):
            inter_w = max(min(ax2, bx2[j]) - max(ax1, bx1[j]), 0.0)
            inter_h = max(min(ay2, by2[j]) - max(ay1, by1[j]), 0.0)
            inter = inter_w * inter_h
            union = area_a + area_b[j] - inter
            out[i, j] = inter / union if union > 0.0 else 0.0
    return out


@njit(cache=True, error_model="numpy")
def nms_sorted_segments(boxes, segment_starts, iou_threshold, max_keep_per_segment):
    """Greedy NMS over boxes already sorted by descending score, one segment at a time.

    boxes: (K, 4) float64 corners, sorted so that within each segment the best-scored box
    comes first (ties: lower original index first). segment_starts: (S + 1,) int64 offsets;
    segment s is ``boxes[segment_starts[s]:segment_starts[s + 1]]`` (one class for
    ``batched_nms``, a single segment for ``nms``). Boxes in different segments never
    suppress each other.

    Returns keep: (K,) bool, True for every box that survives. Rule: walking in score
    order, a box is kept unless its IoU with an already kept box of its segment is
    strictly greater than ``iou_threshold``. At most ``max_keep_per_segment`` boxes are
    kept per segment (-1: no limit); stopping early gives the same prefix as running on.

    Speed (about 5x torchvision's CPU loop on clustered boxes): the boxes still alive are
    kept packed at the front of column arrays. For each kept box, pass 1 computes the
    suppression flag of every alive box without branches (LLVM vectorises it), and pass 2
    packs the survivors to the front, so later passes only visit unsuppressed boxes.
    """
    num_boxes = boxes.shape[0]
    keep = np.zeros(num_boxes, dtype=np.bool_)
    # Scratch columns for the boxes still alive, and each one's row in `boxes`.
    x1 = np.empty(num_boxes)
    y1 = np.empty(num_boxes)
    x2 = np.empty(num_boxes)
    y2 = np.empty(num_boxes)
    area = np.empty(num_boxes)
    row = np.empty(num_boxes, dtype=np.int64)
    suppressed = np.empty(num_boxes, dtype=np.bool_)

    for s in range(segment_starts.shape[0] - 1):
        start = segment_starts[s]
        num_alive = segment_starts[s + 1] - start
        for r in range(num_alive):
            x1[r] = boxes[start + r, 0]
            y1[r] = boxes[start + r, 1]
            x2[r] = boxes[start + r, 2]
            y2[r] = boxes[start + r, 3]
            area[r] = max(x2[r] - x1[r], 0.0) * max(y2[r] - y1[r], 0.0)
            row[r] = start + r

        num_kept = 0
        while num_alive > 0 and (max_keep_per_segment < 0 or num_kept < max_keep_per_segment):
            # The best box still alive is kept ...
            keep[row[0]] = True
            num_kept += 1
            kx1, ky1, kx2, ky2, k_area = x1[0], y1[0], x2[0], y2[0], area[0]
            # ... pass 1: which of the others does it suppress?
            for r in range(1, num_alive):
                inter_w = max(min(kx2, x2[r]) - max(kx1, x1[r]), 0.0)
                inter_h = max(min(ky2, y2[r]) - max(ky1, y1[r]), 0.0)
                inter = inter_w * inter_h
                union = k_area + area[r] - inter
                iou = inter / union if union > 0.0 else 0.0
                suppressed[r] = iou > iou_threshold
            # ... pass 2: pack the survivors to the front, keeping their order.
            num_survivors = 0
            for r in range(1, num_alive):
                if not suppressed[r]:
                    x1[num_survivors] = x1[r]
                    y1[num_survivors] = y1[r]
                    x2[num_survivors] = x2[r]
                    y2[num_survivors] = y2[r]
                    area[num_survivors] = area[r]
                    row[num_survivors] = row[r]
                    num_survivors += 1
            num_alive = num_survivors
    return keep
