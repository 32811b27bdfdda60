"""The checkers of chapters 06-10 pass the worked solutions and fail planted wrong answers.

Each planted answer is a mistake a learner is likely to make; the checker must return False,
print ``NOT YET`` (never raise), and pass the solution in ``chapters/solutions/``.
"""

import numpy as np
import pytest
from exercise_helpers import fails, not_implemented, passes, solution

from minissd.eval import VOC07_RECALL_LEVELS
from minissd.exercises import ch06_loss, ch07_nms, ch08_train, ch09_eval, ch10_verify

# ---------------------------------------------------------------------- 06 hard negatives

def test_ch06_solution_passes(capsys):
    passes(ch06_loss.check_hard_negatives,
           solution("06_multibox_loss", "hard_negatives"), capsys)


def _mine(conf_loss, labels, ratio, *, include_pos=True, per_image=True, stable=True,
          exclude_pos=True, cap=True):
    positive = labels > 0
    if per_image:
        num_pos = positive.sum(axis=1, keepdims=True)
    else:
        num_pos = np.full((len(labels), 1), positive.sum())
    num_neg = ratio * num_pos
    if cap:
        num_neg = np.minimum(num_neg, (~positive).sum(axis=1, keepdims=True))
    ranked = np.where(positive, -np.inf, conf_loss) if exclude_pos else conf_loss
    if stable:
        order = np.argsort(-ranked, axis=1, kind="stable")
    else:  # ties broken the wrong way: higher index first
        index = np.arange(ranked.shape[1])
        order = np.stack([np.lexsort((-index, -row)) for row in ranked])
    rank = np.argsort(order, axis=1, kind="stable")
    mined = rank < num_neg
    if not exclude_pos:
        mined &= ~positive
    return (positive | mined) if include_pos else (mined & ~positive)


@pytest.mark.parametrize("wrong, pointer", [
    (dict(include_pos=False), "positives are missing"),
    (dict(per_image=False), "per image"),
    (dict(stable=False), "stable sort"),
    (dict(exclude_pos=False), "exclude the positives"),
])
def test_ch06_planted_mistakes_fail(wrong, pointer, capsys):
    fails(ch06_loss.check_hard_negatives, lambda c, lab, r: _mine(c, lab, r, **wrong), capsys,
          pointer)


def test_ch06_other_wrong_answers_fail(capsys):
    fails(ch06_loss.check_hard_negatives, not_implemented, capsys, "NotImplementedError")
    fails(ch06_loss.check_hard_negatives, lambda c, lab, r: (c > 1).astype(int), capsys,
          "dtype")
    fails(ch06_loss.check_hard_negatives, lambda c, lab, r: (c > 1)[0], capsys, "shape")
    # negatives counted per image, but the ratio applied to the batch's negatives: zero-division
    fails(ch06_loss.check_hard_negatives,
          lambda c, lab, r: (lab > 0) | (c > np.sort(c[lab == 0])[-3 * (lab > 0).sum()]),
          capsys)


def test_ch06_cap_is_not_needed_but_wrong_ratio_is(capsys):
    """`rank < ratio * pos` without the min() is still right (ranks of positives come last and
    positives are in the mask anyway); a ratio off by one is not."""
    passes(ch06_loss.check_hard_negatives, lambda c, lab, r: _mine(c, lab, r, cap=False), capsys)
    fails(ch06_loss.check_hard_negatives, lambda c, lab, r: _mine(c, lab, r + 1), capsys)


# ---------------------------------------------------------------------- 07 NMS

def _nms(boxes, scores, thr, *, strict=True, stable=True, against_kept=True, empty_ok=True):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not empty_ok and len(boxes) == 0:
        return None
    order = np.argsort(-scores, kind="stable" if stable else "quicksort")
    if not stable:
        order = order[::-1][np.argsort(-scores[order[::-1]], kind="stable")]  # ties: higher index
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    kept, seen = [], []
    for i in order:
        ok = True
        for k in (kept if against_kept else seen):
            iw = max(min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0]), 0.0)
            ih = max(min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1]), 0.0)
            union = area[i] + area[k] - iw * ih
            iou = iw * ih / union if union > 0 else 0.0
            if (iou > thr) if strict else (iou >= thr):
                ok = False
                break
        seen.append(int(i))
        if ok:
            kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


def test_ch07_solution_passes(capsys):
    passes(ch07_nms.check_nms, solution("07_nms_kernels", "greedy_nms"), capsys)


@pytest.mark.parametrize("wrong, pointer", [
    (dict(strict=False), "strictly greater"),
    (dict(stable=False), "lower index"),
    (dict(against_kept=False), "already KEPT"),
    (dict(empty_ok=False), "empty"),
])
def test_ch07_planted_mistakes_fail(wrong, pointer, capsys):
    fails(ch07_nms.check_nms, lambda b, s, t: _nms(b, s, t, **wrong), capsys, pointer)


def test_ch07_other_wrong_answers_fail(capsys):
    fails(ch07_nms.check_nms, not_implemented, capsys, "NotImplementedError")
    # kept indices in index order instead of score order
    out = fails(ch07_nms.check_nms, lambda b, s, t: np.sort(_nms(b, s, t)), capsys)
    assert "kept position" in out
    # a mask instead of indices
    fails(ch07_nms.check_nms, lambda b, s, t: np.isin(np.arange(len(s)), _nms(b, s, t)) * 1.0,
          capsys, "dtype")
    # ignores the threshold
    fails(ch07_nms.check_nms, lambda b, s, t: _nms(b, s, 0.5), capsys)


# ---------------------------------------------------------------------- 08 SGD

def test_ch08_solution_passes(capsys):
    passes(ch08_train.check_sgd_step, solution("08_training", "sgd_step"), capsys)


def _sgd(w, g, v, lr, mom, wd, *, decay=True, torch_form=True, lr_in_v=False, keep_old_v=False):
    g = g + wd * w if decay else g
    old = v
    if v is None:
        v = lr * g if lr_in_v else g
    else:
        v = mom * v + (lr * g if lr_in_v else g)
        if not torch_form:
            v = mom * v + (1 - mom) * g
    return (w - v if lr_in_v else w - lr * v), (old if keep_old_v else v)


@pytest.mark.parametrize("wrong, pointer", [
    (dict(decay=False), "weight_decay * w"),
    (dict(torch_form=False), "the velocity accumulates"),
    (dict(keep_old_v=True), "return the new velocity"),
    (dict(lr_in_v=True), "changing lr"),
])
def test_ch08_planted_mistakes_fail(wrong, pointer, capsys):
    fails(ch08_train.check_sgd_step, lambda *a: _sgd(*a, **wrong), capsys, pointer)


def test_ch08_other_wrong_answers_fail(capsys):
    fails(ch08_train.check_sgd_step, not_implemented, capsys, "NotImplementedError")
    fails(ch08_train.check_sgd_step, lambda w, g, v, lr, m, wd: w - lr * g, capsys, "pair")
    fails(ch08_train.check_sgd_step, lambda w, g, v, lr, m, wd: (w + lr * g, v), capsys)
    # momentum ignored: right until the second momentum step
    out = fails(ch08_train.check_sgd_step,
                lambda w, g, v, lr, m, wd: (w - lr * (g + wd * w), g + wd * w), capsys)
    assert "momentum over several steps" in out and "step 1" in out


# ---------------------------------------------------------------------- 09 11-point AP

def test_ch09_solution_passes(capsys):
    passes(ch09_eval.check_eleven_point_ap, solution("09_evaluation", "eleven_point_ap"), capsys)


def _ap(recall, precision, *, arange=False, tenths=False, interpolate=True, guard=True):
    levels = VOC07_RECALL_LEVELS  # the devkit's 0:0.1:1
    if arange:
        levels = np.arange(0, 1.1, 0.1)  # 0.6000000000000001 and 0.7000000000000001
    if tenths:
        levels = [k / 10 for k in range(11)]  # 0.3 instead of 0.30000000000000004
    total = 0.0
    for t in levels:
        reached = recall >= t
        if not reached.any():
            if not guard:
                total += precision[reached].max()
            continue
        total += precision[reached].max() if interpolate else precision[np.argmax(reached)]
    return total / 11


@pytest.mark.parametrize("wrong, pointer", [
    (dict(arange=True), "np.arange"),
    (dict(tenths=True), "0.30000000000000004"),
    (dict(interpolate=False), "HIGHEST precision"),
    (dict(guard=False), "empty curve"),
])
def test_ch09_planted_mistakes_fail(wrong, pointer, capsys):
    fails(ch09_eval.check_eleven_point_ap, lambda r, p: _ap(r, p, **wrong), capsys, pointer)


def test_ch09_other_wrong_answers_fail(capsys):
    fails(ch09_eval.check_eleven_point_ap, not_implemented, capsys, "NotImplementedError")
    # area under the curve (the VOC2010 metric) is not the 11-point AP
    from minissd.eval import voc_ap
    fails(ch09_eval.check_eleven_point_ap, lambda r, p: voc_ap(r, p, use_07_metric=False), capsys)
    # ten levels (t = 0.1 ... 1) averaged over 10
    fails(ch09_eval.check_eleven_point_ap,
          lambda r, p: sum(p[r >= k / 10].max() if (r >= k / 10).any() else 0.0
                           for k in range(1, 11)) / 10, capsys)
    fails(ch09_eval.check_eleven_point_ap, lambda r, p: np.array([0.5, 0.5]), capsys,
          "one number")


# ---------------------------------------------------------------------- 10 first divergence

def test_ch10_solution_passes(capsys):
    passes(ch10_verify.check_first_divergence, solution("10_verifying", "first_divergence"),
           capsys)


def test_ch10_reference_rule_is_the_harness_rule():
    """The checker's rule equals what ``minissd.pytorch.parity.compare`` reports as first divergent:
    the first Diff (forward order) that is not ok."""
    from minissd.pytorch.parity import diff
    rng = np.random.default_rng(0)
    ours = {f"l{i}": rng.normal(size=(2, 3)) for i in range(5)}
    theirs = {k: v.copy() for k, v in ours.items()}
    theirs["l2"] += 1e-3
    theirs["l4"] += 1.0
    first = next(n for n in ours if not diff(n, ours[n], theirs[n], 1e-6).ok)
    assert ch10_verify.reference_first_divergence(ours, theirs, 1e-6) == first == "l2"


def _first(ours, theirs, tol, *, largest=False, elementwise=False, check_shape=True,
           order_of_theirs=False, skip_missing=True, strict=True):
    names = list(theirs if order_of_theirs else ours)
    worst, worst_name = -1.0, None
    for name in names:
        if name not in theirs or name not in ours:
            if skip_missing:
                continue
            return name
        a, b = ours[name], theirs[name]
        if a.shape != b.shape:
            if check_shape:
                return name
            continue
        if elementwise:
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.nanmax(np.where(b != 0, np.abs(a - b) / np.abs(b), np.abs(a - b)))
        else:
            ref = np.abs(b).max()
            rel = np.abs(a - b).max() / ref if ref > 0 else float(np.abs(a - b).max() > 0) * 1e9
        if largest:
            if rel > tol and rel > worst:
                worst, worst_name = rel, name
            continue
        if (rel > tol) if strict else (rel >= tol):
            return name
    return worst_name


@pytest.mark.parametrize("wrong, pointer", [
    (dict(largest=True), "FIRST layer"),
    (dict(elementwise=True), "whole tensor"),
    (dict(order_of_theirs=True), "order of `ours`"),
    (dict(skip_missing=False), "skip a layer"),
    (dict(strict=False), "strictly greater"),
])
def test_ch10_planted_mistakes_fail(wrong, pointer, capsys):
    fails(ch10_verify.check_first_divergence, lambda o, t, tol: _first(o, t, tol, **wrong),
          capsys, pointer)


def test_ch10_other_wrong_answers_fail(capsys):
    fails(ch10_verify.check_first_divergence, not_implemented, capsys, "NotImplementedError")
    # no shape check: the subtraction raises on the mismatched pair -> reported, not raised
    out = fails(ch10_verify.check_first_divergence,
                lambda o, t, tol: _first(o, t, tol, check_shape=False), capsys)
    assert "shape" in out
    # np.allclose semantics (elementwise atol + rtol) instead of the relative max error
    fails(ch10_verify.check_first_divergence,
          lambda o, t, tol: next((n for n in o if n in t and (o[n].shape != t[n].shape or not
                                  np.allclose(o[n], t[n], rtol=tol, atol=0))), None), capsys)
