"""Chapter 07 (non-maximum suppression and the detection path): checkers.

``check_nms(fn)`` holds the learner's ``fn(boxes, scores, iou_threshold)`` to
``minissd.boxes.nms_reference`` on hand-made cases (empty input, one box, identical boxes,
equal scores, an IoU exactly at the threshold, disjoint boxes) and on drawn clusters of boxes.

``check_detect(fn, outputs, priors)`` holds the learner's detection path
``fn(loc (P, 4), conf (P, C), priors (P, 4)) -> (boxes, labels, scores)`` (softmax, decode,
score threshold, per-class NMS, the per-class and per-image top-k) to
``minissd.ssd.detect.detect_image`` with the paper's ``DetectConfig``, first on made-up outputs
that isolate one rule each, then on ``outputs``, a network's real ``(loc, conf)`` pairs. When
the learner's detections differ, the checker tries the library with one rule left out (no clip,
no per-class cut, no per-image cut, ...) and names the rule when that reproduces them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from minissd.boxes import nms_reference
from minissd.priors import SSD_VARIANCES
from minissd.ssd.detect import detect_image
from minissd.ssd.model import DetectConfig

from . import run_safely, verdict

WHAT = "greedy NMS matches minissd.boxes.nms_reference"


def _cases():
    """``(name, boxes (K, 4), scores (K,), iou_threshold, hint)``."""
    yield ("empty input", np.zeros((0, 4)), np.zeros(0), 0.5,
           "no boxes in, no indices out: return an empty int64 array")
    yield ("one box", np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([0.3]), 0.5,
           "a single box is always kept")
    yield ("two overlapping boxes", np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]]),
           np.array([0.6, 0.9]), 0.5,
           "walk the boxes by descending score: the higher-scored box 1 comes first and "
           "suppresses box 0 (IoU 0.68 > 0.5)")
    yield ("disjoint boxes are all kept",
           np.array([[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0]]),
           np.array([0.2, 0.9, 0.5]), 0.3,
           "boxes that do not overlap never suppress each other; return them by descending "
           "score")
    yield ("identical boxes with equal scores: the lower index wins",
           np.array([[1.0, 1.0, 5.0, 5.0]] * 4), np.array([0.7, 0.7, 0.7, 0.7]), 0.5,
           "rank with a stable sort on -score (np.argsort(-scores, kind='stable')): equal "
           "scores keep the lower index first, so index 0 is kept")
    yield ("IoU exactly at the threshold is NOT suppressed",
           np.array([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]]),  # IoU = 1/3
           np.array([0.9, 0.8]), 1.0 / 3.0,
           "suppress only when IoU is strictly greater than the threshold (IoU > t, not >=)")
    yield ("a suppressed box suppresses nothing",
           np.array([[0.0, 0.0, 10.0, 10.0], [3.0, 0.0, 13.0, 10.0], [6.0, 0.0, 16.0, 10.0]]),
           np.array([0.9, 0.8, 0.7]), 0.5,
           "compare each candidate only with the boxes already KEPT: box 1 is suppressed by "
           "box 0, so box 2 (IoU 0.25 with box 0) survives")
    yield ("zero-area boxes", np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0],
                                        [0.0, 0.0, 2.0, 2.0]]),
           np.array([0.5, 0.4, 0.3]), 0.0,
           "an empty box has IoU 0 with everything (union 0 -> IoU 0, never NaN)")
    rng = np.random.default_rng(7)
    for k in range(150):
        n = int(rng.integers(1, 40))
        centres = rng.uniform(0, 100, (int(rng.integers(1, 5)), 2))
        c = centres[rng.integers(len(centres), size=n)] + rng.normal(0, 6, (n, 2))
        wh = rng.uniform(5, 30, (n, 2))
        boxes = np.round(np.concatenate([c - wh / 2, c + wh / 2], axis=1), 1)
        scores = np.round(rng.random(n), 1)  # rounded: many ties
        if k % 5 == 0:
            boxes[rng.integers(n)] = boxes[0]  # an exact duplicate
        yield (f"drawn boxes #{k} ({n} boxes)", boxes, scores,
               float(rng.choice([0.0, 0.3, 0.45, 0.5, 0.7, 1.0])), "")


def nms_difference(got, want) -> str:
    """Where the learner's kept indices ``got`` first differ from the reference's ``want``."""
    got, want = np.asarray(got).reshape(-1), np.asarray(want).reshape(-1)
    where = next((j for j in range(min(len(got), len(want))) if got[j] != want[j]), None)
    if where is not None:
        return (f"kept position {where}: you keep box {int(got[where])}, the reference "
                f"keeps box {int(want[where])} (reference: {want.tolist()[:12]}"
                f"{' ...' if len(want) > 12 else ''})")
    if len(got) > len(want):
        return (f"you keep {len(got)} boxes, the reference {len(want)}: box "
                f"{int(got[len(want)])} should have been suppressed")
    return (f"you keep {len(got)} boxes, the reference {len(want)}: box "
            f"{int(want[len(got)])} is missing")


def check_nms(fn) -> bool:
    """``fn(boxes (K, 4) corners, scores (K,), iou_threshold) -> (k,) int indices`` of the kept
    boxes, by descending score."""
    for name, boxes, scores, thr, hint in _cases():
        ok, got = run_safely(f"{WHAT} [case '{name}']", fn, boxes.copy(), scores.copy(), thr)
        if not ok:
            return False
        want = nms_reference(boxes, scores, thr)
        if got is None:
            return verdict(False, WHAT, f"case '{name}': returned None; return an array of "
                                        f"indices (empty when nothing is kept)" + f"; {hint}")
        got = np.asarray(got).reshape(-1)
        if got.size and got.dtype.kind not in "iu":
            return verdict(False, WHAT, f"case '{name}': returned dtype {got.dtype}; return "
                                        f"integer indices into boxes, not a mask or scores")
        if got.tolist() == want.tolist():
            continue
        detail = nms_difference(got, want)
        return verdict(False, WHAT, f"case '{name}', threshold {thr:g}: {detail}"
                                    + (f"; {hint}" if hint else ""))
    return verdict(True, WHAT + " on 158 cases (empty, identical boxes, ties, IoU at the "
                                "threshold, drawn clusters)")


# ---------------------------------------------------------------------- the detection path

DETECT_WHAT = "detect gives the detections of minissd.ssd.detect.detect_image"

#: Library variants with one rule changed, tried in this order to name the learner's mistake.
_VARIANTS = (
    ("no_clip", "clip the decoded boxes to [0, 1] before NMS (np.clip(boxes, 0, 1)): the "
                "library clips, and NMS sees the clipped boxes"),
    ("no_keep_top_k", "keep at most the keep_top_k = 200 best detections of the image, over "
                      "all classes, after NMS"),
    ("no_pre_nms_top_k", "cut each class to its pre_nms_top_k = 400 best-scored candidates "
                         "BEFORE its NMS (Caffe's top_k)"),
    ("labels_from_1", "labels are 0-based object classes: column c of conf (c >= 1) is label "
                      "c - 1, and column 0, the background, is never reported"),
)


def _library(loc, conf, priors, variant=None):
    config = DetectConfig()
    clip = True
    if variant == "no_clip":
        clip = False
    elif variant == "no_keep_top_k":
        config = replace(config, keep_top_k=10**9)
    elif variant == "no_pre_nms_top_k":
        config = replace(config, pre_nms_top_k=10**9)
    d = detect_image(loc, conf, priors, config, SSD_VARIANCES, clip=clip)
    labels = d.labels + 1 if variant == "labels_from_1" else d.labels
    return d.boxes, labels, d.scores


def _same(got, want):
    (gb, gl, gs), (wb, wl, ws) = got, want
    return (gb.shape == wb.shape and gl.shape == wl.shape and gs.shape == ws.shape
            and np.array_equal(gl, wl) and np.allclose(gs, ws, rtol=1e-9, atol=1e-12)
            and np.allclose(gb, wb, rtol=1e-9, atol=1e-12))


def _as_detections(out):
    """The learner's ``(boxes, labels, scores)`` as arrays, or a message."""
    if not (isinstance(out, tuple | list) and len(out) == 3):
        return None, "return a tuple (boxes (D, 4), labels (D,), scores (D,))"
    boxes, labels, scores = (np.asarray(v) for v in out)
    boxes = boxes.reshape(-1, 4) if boxes.size == 0 else boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        return None, f"boxes must have shape (D, 4), got {boxes.shape}"
    if labels.shape != (len(boxes),) or scores.shape != (len(boxes),):
        return None, (f"boxes {boxes.shape}, labels {labels.shape} and scores {scores.shape} "
                      f"must describe the same D detections")
    if labels.size and labels.dtype.kind not in "iu":
        return None, f"labels must be integer classes, got dtype {labels.dtype}"
    return (boxes.astype(np.float64), labels.astype(np.int64), scores.astype(np.float64)), None


def _difference(got, want):
    (gb, gl, gs), (wb, wl, ws) = got, want
    if len(gs) != len(ws):
        head = f"you give {len(gs)} detections, the library {len(ws)}"
    else:
        head = f"{len(gs)} detections as the library"
    for d in range(min(len(gs), len(ws))):
        if gl[d] != wl[d] or not np.isclose(gs[d], ws[d], rtol=1e-9, atol=1e-12) \
                or not np.allclose(gb[d], wb[d], rtol=1e-9, atol=1e-12):
            return (f"{head}; detection {d} (by descending score) is label {int(gl[d])}, score "
                    f"{gs[d]:.6g}, box {np.round(gb[d], 4).tolist()}; the library's is label "
                    f"{int(wl[d])}, score {ws[d]:.6g}, box {np.round(wb[d], 4).tolist()}")
    return f"{head}; the first {min(len(gs), len(ws))} agree"


def _shape_of_difference(got, want):
    """A pointer when the detections differ only in their scores, or only in their order."""
    (gb, gl, gs), (wb, wl, ws) = got, want
    if len(gs) != len(ws):
        return None
    if np.array_equal(gl, wl) and np.allclose(gb, wb, rtol=1e-9, atol=1e-12):
        return ("the same boxes and classes with other scores: a box's scores are the softmax "
                "of its row of conf (column 0, the background, included), exp(c) / sum exp(c)")

    def keyed(d):
        order = np.lexsort((d[2], d[1]))
        return d[1][order], d[2][order], d[0][order]

    (a, b, c), (x, y, z) = keyed(got), keyed(want)
    if np.array_equal(a, x) and np.allclose(b, y, rtol=1e-9, atol=1e-12) \
            and np.allclose(c, z, rtol=1e-9, atol=1e-12):
        return ("the right detections in another order: return them by descending score, "
                "with a stable sort over the candidates listed class by class, box by box")
    return None


def _made_up_cases():
    """``(name, loc (P, 4), conf (P, C), priors (P, 4), hint)``: one rule each."""
    square = np.array([[0.5, 0.5, 0.2, 0.2]])
    grid = np.array([[(i + 0.5) / 30, (j + 0.5) / 30, 0.02, 0.02]
                     for j in range(30) for i in range(30)])  # 900 disjoint boxes
    background = np.zeros((3, 4))
    background[:, 0] = 12.0
    yield ("no class scores above the threshold", np.zeros((3, 4)), background,
           np.repeat(square, 3, axis=0),
           "nothing above score_threshold: return empty arrays (0, 4), (0,), (0,)")
    conf = np.zeros((2, 3))
    conf[0, 1], conf[1, 2] = 6.0, 6.0
    yield ("two classes on the same box: NMS runs per class", np.zeros((2, 4)), conf,
           np.repeat(square, 2, axis=0),
           "suppress only within a class: a box of class 1 never removes a box of class 2")
    conf = np.zeros((3, 2))
    conf[:, 1] = [5.0, 4.0, 3.0]
    yield ("duplicates of one class are suppressed", np.zeros((3, 4)), conf,
           np.repeat(square, 3, axis=0),
           "softmax over each row of conf, then greedy NMS at nms_threshold (0.45) on the "
           "class's candidates")
    loc = np.array([[1.0, -2.0, 0.5, -0.5]])
    conf = np.array([[0.0, 3.0]])
    yield ("offsets are decoded with the variances", loc, conf, square,
           "decode the offsets against the default boxes with the variances (0.1, 0.1, 0.2, "
           "0.2): minissd.boxes.decode(loc, priors, variances)")
    yield ("a box reaching out of the image is clipped", np.zeros((1, 4)), conf,
           np.array([[0.95, 0.5, 0.3, 0.3]]),
           "clip the decoded boxes to [0, 1] (np.clip(boxes, 0, 1))")
    conf = np.zeros((900, 4))
    conf[:, 1:] = np.linspace(3.0, 1.0, 900)[:, None] + np.array([0.0, 0.1, 0.2])
    yield ("900 disjoint boxes in 3 classes: the image's 200 best", np.zeros((900, 4)), conf,
           grid, "after NMS keep the keep_top_k = 200 best detections over all classes")
    priors = np.concatenate([np.repeat(square, 400, axis=0), grid[:300]])
    conf = np.zeros((700, 2))
    conf[:, 1] = np.linspace(4.0, 1.0, 700)  # the 400 duplicates score highest
    yield ("a class's 400 best before its NMS", np.zeros((700, 4)), conf, priors,
           "cut each class to its pre_nms_top_k = 400 best candidates before NMS: here they "
           "are 400 copies of one box, so the class keeps one detection")
    conf = np.zeros((4, 3))
    conf[:, 1] = 2.0
    conf[:, 2] = 2.0
    yield ("equal scores: the lower class, then the lower box first", np.zeros((4, 4)), conf,
           np.array([[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1], [0.2, 0.8, 0.1, 0.1],
                     [0.8, 0.2, 0.1, 0.1]]),
           "order the detections by descending score with a stable sort over candidates "
           "listed class by class, box by box")


def check_detect(fn, outputs=(), priors=None) -> bool:
    """``fn(loc (P, 4), conf (P, C), priors (P, 4)) -> (boxes (D, 4) normalised corners,
    labels (D,) 0-based classes, scores (D,))`` by descending score, with the paper's numbers
    (score > 0.01, 400 per class, NMS 0.45 per class, 200 per image). ``outputs``: real
    ``(loc, conf)`` pairs of one image each, for the default boxes ``priors``."""
    cases = list(_made_up_cases())
    cases += [(f"the network's outputs on image {k}", np.asarray(loc, dtype=np.float64),
               np.asarray(conf, dtype=np.float64), np.asarray(priors, dtype=np.float64), "")
              for k, (loc, conf) in enumerate(outputs)]
    for name, loc, conf, pri, hint in cases:
        ok, out = run_safely(f"{DETECT_WHAT} [case '{name}']", fn, loc.copy(), conf.copy(),
                             pri.copy())
        if not ok:
            return False
        got, problem = _as_detections(out)
        if problem:
            return verdict(False, DETECT_WHAT, f"on {name}: {problem}")
        labels = got[1]
        if labels.size and (labels.min() < 0 or labels.max() > conf.shape[1] - 2):
            return verdict(False, DETECT_WHAT, (
                f"on {name}: label {int(labels.min() if labels.min() < 0 else labels.max())} "
                f"is not an object class 0..{conf.shape[1] - 2}: labels are 0-based object "
                f"classes, column c >= 1 of conf is label c - 1, and column 0, the background, "
                f"is never reported"))
        want = _library(loc, conf, pri)
        if _same(got, want):
            continue
        named = next((why for variant, why in _VARIANTS
                      if _same(got, _library(loc, conf, pri, variant))), None)
        why = named or _shape_of_difference(got, want) or hint or (
            "softmax, decode, clip, score > 0.01, per class the 400 best then NMS at 0.45, "
            "the 200 best of the image")
        return verdict(False, DETECT_WHAT, f"on {name}: {_difference(got, want)}; {why}")
    return verdict(True, DETECT_WHAT + f" ({len(cases) - len(outputs)} made-up outputs, one "
                                       f"rule each, and {len(outputs)} images of the network)")
