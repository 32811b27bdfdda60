"""The switch ``minissd.learner.use_learner_functions``: outside its block nothing changes; inside
it every slot is reached, the worked solutions give the library's bits, and a learner's bad answer
stops with the slot named.
"""


import numpy as np
import pytest
from exercise_helpers import learner_solutions, network_outputs

from minissd import boxes as B
from minissd.learner import (
    SLOTS,
    LearnerFunctionError,
    learner_function,
    plugged,
    use_learner_functions,
)
from minissd.priors import make_priors
from minissd.ssd.detect import detect_image
from minissd.ssd.model import DetectConfig, ssd_small
from minissd.ssd.multibox_loss import hard_negative_mask, multibox_loss

MINE = learner_solutions()
PRIORS = make_priors(ssd_small(6).priors).astype(np.float32)


# ------------------------------------------------------------------------- the switch

def test_the_switch_is_empty_outside_and_nests_inside():
    assert dict(plugged()) == {} and learner_function("iou") is None
    with use_learner_functions(iou=MINE["iou"]) as outer:
        assert set(outer) == {"iou"}
        with use_learner_functions(nms=MINE["nms"], iou=None):  # None keeps the outer's
            assert learner_function("iou") is MINE["iou"]
            assert learner_function("nms") is MINE["nms"]
        assert learner_function("nms") is None
    assert dict(plugged()) == {}


def test_the_switch_is_reset_after_an_error():
    with pytest.raises(RuntimeError):
        with use_learner_functions(match=MINE["match"]):
            raise RuntimeError("boom")
    assert learner_function("match") is None


def test_the_switch_refuses_unknown_slots_and_non_functions():
    with pytest.raises(TypeError, match="unknown slot.*ious"):
        with use_learner_functions(ious=MINE["iou"]):
            pass
    with pytest.raises(TypeError, match="iou must be a function"):
        with use_learner_functions(iou=3):
            pass
    with pytest.raises(KeyError):
        learner_function("nope")
    assert set(SLOTS) == {"iou", "match", "encode", "hard_negatives", "nms"}


def _scene(seed=0, num_gt=4):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.2, 0.8, (num_gt, 2))
    size = rng.uniform(0.05, 0.5, (num_gt, 2))
    gt = np.concatenate([centre - size / 2, centre + size / 2], 1).astype(np.float32)
    gt[1] = gt[0] + np.float32(0.01)  # two ground truths that share a best prior
    return gt, rng.integers(0, 5, num_gt)


def test_every_slot_of_matching_is_called_and_the_solutions_give_the_same_bits():
    calls = []

    def spy(name):
        def fn(*args):
            calls.append(name)
            return MINE[name](*args)
        return fn

    for seed in range(5):
        gt, labels = _scene(seed)
        want = B.match(gt, labels, PRIORS)
        with use_learner_functions(**{k: spy(k) for k in ("iou", "match", "encode")}):
            got = B.match(gt, labels, PRIORS)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    assert calls == ["iou", "match", "encode"] * 5


def test_hard_negatives_slot_in_the_loss():
    from minissd.autograd import Tensor

    rng = np.random.default_rng(1)
    loc = Tensor(rng.normal(size=(2, 50, 4)).astype(np.float32))
    conf = Tensor(rng.normal(size=(2, 50, 3)).astype(np.float32))
    labels = np.where(rng.random((2, 50)) < 0.1, 1, 0)
    targets = rng.normal(size=(2, 50, 4)).astype(np.float32)
    want = [t.item() for t in multibox_loss(loc, conf, targets, labels)]
    seen = []
    with use_learner_functions(hard_negatives=lambda *a: seen.append(a) or MINE[
            "hard_negatives"](*a)):
        got = [t.item() for t in multibox_loss(loc, conf, targets, labels)]
    assert got == want and len(seen) == 1
    with use_learner_functions(hard_negatives=lambda c, lab, r: np.zeros_like(lab, bool)):
        assert multibox_loss(loc, conf, targets, labels)[2].item() == 0.0  # nothing in L_conf


def test_nms_slot_in_detection_gives_the_same_detections():
    for seed in range(3):
        loc, conf, priors = network_outputs(seed)
        want = detect_image(loc, conf, priors, DetectConfig(), image_size=(300, 500))
        with use_learner_functions(nms=MINE["nms"]):
            got = detect_image(loc, conf, priors, DetectConfig(), image_size=(300, 500))
        assert len(want) == 200
        assert np.array_equal(got.boxes, want.boxes) and np.array_equal(got.labels, want.labels)
        assert np.array_equal(got.scores, want.scores)


@pytest.mark.parametrize("slot, bad, words", [
    ("iou", lambda a, b: np.zeros((len(b), len(a))), ["your iou returned shape", "expected"]),
    ("match", lambda o, t: np.zeros(o.shape[1]), ["your match returned dtype float64",
                                                   "integer"]),
    ("match", lambda o, t: np.full(o.shape[1], o.shape[0]), ["every index must lie in [-1"]),
    ("encode", lambda m, p, v: 1 / 0, ["your encode raised ZeroDivisionError",
                                       "called by boxes.match"]),
    ("match", lambda o, t: None, ["your match returned None"]),
])
def test_a_bad_answer_stops_with_the_slot_named(slot, bad, words):
    gt, labels = _scene()
    with use_learner_functions(**{slot: bad}):
        with pytest.raises(LearnerFunctionError) as info:
            B.match(gt, labels, PRIORS)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_a_bad_nms_stops_with_the_slot_named():
    loc, conf, priors = network_outputs(0)
    with use_learner_functions(nms=lambda b, s, t: np.array([len(s)])):
        with pytest.raises(LearnerFunctionError, match="your nms returned the index"):
            detect_image(loc, conf, priors, DetectConfig())
    with use_learner_functions(nms=lambda b, s, t: np.ones(len(s), bool)):
        with pytest.raises(LearnerFunctionError, match="dtype bool"):
            detect_image(loc, conf, priors, DetectConfig())


def test_hard_negative_mask_is_not_switched():  # the references stay the library's
    conf_loss = np.array([[0.5, 2.0, 0.1]])
    labels = np.array([[0, 0, 1]])
    with use_learner_functions(hard_negatives=lambda *a: np.zeros((1, 3), bool)):
        assert hard_negative_mask(conf_loss, labels, 3).tolist() == [[True, True, True]]
