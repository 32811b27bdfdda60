"""Checkers for chapter 05 (matching and encoding).

``check_iou(iou)``: the learner's IoU matrix against ``minissd.boxes.iou_reference``, first on
named edge cases (identical, disjoint, touching, nested, zero-area, inverted boxes, empty
inputs), then as a property test on boxes drawn by hypothesis on a small integer grid (so that
touching, identical and degenerate boxes are common), shrunk to the smallest failing pair.

``check_match(match)``: the learner's assignment ``match(overlaps (G, P), iou_threshold) ->
gt_index (P,)`` (the paper's x_ij^p: prior i takes ground truth j) against the library, first on
named IoU matrices (the chapter's worked example, two ground truths that share a best prior, a
best IoU below the threshold, a zero-area ground truth, ties, no ground truth) held to
``minissd.boxes.match_overlaps``, then as a property test: ground-truth boxes drawn by hypothesis
on a small integer grid (duplicates and zero-area boxes included) against a fixed grid of
default boxes, the learner's ``match`` on their IoU matrix held to ``minissd.boxes.match`` on the
boxes, shrunk to the smallest failing set; the pointer says which step (bipartite or threshold)
gives the differing prior its ground truth.

``check_encode(encode)``: the learner's regression targets against ``minissd.boxes.encode`` on
hand-made and random cases (with variances that differ per component, so a mixed-up variance is
caught), then the round trip: ``minissd.boxes.decode`` of the learner's targets must give back
the ground-truth boxes.
"""

from __future__ import annotations

import numpy as np
from hypothesis import find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from ..boxes import centre_to_corners, decode, iou_reference, match_overlaps
from ..boxes import encode as encode_reference
from ..boxes import match as match_reference
from . import run_safely, verdict
from .ch01_autograd import SEARCH_SETTINGS, smallest_failure

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


# ---------------------------------------------------------------------------------- match

#: The chapter's worked example: 3 ground truths (rows) x 8 default boxes (columns).
WORKED_EXAMPLE = np.array([
    [0.10, 0.45, 0.80, 0.40, 0.00, 0.00, 0.00, 0.00],
    [0.00, 0.20, 0.70, 0.65, 0.55, 0.00, 0.00, 0.00],
    [0.00, 0.00, 0.00, 0.00, 0.15, 0.35, 0.30, 0.05],
])

#: (name, overlaps (G, P), iou_threshold, hint): the cases every matching must get right, one
#: rule each, then the chapter's worked example.
MATCH_CASES = (
    ("two ground truths share a best default box", [[0.8, 0.3, 0.0], [0.7, 0.6, 0.0]], 0.5,
     "a box matched in the bipartite step leaves the pool, so ground truth 1 takes its next "
     "best box (1); giving box 0 to the last ground truth that wants it loses ground truth 0 "
     "(ssd.pytorch #354)"),
    ("a best IoU below the threshold is still matched", [[0.3, 0.2, 0.0]], 0.5,
     "the bipartite step gives every ground truth its best free box whatever its IoU (here "
     "0.3): small objects would never be trained on otherwise"),
    ("the largest IoU first, not the ground truths in index order",
     [[0.7, 0.6, 0.0], [0.8, 0.1, 0.0]], 0.9,
     "each round takes the largest IoU left among all (ground truth, box) pairs: (gt 1, box 0) "
     "at 0.8 comes before gt 0, which then takes box 1"),
    ("the threshold step: IoU >= threshold", [[0.9, 0.6, 0.5, 0.49]], 0.5,
     "after the bipartite step every box still free whose best IoU is >= the threshold (0.5 "
     "included) takes that ground truth"),
    ("a box over two ground truths takes the one it overlaps most",
     [[0.9, 0.55, 0.0], [0.0, 0.6, 0.95]], 0.5,
     "in the threshold step a box takes the ground truth of its largest IoU (column argmax)"),
    ("a zero-area ground truth (a row of zeros) matches nothing",
     [[0.0, 0.0, 0.0], [0.2, 0.7, 0.1]], 0.5,
     "only pairs with IoU > 0 count in the bipartite step: a ground truth that overlaps "
     "nothing gets no box (box 0 is not its 'best')"),
    ("ties: the lower default box first", [[0.6, 0.6, 0.1]], 0.7,
     "on equal IoUs the lower box index wins (np.argmax picks the first maximum)"),
    ("ties across ground truths: the lower box, then the lower ground truth",
     [[0.5, 0.6], [0.6, 0.5]], 0.9,
     "among the pairs with the largest IoU take the lowest box index, then the lowest ground "
     "truth: here (gt 1, box 0) first"),
    ("ties in the threshold step: the lower ground truth", [[0.9, 0.7, 0.0], [0.0, 0.7, 0.9]],
     0.5, "a box with equal IoU to two ground truths takes the lower index (argmax over axis 0)"),
    ("threshold 0: a box that overlaps nothing stays background", [[0.5, 0.0, 0.2]], 0.0,
     "the threshold step needs IoU >= threshold AND IoU > 0"),
    ("more ground truths than default boxes", [[0.5], [0.6], [0.7]], 0.5,
     "stop when no free box is left: the one box goes to the largest IoU (gt 2)"),
    ("no ground truth (an image without objects)", np.zeros((0, 4)), 0.5,
     "with G = 0 every box is background: return 4 times -1 (and do not crash on an empty "
     "argmax)"),
    ("the chapter's worked example", WORKED_EXAMPLE, 0.5,
     "step 1 takes (gt 0, box 2) at 0.80, then (gt 1, box 3) at 0.65, then (gt 2, box 5) at "
     "0.35; step 2 adds box 4 (0.55 >= 0.5) to gt 1"),
)

#: The checker's default boxes for drawn cases: centre form on an 8 x 8 grid (in units of 1/8),
#: 4 x 4 centres with boxes of side 2 and 4 and one 2 x 4 box: 48 boxes.
_GRID_PRIORS = np.array([(cx, cy, w, h) for cy in (1, 3, 5, 7) for cx in (1, 3, 5, 7)
                         for w, h in ((2, 2), (4, 4), (2, 4))], dtype=np.float64) / 8


def match_difference(label, got, want, overlaps, hint=""):
    """None when the learner's ``got`` equals the library's ``want`` (``gt_index`` arrays) on
    the IoU matrix ``overlaps``, else a sentence naming the first differing default box, both
    answers, the step that decides it and its IoUs (``label`` says which problem)."""
    got = np.asarray(got)
    if got.shape != want.shape:
        return (f"on {label}: gt_index has shape {got.shape}, expected (P,) = {want.shape} "
                f"(one ground-truth index per default box, -1 for background)")
    if got.size and got.dtype.kind not in "iu":
        return (f"on {label}: gt_index has dtype {got.dtype}; return integer ground-truth "
                f"indices (-1 for background), not a mask or IoUs")
    bad = np.flatnonzero(got != want)
    if not bad.size:
        return None
    i = int(bad[0])
    column = np.round(overlaps[:, i], 4).tolist()
    if want[i] < 0:
        why = "it is background (no step gives it a ground truth)"
    elif match_overlaps(overlaps, 1.0)[i] == want[i]:
        why = f"the bipartite step gives it ground truth {int(want[i])}"
    else:
        why = f"the threshold step gives it ground truth {int(want[i])}"
    return (f"on {label}: default box {i} gets {int(got[i])}, expected {int(want[i])}: {why} "
            f"(its IoUs with the ground truths: {column})" + (f"; {hint}" if hint else ""))


def _drawn_match_problem(match):
    def problem(case):
        gt, threshold = case
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4) / 8
        overlaps = iou_reference(gt, centre_to_corners(_GRID_PRIORS))
        want = to_numpy_int(match_reference(gt, np.zeros(len(gt), dtype=np.int64), _GRID_PRIORS,
                                            threshold).gt_index)
        label = (f"ground truths {np.round(gt * 8).astype(int).tolist()} (in 1/8 of the image) "
                 f"against the checker's 48 default boxes, threshold {threshold}")
        try:
            with np.errstate(all="ignore"):
                got = match(overlaps.copy(), threshold)
        except Exception as exc:  # noqa: BLE001
            return f"on {label}: it raised {type(exc).__name__}: {exc}"
        return match_difference(label, got, want, overlaps)

    return problem


def to_numpy_int(x):
    return np.asarray(x, dtype=np.int64)


def _smallest_failure_untimed(strategy, problem, max_examples):
    """``smallest_failure`` without hypothesis's 200 ms deadline per example (the first call
    of ``boxes.match`` may compile or load its kernel, and this machine may be busy)."""
    try:
        example = find(strategy, lambda ex: problem(ex) is not None,
                       settings=settings(SEARCH_SETTINGS, max_examples=max_examples,
                                         deadline=None))
    except NoSuchExample:
        return None
    return example, problem(example)


def check_match(match) -> bool:
    """``match(overlaps (G, P), iou_threshold) -> gt_index (P,)`` ints, -1 for background."""
    what = "match: equals minissd.boxes.match on named IoU matrices and on drawn boxes"
    ok, _ = run_safely(what, match, WORKED_EXAMPLE.copy(), 0.5)  # not implemented yet?
    if not ok:
        return False
    for name, overlaps, threshold, hint in MATCH_CASES:
        overlaps = np.asarray(overlaps, dtype=np.float64)
        want = match_overlaps(overlaps, threshold)
        try:
            got = match(overlaps.copy(), threshold)
        except Exception as exc:  # noqa: BLE001
            return verdict(False, what, f"on {name}: it raised {type(exc).__name__}: {exc}"
                                        f"; {hint}")
        message = match_difference(name, got, want, overlaps, hint)
        if message:
            return verdict(False, what, message)
    box = st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(0, 4),
                    st.integers(0, 4)).map(lambda t: (t[0], t[1], min(t[0] + t[2], 8),
                                                      min(t[1] + t[3], 8)))
    plain = st.lists(box, min_size=0, max_size=4)
    with_duplicate = st.lists(box, min_size=1, max_size=3).map(lambda b: b + [b[0]])
    cases = st.tuples(st.one_of(plain, with_duplicate), st.sampled_from((0.5, 0.3, 0.7)))
    found = _smallest_failure_untimed(cases, _drawn_match_problem(match), max_examples=150)
    if found:
        return verdict(False, what, found[1])
    return verdict(True, what + f" ({len(MATCH_CASES)} named cases, 150 drawn sets of "
                                f"ground truths with duplicates and zero-area boxes)")


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
