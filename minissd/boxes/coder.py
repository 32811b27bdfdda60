"""Encode / decode: the SSD box parameterisation (rules: the ``minissd.boxes`` docstring)."""

from __future__ import annotations

import numpy as np

from minissd.backend import get_array_module, to_numpy
from minissd.priors import SSD_VARIANCES

from ._checks import _check_offsets, _check_priors, _check_variances
from .geometry import centre_to_corners, corners_to_centre


def encode(matched, priors, variances=SSD_VARIANCES):
    """Regression targets of matched ground-truth boxes relative to their priors.

    matched: (..., P, 4) corners with ``x2 > x1`` and ``y2 > y1``; priors: (P, 4) centre form
    (width and height > 0); variances: 4 numbers > 0, by default the paper's
    ``SSD_VARIANCES = (0.1, 0.1, 0.2, 0.2)`` -> (..., P, 4) offsets::

        t_cx = (g_cx - d_cx) / (v0 * d_w)        t_w = log(g_w / d_w) / v2
        t_cy = (g_cy - d_cy) / (v1 * d_h)        t_h = log(g_h / d_h) / v3

    Inputs that would give an inf or NaN target raise a ``ValueError`` naming the argument.
    """
    xp = get_array_module(matched, priors)
    priors = _check_priors(priors, xp)
    matched = _check_offsets(matched, priors.shape[0], "matched", xp)
    variances = _check_variances(variances)
    positive_size = matched[..., 2:] > matched[..., :2]
    if matched.size and not bool(positive_size.all()):
        row = np.argwhere(~to_numpy(positive_size).all(axis=-1))[0]
        raise ValueError(f"matched must have x2 > x1 and y2 > y1 (log of its size); box "
                         f"{tuple(row.tolist())} is {to_numpy(matched[tuple(row)]).tolist()}")
    return _encode(matched, priors, variances, xp)


def _encode(matched, priors, variances, xp):
    """``encode`` on validated inputs (``match`` calls it directly)."""
    g = corners_to_centre(matched)
    v = xp.asarray(variances, dtype=xp.result_type(g.dtype, priors.dtype))
    t_centre = (g[..., :2] - priors[..., :2]) / (v[:2] * priors[..., 2:])
    t_size = xp.log(g[..., 2:] / priors[..., 2:]) / v[2:]
    return xp.concatenate([t_centre, t_size], axis=-1)


def decode(loc, priors, variances=SSD_VARIANCES, max_log_scale=None):
    """Boxes from predicted offsets: the inverse of ``encode``.

    loc: (..., P, 4) finite offsets; priors: (P, 4) centre form (width and height > 0);
    variances: 4 numbers > 0 (default ``SSD_VARIANCES``, as ``encode``) -> (..., P, 4)
    corners. ``max_log_scale`` (optional) caps ``v2 * t_w`` and ``v3 * t_h`` before the
    exponential; torchvision uses ``log(1000 / 16)`` so that a wild prediction cannot overflow.
    None (the paper, Caffe) applies no cap: an offset so large that ``exp`` overflows gives an
    infinite size, as in Caffe.
    """
    xp = get_array_module(loc, priors)
    priors = _check_priors(priors, xp)
    loc = _check_offsets(loc, priors.shape[0], "loc", xp)
    variances = _check_variances(variances)
    if max_log_scale is not None and not np.isfinite(max_log_scale):
        raise ValueError(f"max_log_scale must be None or a finite number, got {max_log_scale!r}")
    v = xp.asarray(variances, dtype=xp.result_type(loc.dtype, priors.dtype))
    centre = priors[..., :2] + loc[..., :2] * v[:2] * priors[..., 2:]
    log_scale = loc[..., 2:] * v[2:]
    if max_log_scale is not None:
        log_scale = xp.minimum(log_scale, max_log_scale)
    size = priors[..., 2:] * xp.exp(log_scale)
    return centre_to_corners(xp.concatenate([centre, size], axis=-1))
