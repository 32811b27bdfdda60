"""Box geometry for SSD: formats, IoU, encode/decode, matching and NMS.

Box formats (the one place they are defined)
--------------------------------------------
* **corners** ``(x1, y1, x2, y2)``: left, top, right, bottom. Ground truth, detections,
  IoU, NMS and the datasets use this form.
* **centre** ``(cx, cy, w, h)``: centre and size. Default boxes (priors) and the
  regression targets are built on this form.

``corners_to_centre`` and ``centre_to_corners`` convert between them. Arrays of boxes have
shape ``(..., 4)``. Inside training every coordinate is **normalised**: x divided by the
image width and y by the image height, so the image is the unit square ``[0, 1] x [0, 1]``.
Pixels appear only at the user-facing detection API (multiply by ``(W, H, W, H)``).
Coordinates are continuous: a box's width is ``x2 - x1`` (no "+1 pixel" convention).

Numerical rules shared by every implementation (NumPy reference, Numba, CUDA)
-----------------------------------------------------------------------------
* A box's extent is clamped at zero, ``w = max(x2 - x1, 0)``: a zero-area or inverted box
  has area 0 and IoU 0 with every box (never NaN).
* ``IoU(a, b) = inter / (area(a) + area(b) - inter)``, and 0 when that union is 0.
* NMS: boxes are ranked by descending score with a stable sort, so equal scores keep the
  lower index first. Walking down that ranking, a box is **suppressed when its IoU with an
  already kept box is strictly greater than** ``iou_threshold``; otherwise it is kept.
  The NMS kernels compute that IoU in float64 whatever the box dtype, so all three
  implementations make the same decisions.
* NaN or infinite coordinates (and scores) are rejected with a ``ValueError`` naming the
  argument; wrong shapes get a ``ValueError`` naming the argument and its shape.
* Encoding (``encode``, ``decode``, ``match``): ``variances`` are 4 finite numbers ``> 0``
  (all three take them as the argument ``variances``, by default the paper's
  ``minissd.priors.SSD_VARIANCES = (0.1, 0.1, 0.2, 0.2)``),
  priors have finite centres and a finite width and height ``> 0``, ``loc`` / ``matched`` have
  shape ``(..., P, 4)`` for ``P`` priors, and ``encode`` needs ground truths with ``x2 > x1``
  and ``y2 > y1`` (the ``log`` of their size). Anything else is a ``ValueError`` naming the
  argument, never an inf or NaN target. Each array costs one pass (``isfinite(x).all()``).

Functions take NumPy or CuPy arrays (``minissd.backend.get_array_module``) and return the
same kind. ``iou``, ``nms`` and ``batched_nms`` dispatch to the Numba CPU kernels
(``minissd.kernels.cpu``) or the CUDA kernels (``minissd.kernels.cuda``); the ``*_reference``
functions are the plain float64 definitions the kernels are tested against. Inside
``minissd.learner.use_learner_functions(...)``, ``match`` runs a learner's ``iou``, ``match`` and
``encode`` in place of ``iou``, ``match_overlaps`` and the encoder; the functions here never
change.

Where each part lives (``from minissd import boxes; boxes.iou(...)`` reaches all of them)
------------------------------------------------------------------------------------------
* ``geometry.py``: the formats, ``box_area``, ``box_intersection`` and IoU (``iou_elementwise``,
  the formula; ``iou_reference``, every pair; ``iou``, the kernels);
* ``coder.py``: ``encode`` / ``decode``, the SSD box parameterisation;
* ``matching.py``: ``match``, ground truth to priors as the authors' Caffe code does, and
  ``match_overlaps``, its assignment rule on an IoU matrix;
* ``non_maximum_suppression.py``: ``nms``, ``batched_nms`` and their references;
* ``_checks.py``: the input checks behind the errors above.
"""

from .coder import decode, encode
from .geometry import (
    box_area,
    box_intersection,
    centre_to_corners,
    corners_to_centre,
    iou,
    iou_elementwise,
    iou_reference,
)
from .matching import MatchResult, match, match_overlaps
from .non_maximum_suppression import (
    batched_nms,
    batched_nms_reference,
    best_per_label,
    nms,
    nms_reference,
)

__all__ = [
    "corners_to_centre", "centre_to_corners", "box_area", "box_intersection", "iou_elementwise",
    "iou_reference", "iou",
    "encode", "decode", "MatchResult", "match", "match_overlaps",
    "nms_reference", "batched_nms_reference", "nms", "batched_nms", "best_per_label",
]
