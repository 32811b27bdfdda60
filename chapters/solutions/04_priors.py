"""Worked solutions for chapter 04 (default boxes).

Each function has the name of an exercise in ``chapters/04_priors.ipynb``; the chapter test
replaces the exercise cell with this source, so a function may use only what the notebook has
imported before it (``np``, ``math``).
"""

import math

import numpy as np


def map_priors(f, image_size, step, min_size, max_size, aspect_ratios):
    """The default boxes of one square f x f source map, in the Caffe order.

    f: cells per side; image_size: pixels per side; step: pixels between cell centres;
    min_size, max_size: s_k and s_{k+1} in pixels; aspect_ratios: the ratios other than 1.
    Returns (f*f*B, 4) normalised centre-form boxes (cx, cy, w, h), B = 2 + 2*len(aspect_ratios),
    cells row by row (i = y outer, j = x inner), and within a cell: the s_k square, the
    sqrt(s_k * s_{k+1}) square, then (r, 1/r) for each ratio r.
    """
    sizes = [(min_size, min_size), (math.sqrt(min_size * max_size),) * 2]
    for r in aspect_ratios:
        w, h = min_size * math.sqrt(r), min_size / math.sqrt(r)
        sizes += [(w, h), (h, w)]
    boxes = []
    for i in range(f):  # rows: y
        for j in range(f):  # columns: x
            cx, cy = (j + 0.5) * step / image_size, (i + 0.5) * step / image_size
            for w, h in sizes:
                boxes.append((cx, cy, w / image_size, h / image_size))
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)
