"""Worked solutions for chapters/10_verifying.ipynb (the notebook has imported numpy as np)."""

import numpy as np


def first_divergence(ours, theirs, tol):
    """The first layer where two implementations part.

    Args:
        ours: dict name -> array, our activations in forward order.
        theirs: dict name -> array, the other implementation's (any order, may lack layers).
        tol: relative tolerance.
    Returns:
        The first name of ``ours`` (in its order) present in ``theirs`` whose arrays differ in
        shape or have max|a - b| / max|b| > tol (0 / 0 counts as 0), or None if all agree.
    """
    for name, a in ours.items():
        if name not in theirs:
            continue
        a, b = np.asarray(a, dtype=np.float64), np.asarray(theirs[name], dtype=np.float64)
        if a.shape != b.shape:
            return name
        max_abs = np.abs(a - b).max() if a.size else 0.0
        ref_max = np.abs(b).max() if b.size else 0.0
        rel = max_abs / ref_max if ref_max > 0 else (0.0 if max_abs == 0 else np.inf)
        if not rel <= tol:
            return name
    return None
