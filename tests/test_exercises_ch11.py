"""The checker of chapter 11 (the crop's IoU constraint) passes the worked solution and fails
planted wrong answers, each with a pointer to the mistake (never raising)."""

import numpy as np
import pytest
from exercise_helpers import fails, passes, solution

from minissd.boxes import iou
from minissd.exercises import ch11_what_goes_wrong as ch11


def _overlaps(patch, boxes):
    return iou(np.reshape(patch, (1, 4)).astype(np.float64),
               np.reshape(boxes, (-1, 4)).astype(np.float64))[0]


def _rule(patch, boxes, min_iou, max_iou, *, any_box=True, strict=False, check_max=True,
          empty_ok=False, unbounded_shortcut=True):
    if unbounded_shortcut and min_iou is None and max_iou is None:
        return True
    overlap = _overlaps(patch, boxes)
    if len(overlap) == 0 and empty_ok:
        return True
    ok = np.ones(len(overlap), dtype=bool)
    if min_iou is not None:
        ok &= (overlap > min_iou) if strict else (overlap >= min_iou)
    if max_iou is not None and check_max:
        ok &= overlap <= max_iou
    return bool(ok.any() if any_box else ok.all())


def ssd_pytorch_rule(patch, boxes, min_iou, max_iou):
    """ssd.pytorch's RandomSampleCrop: `and` where `or` was meant; it never rejects."""
    min_iou = -np.inf if min_iou is None else min_iou
    max_iou = np.inf if max_iou is None else max_iou
    overlap = _overlaps(patch, boxes)
    if len(overlap) == 0:
        return True
    return not (overlap.min() < min_iou and max_iou < overlap.max())


def test_ch11_solution_passes(capsys):
    passes(ch11.check_patch_satisfies, solution("11_what_goes_wrong", "patch_satisfies"), capsys)


@pytest.mark.parametrize("wrong, pointer", [
    (dict(any_box=False), "ANY box, not ALL boxes"),
    (dict(strict=True), "the bounds are inclusive"),
    (dict(check_max=False), "check the upper bound too"),
    (dict(empty_ok=True), "an image without boxes accepts no patch"),
    (dict(unbounded_shortcut=False), "every patch is accepted"),
])
def test_ch11_planted_mistakes_fail(wrong, pointer, capsys):
    fails(ch11.check_patch_satisfies, lambda p, b, lo, hi: _rule(p, b, lo, hi, **wrong), capsys,
          pointer)


def test_ch11_ssd_pytorch_rule_fails_with_its_own_pointer(capsys):
    fails(ch11.check_patch_satisfies, ssd_pytorch_rule, capsys, "never rejects")


def test_ch11_other_wrong_answers_fail(capsys):
    def not_implemented(*args):
        raise NotImplementedError("fill this in")

    def crashes_on_no_boxes(patch, boxes, min_iou, max_iou):
        overlap = _overlaps(patch, boxes)
        return bool(overlap.max() >= (min_iou or 0))  # np.max of an empty array raises

    def returns_array(patch, boxes, min_iou, max_iou):
        return np.array([_rule(patch, boxes, min_iou, max_iou)])

    fails(ch11.check_patch_satisfies, not_implemented, capsys, "NotImplementedError")
    fails(ch11.check_patch_satisfies, crashes_on_no_boxes, capsys, "it raised ValueError")
    fails(ch11.check_patch_satisfies, returns_array, capsys, "return one bool")
