"""Chapter 12 (your code in the loop): the learner's functions inside training and detection.

The switch itself is ``minissd.learner.use_learner_functions``; this module checks what it does:

``check_slots(dataset, config, iou=..., match=..., encode=..., hard_negatives=..., nms=...)``
holds each learner function to the library's, bit for bit, on the inputs the trainer gives it
(one real batch of float32 boxes, the model's float32 default boxes, a float32 loss), one
verdict per function: within rounding is not enough to reproduce a training run.

``watch(iou=..., ..., images_per_iteration=B)`` wraps the learner's functions for the switch:
each call runs the learner's function (its answer is the one the library uses) and also the
library's own on the same inputs, and remembers the first call where they differ, with where
(iteration and image, counting one matching per image with objects and one mining per
iteration) and why. ``check_same_run(library_rows, your_rows, watched)`` and
``check_same_detections(...)`` compare two runs and, when they differ, report that first call.

``python -m minissd.exercises.ch12_in_the_loop FUNCTIONS.py [--compare] [demo flags]`` runs
``minissd demo`` (its full recipe by default) with the functions defined in ``FUNCTIONS.py``
plugged in; ``--compare`` runs the library's demo too and compares the two, iteration by
iteration and in mAP. ``save_functions`` writes such a file from a notebook's functions.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import inspect
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..boxes import centre_to_corners, encode, iou, match_overlaps, nms_reference
from ..learner import SLOTS, use_learner_functions
from ..ssd.multibox_loss import build_targets, hard_negative_mask
from . import run_safely, verdict
from .ch05_matching import match_difference
from .ch07_nms import nms_difference

# ----------------------------------------------------------------- the library's answers

#: The library's function for each slot, called with the learner's arguments.
REFERENCES = {
    "iou": lambda a, b: np.asarray(iou(a, b)),
    "match": lambda overlaps, threshold: np.asarray(match_overlaps(overlaps, threshold)),
    "encode": lambda matched, priors, variances: np.asarray(encode(matched, priors, variances)),
    "hard_negatives": lambda conf_loss, labels, ratio: np.asarray(
        hard_negative_mask(conf_loss, labels, ratio)),
    "nms": lambda boxes, scores, threshold: nms_reference(boxes, scores, threshold),
}


def _array(out, dtype=None):
    out = np.asarray(out)
    return out if dtype is None or out.dtype.kind not in "fiub" else out.astype(dtype)


def _difference_iou(got, want, args):
    raw = np.asarray(got)
    if raw.shape != want.shape:
        return f"your iou returned shape {raw.shape}, the library's is {want.shape} (N, M)"
    as_library = _array(raw, want.dtype)  # the library rounds yours to its dtype
    bad = np.argwhere(~((as_library == want) | (np.isnan(as_library) & np.isnan(want))))
    if not bad.size:
        return None
    i, j = (int(v) for v in bad[0])
    a, b = args
    why = ("the union is 0 there: the IoU is 0, not NaN" if np.isnan(as_library[i, j]) else
           "the library's kernel computes the IoU in float64 and rounds it once to "
           f"{want.dtype}; yours is computed in {raw.dtype}: compute in float64"
           if raw.dtype.itemsize < 8 and np.isclose(as_library[i, j], want[i, j], rtol=1e-5)
           else "clamp each side at 0; IoU = inter / (area a + area b - inter)")
    return (f"IoU[{i}, {j}] of {np.asarray(a)[i].tolist()} and {np.asarray(b)[j].tolist()} is "
            f"{float(as_library[i, j])!r} in yours, {float(want[i, j])!r} in the library's "
            f"({why})")


def _difference_match(got, want, args):
    overlaps, _ = args
    return match_difference("this image's IoU matrix", np.asarray(got), want,
                            np.asarray(overlaps, dtype=np.float64))


def _difference_encode(got, want, args):
    raw = np.asarray(got)
    if raw.shape != want.shape:
        return f"your encode returned shape {raw.shape}, the library's is {want.shape} (K, 4)"
    priors = args[1]
    as_library = _array(raw, priors.dtype)  # the library keeps targets in the priors' dtype
    bad = np.argwhere(as_library != want)
    if not bad.size:
        return None
    k, c = (int(v) for v in bad[0])
    if np.allclose(as_library, want, rtol=1e-5, atol=1e-6):
        largest = float(np.abs(as_library.astype(np.float64) - want).max())
        return (f"equal to within rounding, not bit for bit (largest difference {largest:.2g}, "
                f"first at matched box {k}, component {c}): the library computes in the "
                f"inputs' dtype, {priors.dtype} here, and yours in {raw.dtype}; make every "
                f"array of the formula {priors.dtype}, the variances too "
                f"(np.asarray(variances, dtype=priors.dtype))")
    return (f"matched box {k}, component {c} is {float(as_library[k, c]):.6g}, the library's "
            f"{float(want[k, c]):.6g} (t_cx, t_cy, t_w, t_h: chapter 05's formulas)")


def _difference_hard_negatives(got, want, args):
    got = np.asarray(got)
    if got.shape != want.shape or got.dtype != np.bool_:
        return (f"your hard_negatives returned {got.dtype} {got.shape}, the library's bool "
                f"{want.shape}")
    bad = np.argwhere(got != want)
    if not bad.size:
        return None
    n, p = (int(v) for v in bad[0])
    labels = np.asarray(args[1])
    positives = int((labels[n] > 0).sum())
    return (f"image {n}, default box {p} (label {int(labels[n, p])}, loss "
            f"{float(np.asarray(args[0])[n, p]):.6g}): yours {bool(got[n, p])}, the library's "
            f"{bool(want[n, p])}; the image has {positives} positives, you select "
            f"{int(got[n].sum())} boxes, the library {int(want[n].sum())} (chapter 06's rules)")


def _difference_nms(got, want, args):
    got = np.asarray(got).reshape(-1)
    if got.tolist() == want.tolist():
        return None
    return nms_difference(got, want) + f" (threshold {args[2]})"


DIFFERENCES = {"iou": _difference_iou, "match": _difference_match, "encode": _difference_encode,
               "hard_negatives": _difference_hard_negatives, "nms": _difference_nms}


# ---------------------------------------------------------------------------- watching

class Watched(dict):
    """The learner's functions, each wrapped to compare itself with the library on every call;
    a mapping slot -> wrapped function, for ``use_learner_functions(**watched)``.

    ``calls``: how often each slot was called; ``first``: ``(slot, where, why)`` of the first
    call whose answer differed from the library's, or None.
    """

    def __init__(self, functions, images_per_iteration=None):
        unknown = sorted(set(functions) - set(SLOTS))
        if unknown:
            raise TypeError(f"watch: unknown slot(s) {', '.join(unknown)}; the slots are "
                            f"{', '.join(SLOTS)}")
        super().__init__({name: self._wrap(name, fn) for name, fn in functions.items()
                          if fn is not None})
        self.images_per_iteration = images_per_iteration
        self.calls = Counter()
        self.first = None

    def _where(self, name, k):
        per = self.images_per_iteration
        if name in ("iou", "match", "encode") and per:
            return f"iteration {k // per}, image {k % per}"
        if name == "hard_negatives":
            return f"iteration {k}"
        if name == "nms":
            return f"call {k} (one class of one image)"
        return f"call {k}"

    def _wrap(self, name, fn):
        reference, difference = REFERENCES[name], DIFFERENCES[name]

        def watched(*args):
            k = self.calls[name]
            self.calls[name] += 1
            mine = [np.array(a) if isinstance(a, np.ndarray) else a for a in args]
            out = fn(*args)
            if self.first is None:
                try:
                    why = difference(out, reference(*mine), mine)
                except Exception as exc:  # noqa: BLE001 - an odd answer: say so, keep training
                    why = f"its answer could not be compared ({type(exc).__name__}: {exc})"
                if why:
                    self.first = (name, self._where(name, k), why)
            return out

        watched.__name__ = getattr(fn, "__name__", name)
        watched.__wrapped__ = fn
        return watched

    def report(self) -> str:
        if self.first is None:
            calls = ", ".join(f"{n} {c}" for n, c in self.calls.items())
            return f"every call of your functions agreed with the library ({calls} calls)"
        name, where, why = self.first
        return f"your {name} first differed from the library's at {where}: {why}"


def watch(images_per_iteration=None, **functions) -> Watched:
    """``Watched`` wrappers of the learner's functions (slot names as keywords)."""
    return Watched(functions, images_per_iteration)


# ------------------------------------------------------------------------- the checks

def _one_batch(dataset, config):
    """The trainer's first batch and the model's default boxes."""
    from .ch08_train import trainer_start

    _, _, _, loader, priors = trainer_start(config, dataset)
    with loader:
        return next(loader.forever(start_epoch=0)), priors


def _slot_problems(name, fn, batch, priors, config):
    """Yield ``(args, where)`` problems for a slot, from the trainer's real inputs."""
    corners = centre_to_corners(priors)
    rng = np.random.default_rng(12)
    if name in ("iou", "match", "encode"):
        for b, gt in enumerate(batch.boxes):
            if name == "iou":
                yield (gt.copy(), corners.copy()), f"image {b} of the first batch"
                continue
            overlaps = np.asarray(iou(gt, corners))
            if name == "match":
                yield (overlaps, 0.5), f"image {b} of the first batch"
                continue
            gt_index = np.asarray(match_overlaps(overlaps, 0.5))
            positive = np.flatnonzero(gt_index >= 0)
            yield ((gt[gt_index[positive]].astype(priors.dtype), priors[positive].copy(),
                    (0.1, 0.1, 0.2, 0.2)), f"the matched boxes of image {b}")
    elif name == "hard_negatives":
        _, labels = build_targets(batch.boxes, batch.labels, priors)
        for k in range(3):
            loss = rng.gamma(1.0, 1.0, labels.shape).astype(np.float32)
            if k:  # ties, as a float32 loss has them
                loss = np.round(loss, k).astype(np.float32)
            yield (loss, labels.copy(), 3), f"the first batch's labels, drawn losses #{k}"
    elif name == "nms":
        boxes = corners.astype(np.float64)[rng.choice(len(corners), 400, replace=False)]
        for k, threshold in enumerate((0.45, 0.3, 0.7)):
            scores = np.round(rng.random(len(boxes)), 2)  # ties
            yield (boxes.copy(), scores, threshold), f"400 default boxes, drawn scores #{k}"


def check_slots(dataset, config, **functions) -> bool:
    """Each learner function (slot names as keywords) against the library's, bit for bit, on the
    trainer's inputs; one verdict per function. Returns True when all pass."""
    unknown = sorted(set(functions) - set(SLOTS))
    if unknown:
        raise TypeError(f"check_slots: unknown slot(s) {', '.join(unknown)}")
    batch, priors = _one_batch(dataset, config)
    results = []
    for name, fn in functions.items():
        what = f"your {name} gives the library's answer, bit for bit, on the trainer's inputs"
        message = None
        for args, where in _slot_problems(name, fn, batch, priors, config):
            copies = [np.array(a) if isinstance(a, np.ndarray) else a for a in args]
            ok, out = run_safely(f"{what} [{where}]", fn, *copies)
            if not ok:
                message = False
                break
            try:
                message = DIFFERENCES[name](out, REFERENCES[name](*args), args)
            except Exception as exc:  # noqa: BLE001
                message = f"its answer could not be compared ({type(exc).__name__}: {exc})"
            if message:
                message = f"on {where}: {message}"
                break
        if message is False:
            results.append(False)
        else:
            results.append(verdict(not message, what, message or ""))
    return all(results)


_ROW_KEYS = ("loss", "loc_loss", "conf_loss", "positives")


def check_same_run(library_rows, your_rows, watched: Watched | None = None) -> bool:
    """The two runs' metric rows equal at every iteration (loss, its parts, positives)."""
    what = "your functions train to the library's numbers, iteration by iteration"
    if len(library_rows) != len(your_rows):
        return verdict(False, what, f"the runs have {len(library_rows)} and {len(your_rows)} "
                                    f"iterations; compare runs of the same config")
    for mine, theirs in zip(your_rows, library_rows):
        diff = [k for k in _ROW_KEYS if float(mine[k]) != float(theirs[k])]
        if diff:
            it = int(theirs["iteration"])
            table = ", ".join(f"{k} {float(mine[k]):.9g} (library {float(theirs[k]):.9g})"
                              for k in diff)
            cause = watched.report() if watched is not None else ""
            return verdict(False, what, f"iteration {it}: {table}"
                                        + (f"; {cause}" if cause else ""))
    return verdict(True, what + f" (loss, L_loc, L_conf and positives equal at all "
                                f"{len(library_rows)} iterations, bit for bit)")


def check_same_detections(library_dets, your_dets, watched: Watched | None = None) -> bool:
    """The two lists of per-image ``Detections`` equal, box for box."""
    what = "your NMS gives the library's detections on every test image"
    if len(library_dets) != len(your_dets):
        return verdict(False, what, f"{len(your_dets)} images, the library {len(library_dets)}")
    for k, (mine, theirs) in enumerate(zip(your_dets, library_dets)):
        same = (len(mine) == len(theirs) and np.array_equal(mine.boxes, theirs.boxes)
                and np.array_equal(mine.labels, theirs.labels)
                and np.array_equal(mine.scores, theirs.scores))
        if not same:
            cause = watched.report() if watched is not None else ""
            return verdict(False, what, f"test image {k}: {len(mine)} detections, the library "
                                        f"{len(theirs)}" + (f"; {cause}" if cause else ""))
    total = sum(len(d) for d in library_dets)
    return verdict(True, what + f" ({len(library_dets)} images, {total} detections)")


# ------------------------------------------------------------------- the full recipe

def save_functions(path, *functions) -> Path:
    """Write the source of ``functions`` (defined in a notebook or a module) to ``path``, a
    module the command below can load; the functions may use ``np`` only."""
    parts = ['"""Functions for minissd.learner.use_learner_functions (written by '
             'save_functions)."""', "", "import numpy as np", ""]
    for fn in functions:
        fn = getattr(fn, "__wrapped__", fn)
        parts += ["", inspect.getsource(fn).rstrip(), ""]
    path = Path(path)
    path.write_text("\n".join(parts) + "\n")
    return path


#: The names a FUNCTIONS.py may define, per slot (the chapters' exercise names).
FILE_NAMES = {"iou": ("iou",), "match": ("match",), "encode": ("encode",),
              "hard_negatives": ("hard_negatives",), "nms": ("greedy_nms", "nms")}


def load_functions(path) -> dict:
    """The slot functions a Python file defines (``iou``, ``match``, ``encode``,
    ``hard_negatives``, ``greedy_nms`` or ``nms``); missing ones stay the library's."""
    spec = importlib.util.spec_from_file_location("learner_functions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = {}
    for slot, names in FILE_NAMES.items():
        for name in names:
            if callable(getattr(module, name, None)):
                found[slot] = getattr(module, name)
                break
    if not found:
        raise SystemExit(f"{path}: defines none of {', '.join(sum(FILE_NAMES.values(), ()))}")
    return found


def _demo(out, extra):
    from ..cli import main as minissd_main

    tic = time.perf_counter()
    status = minissd_main(["demo", "--out", str(out), *extra])
    if status:
        raise SystemExit(status)
    rows = list(csv.DictReader(open(Path(out) / "train" / "metrics.csv", newline="")))
    ap = json.loads((Path(out) / "ap.json").read_text())
    return rows, ap, time.perf_counter() - tic


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minissd.exercises.ch12_in_the_loop",
        description="Run `minissd demo` with your functions inside training and detection. "
                    "Other flags go to `minissd demo` (default: its full recipe).")
    parser.add_argument("functions", help="a .py file defining iou, match, encode, "
                                          "hard_negatives and greedy_nms (any of them)")
    parser.add_argument("--out", default="runs/your-code", help="output folder")
    parser.add_argument("--compare", action="store_true",
                        help="also run the library's demo (in OUT/library) and compare")
    args, extra = parser.parse_known_args(argv)
    functions = load_functions(args.functions)
    print(f"your functions: {', '.join(f'{s} = {f.__name__}' for s, f in functions.items())}")
    watched = watch(**functions)
    with use_learner_functions(**watched):
        your_rows, your_ap, your_s = _demo(Path(args.out) / "yours", extra)
    print(f"with your functions: {len(your_rows)} iterations, mAP {your_ap['map']:.4f}, "
          f"{your_s / 60:.1f} min; {watched.report()}")
    if not args.compare:
        return 0
    library_rows, library_ap, library_s = _demo(Path(args.out) / "library", extra)
    same = [all(float(a[k]) == float(b[k]) for k in _ROW_KEYS)
            for a, b in zip(your_rows, library_rows)]
    first = next((i for i, s in enumerate(same) if not s), None)
    print(f"the library's demo: mAP {library_ap['map']:.4f}, {library_s / 60:.1f} min")
    print("the same loss, parts and positives at every iteration, and the same mAP"
          if first is None and len(same) == len(library_rows)
          and your_ap["map"] == library_ap["map"]
          else f"the runs differ (first at iteration {first}; mAP {your_ap['map']:.4f} vs "
               f"{library_ap['map']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
