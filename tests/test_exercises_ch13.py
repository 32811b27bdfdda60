"""The checker of chapter 13 (boxes through a crop) passes the worked solution and fails planted
wrong answers, each with a pointer to the rule it breaks (never raising)."""

import numpy as np
import pytest
from exercise_helpers import fails, passes, solution

from minissd.exercises import ch13_augmentation as ch13


def _crop(boxes, labels, patch, *, keep="centre", inclusive=True, clip=True, move=True,
          filter_labels=True, empty_shape=(0, 4)):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    px1, py1, px2, py2 = (float(v) for v in patch)
    if keep == "centre":
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        if inclusive:
            mask = (cx >= px1) & (cx <= px2) & (cy >= py1) & (cy <= py2)
        else:
            mask = (cx > px1) & (cx < px2) & (cy > py1) & (cy < py2)
    elif keep == "overlap":
        mask = ((np.minimum(boxes[:, 2], px2) > np.maximum(boxes[:, 0], px1))
                & (np.minimum(boxes[:, 3], py2) > np.maximum(boxes[:, 1], py1)))
    else:  # "inside": only boxes wholly in the patch
        mask = ((boxes[:, 0] >= px1) & (boxes[:, 2] <= px2) & (boxes[:, 1] >= py1)
                & (boxes[:, 3] <= py2))
    kept = boxes[mask].copy()
    if clip:
        kept[:, 0::2] = np.clip(kept[:, 0::2], px1, px2)
        kept[:, 1::2] = np.clip(kept[:, 1::2], py1, py2)
    if move:
        kept -= np.array([px1, py1, px1, py1])
    if not len(kept):
        kept = np.zeros(empty_shape)
    return kept, (np.asarray(labels)[mask] if filter_labels else np.asarray(labels))


def test_ch13_solution_passes(capsys):
    passes(ch13.check_crop_boxes, solution("13_augmentation", "crop_boxes"), capsys)


@pytest.mark.parametrize("wrong, pointer", [
    (dict(keep="overlap"), "keep a box exactly when its CENTRE"),
    (dict(keep="inside"), "keep a box exactly when its CENTRE"),
    (dict(inclusive=False), "borders included"),
    (dict(clip=False), "clip the kept boxes to the patch"),
    (dict(move=False), "move the boxes into the patch's coordinates"),
    (dict(filter_labels=False), "the labels must follow the kept boxes"),
    (dict(empty_shape=(0,)), "an empty result is a (0, 4) array"),
])
def test_ch13_planted_mistakes_fail(wrong, pointer, capsys):
    fails(ch13.check_crop_boxes, lambda b, l, p: _crop(b, l, p, **wrong), capsys, pointer)


def test_ch13_other_wrong_answers_fail(capsys):
    def not_implemented(*args):
        raise NotImplementedError("fill this in")

    def returns_boxes_only(boxes, labels, patch):
        return _crop(boxes, labels, patch)[0]

    def moves_by_the_wrong_corner(boxes, labels, patch):
        kept, kept_labels = _crop(boxes, labels, patch, move=False)
        return kept - np.array([patch[2], patch[3], patch[2], patch[3]]), kept_labels

    fails(ch13.check_crop_boxes, not_implemented, capsys, "NotImplementedError")
    fails(ch13.check_crop_boxes, returns_boxes_only, capsys, "case 'a box inside the patch'")
    fails(ch13.check_crop_boxes, moves_by_the_wrong_corner, capsys, "expected [[10.0, 10.0")
