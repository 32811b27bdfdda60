"""Checkers for chapter 05 (matching and encoding).

``check_iou(iou)``: the learner's IoU matrix against ``minissd.boxes.iou_reference``, first on
named edge cases (identical, disjoint, touching, nested, zero-area, inverted boxes, empty
inputs), then as a property test on boxes drawn by hypothesis on a small integer grid (so that
touching, identical and degenerate boxes are common), shrunk to the smallest failing pair.

``check_encode(encode)``: the learner's regression targets against ``minissd.boxes.encode`` on
hand-made and random cases (with variances that differ per component, so a mixed-up variance is
caught), then the round trip: ``minissd.boxes.decode`` of the learner's targets must give back
the ground-truth boxes.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ..boxes import decode, iou_reference
from ..boxes import encode as encode_reference
from . import run_safely, verdict
from .ch01_autograd import smallest_failure

# ------------------------------------------------------------------------------------ IoU

#: (name, a, b): the edge cases every IoU must get right.
IOU_CASES = (
    ("identical boxes", [[0, 0, 2, 2]], [[0, 0, 2, 2]]),
    ("partial overlap", [[0, 0, 2, 2]], [[1, 1, 3, 3]]),
    ("one box inside the other", [[0, 0, 4, 4]], [[1, 1, 2, 2]]),
    ("disjoint boxes", [[0, 0, 1, 1]], [[2, 2, 3, 3]]),
    ("boxes apart in x but overlapping in y", [[0, 0, 1, 2]], [[2, 0, 3, 2]]),
    ("boxes touching along an edge", [[0, 0, 1, 1]], [[1, 0, 2, 1]]),
    ("boxes touching at a corner", [[0, 0, 1, 1]], [[1, 1, 2, 2]]),
    ("a zero-area box (a point) inside another", [[1, 1, 1, 1]], [[0, 0, 2, 2]]),
    ("two identical zero-area boxes (the union is 0)", [[1, 1, 1, 1]], [[1, 1, 1, 1]]),
    ("a zero-width box (a line)", [[1, 0, 1, 2]], [[0, 0, 2, 2]]),
    ("an inverted box (x2 < x1: area 0)", [[2, 0, 0, 2]], [[0, 0, 2, 2]]),
    ("3 boxes against 2 (an (N, M) matrix)", [[0, 0, 2, 2], [1, 1, 3, 3], [5, 5, 6, 7]],
     [[0, 0, 1, 1], [1, 0, 3, 2]]),
    ("an empty a, shape (0, 4)", np.zeros((0, 4)), [[0, 0, 1, 1], [0, 0, 2, 2]]),
    ("an empty b, shape (0, 4)", [[0, 0, 1, 1]], np.zeros((0, 4))),
    ("both empty", np.zeros((0, 4)), np.zeros((0, 4))),
)


def _iou_problem(iou, name=None):
    def problem(case):
        a, b = (np.asarray(v, dtype=np.float64).reshape(-1, 4) for v in case)
        label = name or f"a = {a.tolist()}, b = {b.tolist()}"
        expected = iou_reference(a, b)
        try:
            with np.errstate(all="ignore"):
                got = np.asarray(iou(a.copy(), b.copy()), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001
            return f"on {label}: it raised {type(exc).__name__}: {exc}"
        if got.shape != expected.shape:
            return f"on {label}: shape {got.shape}, expected (N, M) = {expected.shape}"
        bad = np.argwhere(~np.isclose(got, expected, rtol=1e-9, atol=1e-12))
        if not bad.size:
            return None
        i, j = (int(v) for v in bad[0])
        hint = ("the union is 0 here: define the IoU as 0 then, not 0/0" if np.isnan(got[i, j])
                else "clamp the intersection's width and height at 0 (and each box's own)"
                if got[i, j] < 0 or expected[i, j] == 0 else
                "IoU = intersection / (area a + area b - intersection)")
        return (f"on {label}: IoU[{i}, {j}] of a[{i}] = {a[i].tolist()} and b[{j}] = "
                f"{b[j].tolist()} is {got[i, j]:.6g}, expected {expected[i, j]:.6g} ({hint})")

    return problem


def check_iou(iou) -> bool:
    """``iou(a (N, 4), b (M, 4)) -> (N, M)`` for corner boxes."""
    what = "iou: equals iou_reference on edge cases and on drawn boxes"
    ok, _ = run_safely(what, iou, np.array([[0.0, 0, 1, 1]]), np.array([[0.0, 0, 1, 1]]))
    if not ok:
        return False
    for name, a, b in IOU_CASES:
        message = _iou_problem(iou, name)((a, b))
        if message:
            return verdict(False, what, message)
    box = st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 4),
                    st.integers(0, 4)).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))
    pairs = st.tuples(st.lists(box, min_size=1, max_size=4), st.lists(box, min_size=1, max_size=4))
    found = smallest_failure(pairs, _iou_problem(iou), max_examples=100)
    if found:
        return verdict(False, what, found[1])
    return verdict(True, what + f" ({len(IOU_CASES)} edge cases, 100 drawn pairs of box lists)")


# --------------------------------------------------------------------------------- encode

COMPONENTS = (
    "t_cx = (g_cx - d_cx) / (v0 * d_w)",
    "t_cy = (g_cy - d_cy) / (v1 * d_h)",
    "t_w = log(g_w / d_w) / v2",
    "t_h = log(g_h / d_h) / v3",
)


def _random_case(rng, num):
    priors = np.column_stack([rng.uniform(0.1, 0.9, (num, 2)), rng.uniform(0.05, 0.6, (num, 2))])
    centre = priors[:, :2] + rng.normal(0, 0.05, (num, 2))
    size = priors[:, 2:] * np.exp(rng.normal(0, 0.4, (num, 2)))
    matched = np.column_stack([centre - size / 2, centre + size / 2])
    return matched, priors


def _encode_cases():
    """(name, matched (P, 4) corners, priors (P, 4) centre form, variances)."""
    prior = np.array([[0.5, 0.5, 0.2, 0.4]])
    cases = [
        ("a ground truth equal to its prior (targets 0)", np.array([[0.4, 0.3, 0.6, 0.7]]),
         prior, (0.1, 0.1, 0.2, 0.2)),
        ("a ground truth shifted right by 0.1 prior widths (t_cx = 1)",
         np.array([[0.42, 0.3, 0.62, 0.7]]), prior, (0.1, 0.1, 0.2, 0.2)),
        ("a ground truth twice as wide as its prior (t_w = log 2 / 0.2)",
         np.array([[0.3, 0.3, 0.7, 0.7]]), prior, (0.1, 0.1, 0.2, 0.2)),
    ]
    rng = np.random.default_rng(5)
    for variances in ((0.1, 0.1, 0.2, 0.2), (0.1, 0.2, 0.3, 0.4), (1.0, 1.0, 1.0, 1.0)):
        matched, priors = _random_case(rng, 7)
        cases.append((f"7 random boxes with variances {variances}", matched, priors, variances))
    return cases


def check_encode(encode) -> bool:
    """``encode(matched (P, 4) corners, priors (P, 4) centre form, variances) -> (P, 4)``."""
    what = "encode: equals minissd.boxes.encode, and decode(encode(g)) gives g back"
    cases = _encode_cases()
    ok, _ = run_safely(what, encode, *cases[0][1:])
    if not ok:
        return False
    for name, matched, priors, variances in cases:
        expected = encode_reference(matched, priors, variances)
        try:
            with np.errstate(all="ignore"):
                got = np.asarray(encode(matched.copy(), priors.copy(), variances), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001
            return verdict(False, what, f"on {name}: it raised {type(exc).__name__}: {exc}")
        if got.shape != expected.shape:
            return verdict(False, what, f"on {name}: shape {got.shape}, expected (P, 4) = "
                                        f"{expected.shape}")
        bad = np.argwhere(~np.isclose(got, expected, rtol=1e-9, atol=1e-12))
        if bad.size:
            p, c = (int(v) for v in bad[0])
            return verdict(False, what, (
                f"on {name}: prior {p}, component {c} is {got[p, c]:.6g}, expected "
                f"{expected[p, c]:.6g}, from {COMPONENTS[c]} (g: the ground truth in centre "
                f"form, d: the prior {priors[p].round(4).tolist()}, v = {variances})"))
        back = decode(got, priors, variances)
        if not np.allclose(back, matched, rtol=1e-9, atol=1e-12):
            return verdict(False, what, f"on {name}: decode of your targets gives "
                                        f"{back[0].round(5).tolist()}, not {matched[0].tolist()}")
    return verdict(True, what + f" ({len(cases)} cases)")
