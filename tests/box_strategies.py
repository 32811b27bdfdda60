"""Hypothesis strategies for corner boxes, shared by tests/boxes and tests/kernels
(importable as ``box_strategies``: pyproject.toml puts tests/ on the path).

Boxes are drawn on a coarse integer grid, so that identical, nested, touching (shared
edge), disjoint, zero-area and inverted boxes all turn up often, and then scaled by a
factor from tiny to huge; or drawn as free floats.
"""

import numpy as np
from hypothesis import strategies as st

SCALES = (1e-6, 1e-3, 1.0, 1e3, 1e6)
GRID = 6  # corner coordinates on the grid 0..GRID


@st.composite
def box_arrays(draw, min_n=0, max_n=10, dtype=np.float64, allow_inverted=True):
    """(n, 4) corner boxes of ``dtype``."""
    n = draw(st.integers(min_n, max_n))
    if draw(st.booleans()):  # grid boxes: many ties and degenerate cases
        low = -2 if allow_inverted else 0
        corner = st.tuples(st.integers(0, GRID), st.integers(0, GRID))
        size = st.tuples(st.integers(low, 4), st.integers(low, 4))
        xy = draw(st.lists(corner, min_size=n, max_size=n))
        wh = draw(st.lists(size, min_size=n, max_size=n))
        boxes = np.array([[x, y, x + w, y + h] for (x, y), (w, h) in zip(xy, wh)], dtype=np.float64)
        boxes = boxes.reshape(n, 4) * draw(st.sampled_from(SCALES))
    else:  # free floats
        c = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
        s = st.floats(0, 5e2, allow_nan=False, allow_infinity=False)
        rows = draw(st.lists(st.tuples(c, c, s, s), min_size=n, max_size=n))
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in rows], dtype=np.float64)
        boxes = boxes.reshape(n, 4)
    return boxes.astype(dtype)


@st.composite
def scored_boxes(draw, min_n=0, max_n=12, dtype=np.float64):
    """(boxes (n, 4), scores (n,)): scores from a small set, so ties are common."""
    boxes = draw(box_arrays(min_n=min_n, max_n=max_n, dtype=dtype))
    n = boxes.shape[0]
    if draw(st.booleans()):
        scores = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=n, max_size=n))
    else:
        scores = draw(st.lists(st.floats(0, 1, width=32), min_size=n, max_size=n))
    return boxes, np.array(scores, dtype=dtype)


@st.composite
def thresholds(draw, boxes):
    """An IoU threshold; often exactly one of the IoUs among ``boxes`` (the '>' boundary)."""
    from minissd.boxes import iou_reference

    if boxes.shape[0] and draw(st.booleans()):
        values = iou_reference(boxes, boxes).ravel()
        return float(draw(st.sampled_from(sorted(set(values.tolist())))))
    return draw(st.sampled_from([0.0, 0.3, 0.45, 0.5, 0.7, 1.0]))
