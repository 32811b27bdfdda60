"""The checkers of chapter 12 (``minissd.exercises.ch12_in_the_loop``): with the worked solutions
plugged in (``minissd.learner.use_learner_functions``, tested in tests/test_learner.py), training
and detection give the library's numbers bit for bit; each checker passes them and fails planted
wrong answers with a pointer that says why; the full-recipe command runs on a tiny recipe.
"""

import ast
import json
from dataclasses import replace

import numpy as np
import pytest
from exercise_helpers import LEARNER_SOLUTIONS, SOLUTIONS, learner_solutions, network_outputs

from minissd import boxes as B
from minissd.exercises import ch12_in_the_loop as ch12
from minissd.learner import SLOTS, use_learner_functions
from minissd.priors import make_priors
from minissd.ssd.detect import detect_image
from minissd.ssd.model import DetectConfig, ssd_small

STEM = "12_your_code_in_the_loop"
MINE = learner_solutions()
PRIORS = make_priors(ssd_small(6).priors).astype(np.float32)


def verdicts(out):
    return [line for line in out.splitlines() if line.startswith(("PASS", "NOT YET"))]


# ------------------------------------------------------------------ the solutions

def test_chapter_12_exercises_are_the_earlier_chapters_functions():
    """Each exercise cell of the notebook pastes a function that an earlier chapter's worked
    solution defines (tests/test_chapters.py fills the cells from there)."""
    nb = json.loads((SOLUTIONS.parent / f"{STEM}.ipynb").read_text())
    names = {n.name for c in nb["cells"] if "exercise" in c["metadata"].get("tags", [])
             for n in ast.parse("".join(c["source"])).body if isinstance(n, ast.FunctionDef)}
    assert names == {"iou", "match", "encode", "hard_negatives", "greedy_nms"}
    assert names == {name for _, name in LEARNER_SOLUTIONS.values()}
    assert not (SOLUTIONS / f"{STEM}.py").exists()  # no copy to drift from the originals


# ------------------------------------------------------------------------- the checkers

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from minissd.data import VOCDataset, make_synthetic_voc
    from minissd.train import TrainConfig

    root = tmp_path_factory.mktemp("ch12")
    names = make_synthetic_voc(root / "shapes", num_train=12, num_test=3, seed=0)
    dataset = VOCDataset(root / "shapes", "train", class_names=names)
    test_set = VOCDataset(root / "shapes", "test", class_names=names)
    config = TrainConfig(model="small", class_names=names, iterations=2, batch_size=4,
                         optimizer="adam", lr=3e-3, weight_decay=0.0, warmup_iters=1,
                         milestones=(8,), augment=False, seed=0, device="cpu",
                         out_dir=str(root / "library"), progress=False)
    return config, dataset, test_set, root


def test_check_slots_passes_the_solutions(capsys, small_run):
    config, dataset, _, _ = small_run
    assert ch12.check_slots(dataset, config, **MINE) is True
    lines = verdicts(capsys.readouterr().out)
    assert len(lines) == 5 and all(line.startswith("PASS: ") for line in lines), lines


def _iou_in_float32(a, b):
    a, b = np.asarray(a, np.float32)[:, None], np.asarray(b, np.float32)[None]
    w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    inter = w * h
    union = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
             + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def _encode_in_float64(matched, priors, variances):
    return MINE["encode"](matched.astype(np.float64), priors.astype(np.float64), variances)


def _match_bipartite_only(overlaps, threshold):  # forgets the threshold step
    return MINE["match"](overlaps, 1.0)


def _hard_negatives_unstable(conf_loss, labels, ratio):  # ties broken by the sort's whim
    positive = labels > 0
    num_neg = np.minimum(ratio * positive.sum(1, keepdims=True), (~positive).sum(1, keepdims=True))
    ranked = np.where(positive, -np.inf, conf_loss)
    order = np.argsort(ranked, axis=1)[:, ::-1]  # highest first, ties by the higher index
    rank = np.argsort(order, axis=1)
    return positive | (rank < num_neg)


def _nms_suppressed_boxes_suppress(boxes, scores, threshold):  # compares with every earlier box
    overlaps = B.iou_reference(boxes, boxes)
    kept, earlier = [], []
    for i in np.argsort(-scores, kind="stable"):
        if not any(overlaps[j, i] > threshold for j in earlier):
            kept.append(i)
        earlier.append(i)
    return np.asarray(kept, dtype=np.int64)


@pytest.mark.parametrize("slot, wrong, words", [
    ("iou", _iou_in_float32, ["your iou", "float64"]),
    ("encode", _encode_in_float64, ["within rounding, not bit for bit",
                                    "dtype=priors.dtype"]),
    ("match", _match_bipartite_only, ["your match", "default box", "the threshold step gives"]),
    ("hard_negatives", _hard_negatives_unstable, ["your hard_negatives", "positives"]),
    ("nms", _nms_suppressed_boxes_suppress, ["your nms", "the reference"]),
])
def test_check_slots_says_why_a_function_differs(capsys, small_run, slot, wrong, words):
    config, dataset, _, _ = small_run
    assert ch12.check_slots(dataset, config, **{**MINE, slot: wrong}) is False
    lines = verdicts(capsys.readouterr().out)
    assert len(lines) == 5, lines
    bad = [line for line in lines if line.startswith("NOT YET")]
    assert len(bad) == 1 and " -- " in bad[0], lines
    for w in words:
        assert w in bad[0], bad[0]


def test_check_slots_reports_an_exception_without_raising(capsys, small_run):
    config, dataset, _, _ = small_run
    assert ch12.check_slots(dataset, config, iou=lambda a, b: 1 / 0) is False
    assert "raised ZeroDivisionError" in capsys.readouterr().out


def test_same_run_passes_with_the_solutions_and_says_why_not_with_a_variant(capsys, small_run):
    from minissd.train import train

    config, dataset, _, root = small_run
    _, library = train(config, dataset=dataset, overwrite=True)
    watched = ch12.watch(images_per_iteration=config.batch_size, **MINE)
    with use_learner_functions(**watched):
        _, yours = train(replace(config, out_dir=str(root / "yours")), dataset=dataset,
                         overwrite=True)
    assert ch12.check_same_run(library, yours, watched) is True
    assert watched.first is None and watched.calls["hard_negatives"] == config.iterations
    assert verdicts(capsys.readouterr().out)[0].startswith("PASS: ")

    variant = ch12.watch(images_per_iteration=config.batch_size,
                         **{**MINE, "encode": _encode_in_float64})
    with use_learner_functions(**variant):
        _, drifted = train(replace(config, out_dir=str(root / "variant")), dataset=dataset,
                           overwrite=True)
    assert variant.first is not None and variant.first[:2] == ("encode", "iteration 0, image 0")
    if drifted != library:  # float32 sums may hide a last-bit difference for a while
        assert ch12.check_same_run(library, drifted, variant) is False
        out = capsys.readouterr().out
        assert "your encode first differed from the library's at iteration 0, image 0" in out
    assert ch12.check_same_run(library, library[:1], variant) is False
    assert "the runs have 2 and 1 iterations" in capsys.readouterr().out


def test_same_detections(capsys):
    loc, conf, priors = network_outputs(3)
    want = [detect_image(loc, conf, priors, DetectConfig())]
    watched = ch12.watch(nms=MINE["nms"])
    with use_learner_functions(**watched):
        got = [detect_image(loc, conf, priors, DetectConfig())]
    assert ch12.check_same_detections(want, got, watched) is True
    assert watched.first is None and watched.calls["nms"] == 3
    wrong = ch12.watch(nms=lambda b, s, t: MINE["nms"](b, s, t)[1:])  # loses its best box
    with use_learner_functions(**wrong):
        got = [detect_image(loc, conf, priors, DetectConfig())]
    capsys.readouterr()
    assert ch12.check_same_detections(want, got, wrong) is False
    out = capsys.readouterr().out
    assert "test image 0" in out and "your nms first differed from the library's at call 0" in out


def test_the_full_recipe_command_on_a_tiny_recipe(tmp_path, capsys):
    path = ch12.save_functions(tmp_path / "mine.py", *MINE.values())
    assert set(ch12.load_functions(path)) == set(SLOTS)
    status = ch12.main([str(path), "--out", str(tmp_path / "runs"), "--compare",
                        "--iterations", "2", "--train-images", "8", "--test-images", "4",
                        "--batch-size", "4", "--workers", "0", "--pictures", "0"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "every call of your functions agreed with the library" in out, out
    assert "the same loss, parts and positives at every iteration, and the same mAP" in out, out
