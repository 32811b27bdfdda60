"""The checkers written for the algorithms the chapters now write out: ``match`` (chapter 05),
the detection path ``detect`` (chapter 07) and one training iteration ``train_step`` (chapter
08). Each passes the worked solution and fails planted wrong answers with a pointer, printing
one ``NOT YET`` line and never raising.
"""

from pathlib import Path

import numpy as np
import pytest

from minissd import boxes as B
from minissd.exercises import ch05_matching as ch05
from minissd.exercises import ch07_nms as ch07
from minissd.exercises import ch08_train as ch08

SOLUTIONS = Path(__file__).resolve().parents[1] / "chapters" / "solutions"


def solutions(stem, **notebook_globals):
    """The functions of a solution file, run with the names the notebook has defined."""
    namespace = {"np": np, **notebook_globals}
    path = SOLUTIONS / f"{stem}.py"
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


S5 = solutions("05_matching_encoding")
S7 = solutions("07_nms_kernels", B=B)


def passes(check, fn, capsys, *args):
    ok = check(fn, *args)
    out = capsys.readouterr().out
    assert ok is True, out
    assert out.startswith("PASS: ") and "NOT YET" not in out, out
    return out


def fails(check, fn, capsys, *pointer, args=()):
    ok = check(fn, *args)
    out = capsys.readouterr().out
    assert ok is False, out
    assert out.startswith("NOT YET: ") and out.count("\n") == 1 and " -- " in out, out
    for words in pointer:
        assert words in out, out
    return out


def not_implemented(*args, **kwargs):
    raise NotImplementedError("fill this in")


# ------------------------------------------------------------------------- 05 match

def match_last_writer_wins(overlaps, threshold):  # ssd.pytorch #354, torchvision's SSDMatcher
    overlaps = np.asarray(overlaps, dtype=np.float64)
    gt_index = np.full(overlaps.shape[1], -1)
    if not overlaps.shape[0]:
        return gt_index
    best_gt, best_iou = overlaps.argmax(0), overlaps.max(0)
    gt_index[best_iou >= threshold] = best_gt[best_iou >= threshold]
    for j, p in enumerate(overlaps.argmax(1)):
        gt_index[p] = j
    return gt_index


def match_threshold_only(overlaps, threshold):
    overlaps = np.asarray(overlaps, dtype=np.float64)
    gt_index = np.full(overlaps.shape[1], -1)
    if overlaps.shape[0]:
        take = overlaps.max(0) >= threshold
        gt_index[take] = overlaps.argmax(0)[take]
    return gt_index


def match_strict_threshold(overlaps, threshold):
    gt_index = S5["match"](overlaps, threshold)
    overlaps = np.asarray(overlaps)
    if overlaps.shape[0]:
        at = (overlaps.max(0) == threshold) & (S5["match"](overlaps, 1.0) < 0)
        gt_index[at] = -1
    return gt_index


def match_counts_zero_iou(overlaps, threshold):  # no "IoU > 0" in the bipartite step
    overlaps = np.asarray(overlaps, dtype=np.float64)
    gt_index = np.full(overlaps.shape[1], -1, dtype=np.int64)
    free = overlaps.copy()
    for _ in range(min(overlaps.shape)):
        j, i = np.unravel_index(np.argmax(free.T).__index__(), free.T.shape)[::-1]
        j, i = int(j), int(i)
        gt_index[i] = j
        free[j, :], free[:, i] = -1, -1
    if overlaps.shape[0]:
        take = (gt_index < 0) & (overlaps.max(0) >= threshold) & (overlaps.max(0) > 0)
        gt_index[take] = overlaps.argmax(0)[take]
    return gt_index


def match_by_gt_order(overlaps, threshold):  # each gt in turn takes its best free box
    overlaps = np.asarray(overlaps, dtype=np.float64)
    gt_index = np.full(overlaps.shape[1], -1, dtype=np.int64)
    free = overlaps.copy()
    for j in range(overlaps.shape[0]):
        if free[j].max() > 0:
            i = int(free[j].argmax())
            gt_index[i] = j
            free[:, i] = -1
    if overlaps.shape[0]:
        take = (gt_index < 0) & (overlaps.max(0) >= threshold) & (overlaps.max(0) > 0)
        gt_index[take] = overlaps.argmax(0)[take]
    return gt_index


def match_ties_to_the_last_box(overlaps, threshold):
    overlaps = np.asarray(overlaps, dtype=np.float64)
    flipped = S5["match"](overlaps[:, ::-1], threshold)[::-1]
    return flipped


def match_crashes_without_gt(overlaps, threshold):
    overlaps = np.asarray(overlaps)
    overlaps.argmax(axis=0)  # ValueError on an empty axis
    return S5["match"](overlaps, threshold)


def match_returns_a_mask(overlaps, threshold):
    return S5["match"](overlaps, threshold) >= 0


def test_ch05_match_solution_passes(capsys):
    out = passes(ch05.check_match, S5["match"], capsys)
    assert "150 drawn" in out


@pytest.mark.parametrize("wrong, pointer", [
    (match_last_writer_wins, ["share a best default box", "ssd.pytorch #354"]),
    (match_threshold_only, ["best IoU below the threshold", "the bipartite step gives it"]),
    (match_strict_threshold, ["IoU >= threshold", "0.5 included"]),
    (match_counts_zero_iou, ["zero-area", "IoU > 0"]),
    (match_by_gt_order, ["the largest IoU first"]),
    (match_ties_to_the_last_box, ["ties"]),
    (match_crashes_without_gt, ["no ground truth", "raised ValueError"]),
    (match_returns_a_mask, ["dtype bool", "integer"]),
    (not_implemented, ["NotImplementedError"]),
])
def test_ch05_match_wrong_answers_fail(capsys, wrong, pointer):
    fails(ch05.check_match, wrong, capsys, *pointer)


def test_ch05_match_drawn_boxes_find_a_duplicate_bug(capsys):
    def match_loses_duplicates(overlaps, threshold):  # right on every named matrix
        gt_index = S5["match"](overlaps, threshold)
        overlaps = np.asarray(overlaps)
        for k in range(1, len(overlaps)):
            for j in range(k):
                if np.array_equal(overlaps[j], overlaps[k]):
                    gt_index[gt_index == k] = -1  # the second copy is lost
        return gt_index

    out = fails(ch05.check_match, match_loses_duplicates, capsys, "ground truths [[",
                "in 1/8 of the image", "the checker's 48 default boxes")
    assert "expected 1" in out or "expected 2" in out or "expected 3" in out, out


# ------------------------------------------------------------------------- 07 detect

def _outputs(seed, num_classes=4):
    """Network-like outputs for the small model's default boxes (many candidates per class)."""
    from minissd.priors import make_priors
    from minissd.ssd.model import ssd_small

    priors = make_priors(ssd_small(num_classes).priors)
    rng = np.random.default_rng(seed)
    loc = rng.normal(0, 0.5, (len(priors), 4))
    conf = rng.normal(0, 1.5, (len(priors), num_classes))
    conf[:, 0] += 3.0
    return [(loc, conf)], priors


OUTPUTS, PRIORS = _outputs(0)


def _detect(loc, conf, priors, *, clip=True, keep_top_k=200, pre_nms_top_k=400, softmax=True,
            label_offset=1, per_class=True, by_score=True, first_class=1):
    z = conf - conf.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True) if softmax else conf
    decoded = B.decode(loc, priors)
    if clip:
        decoded = np.clip(decoded, 0, 1)
    found = []
    if per_class:
        groups = [(c, np.flatnonzero(probs[:, c] > 0.01)) for c in range(first_class,
                                                                        conf.shape[1])]
    else:  # one NMS over all classes: each box with its best object class
        best = probs[:, 1:].argmax(1) + 1
        groups = [(None, np.flatnonzero(probs[np.arange(len(best)), best] > 0.01))]
    for c, cand in groups:
        cls = np.full(len(cand), c) if c is not None else best[cand]
        score = probs[cand, cls]
        order = np.argsort(-score, kind="stable")[:pre_nms_top_k]
        cand, cls, score = cand[order], cls[order], score[order]
        keep = S7["greedy_nms"](decoded[cand], score, 0.45)
        keep = np.sort(keep)
        keep = keep[np.argsort(cand[keep], kind="stable")]
        found += [(decoded[cand[k]], cls[k] - label_offset, score[k]) for k in keep]
    if not found:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0)
    boxes_, labels, scores = (np.array(v) for v in zip(*found))
    order = np.argsort(-scores, kind="stable")[:keep_top_k]
    if not by_score:  # the right 200, in the order they were found
        order = np.sort(order)
    return boxes_[order], labels[order].astype(np.int64), scores[order]


def test_ch07_detect_solution_passes(capsys):
    out = passes(ch07.check_detect, S7["detect"], capsys, OUTPUTS, PRIORS)
    assert "1 images of the network" in out


def test_ch07_detect_reference_copy_passes(capsys):
    passes(ch07.check_detect, _detect, capsys, OUTPUTS, PRIORS)


@pytest.mark.parametrize("options, pointer", [
    (dict(clip=False), ["clip"]),
    (dict(keep_top_k=10**9), ["keep_top_k = 200"]),
    (dict(pre_nms_top_k=10**9), ["pre_nms_top_k = 400", "BEFORE"]),
    (dict(label_offset=0), ["0-based"]),
    (dict(softmax=False), ["softmax"]),
    (dict(per_class=False), ["within a class"]),
    (dict(by_score=False), ["descending score"]),
    (dict(first_class=0), ["background"]),
])
def test_ch07_detect_wrong_answers_fail(capsys, options, pointer):
    fails(ch07.check_detect, lambda loc, conf, priors: _detect(loc, conf, priors, **options),
          capsys, *pointer, args=(OUTPUTS, PRIORS))


def test_ch07_detect_other_wrong_answers_fail(capsys):
    fails(ch07.check_detect, not_implemented, capsys, "NotImplementedError",
          args=(OUTPUTS, PRIORS))
    fails(ch07.check_detect, lambda *a: list(_detect(*a))[:2], capsys, "tuple (boxes",
          args=(OUTPUTS, PRIORS))


# ------------------------------------------------------------------------- 08 train_step

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from minissd.data import VOCDataset, make_synthetic_voc
    from minissd.train import TrainConfig

    root = tmp_path_factory.mktemp("ch08")
    names = make_synthetic_voc(root / "shapes", num_train=12, num_test=2, seed=0)
    dataset = VOCDataset(root / "shapes", "train", class_names=names)
    config = TrainConfig(model="small", class_names=names, iterations=10, batch_size=4,
                         optimizer="adam", lr=3e-3, weight_decay=0.0, warmup_iters=5,
                         milestones=(8,), augment=False, seed=0, device="cpu",
                         out_dir=str(root / "run"), progress=False)
    return config, dataset


def _step(model, optimizer, batch, priors, lr, *, set_lr=True, zero_grad=True, step=True,
          iou_threshold=None, returns="floats"):
    from minissd.autograd import Tensor
    from minissd.ssd.multibox_loss import build_targets, multibox_loss

    if set_lr:
        optimizer.lr = lr
    loc_t, labels = build_targets(batch.boxes, batch.labels, priors,
                                  iou_threshold or model.config.loss.iou_threshold,
                                  model.config.priors.variances)
    loc, conf = model(Tensor(np.asarray(batch.images, dtype=priors.dtype)))
    loss, loc_loss, conf_loss = multibox_loss(loc, conf, loc_t, labels, model.config.loss)
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    if step:
        optimizer.step()
    if returns == "tensors":
        return loss, loc_loss, conf_loss
    if returns == "dict":
        return {"loss": loss.item()}
    return loss.item(), loc_loss.item(), conf_loss.item()


def test_ch08_train_step_solution_passes(capsys, small_run):
    from minissd.autograd import Tensor
    from minissd.ssd.multibox_loss import build_targets, multibox_loss

    fn = solutions("08_training", Tensor=Tensor, build_targets=build_targets,
                   multibox_loss=multibox_loss, xp=np)["train_step"]
    passes(ch08.check_train_step, fn, capsys, *small_run)


def test_ch08_train_step_accepts_tensors(capsys, small_run):
    passes(ch08.check_train_step, lambda *a: _step(*a, returns="tensors"), capsys, *small_run)


@pytest.mark.parametrize("options, pointer", [
    (dict(zero_grad=False), ["iteration 2", "zero_grad"]),
    (dict(set_lr=False), ["iteration 1", "optimizer.lr = lr"]),
    (dict(step=False), ["iteration 0", "optimizer.step()"]),
    (dict(iou_threshold=0.7), ["iteration 0", "before any update"]),
    (dict(returns="dict"), ["three numbers"]),
])
def test_ch08_train_step_wrong_answers_fail(capsys, small_run, options, pointer):
    fails(ch08.check_train_step, lambda *a: _step(*a, **options), capsys, *pointer,
          args=small_run)


def test_ch08_train_step_not_implemented_fails(capsys, small_run):
    fails(ch08.check_train_step, not_implemented, capsys, "NotImplementedError", args=small_run)
