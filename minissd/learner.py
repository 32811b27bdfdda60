"""Your code in the loop: the learner's own functions in place of the library's, inside training
and detection.

The chapters ask the learner to write SSD's algorithms (the IoU, the matching, the encoder,
the hard-negative selection, greedy NMS) and check each against the library. This module is the
one switch that then puts those functions *inside* the library's training and detection::

    from minissd.learner import use_learner_functions

    with use_learner_functions(iou=iou, match=match, encode=encode,
                               hard_negatives=hard_negatives, nms=greedy_nms):
        model, rows = train(config, dataset=train_set)      # targets and mining by yours
        result, dets = evaluate_model(model, test_set)      # suppression by yours

Outside such a block nothing changes: every slot is empty and the library runs its own
functions (the readable path stays the default). Inside it, the library calls the learner's
function at exactly one place per slot:

* ``iou``: ``iou(a (N, 4), b (M, 4)) -> (N, M)`` (chapter 05), in ``boxes.match``;
* ``match``: ``match(overlaps (G, P), iou_threshold) -> (P,)`` ints, the ground truth each
  prior takes, -1 for background (chapter 05), in ``boxes.match``;
* ``encode``: ``encode(matched (K, 4) corners, priors (K, 4) centre form, variances) ->
  (K, 4)`` (chapter 05), in ``boxes.match``;
* ``hard_negatives``: ``hard_negatives(conf_loss (N, P), labels (N, P), neg_pos_ratio) ->
  (N, P)`` bool (chapter 06), in ``ssd.multibox_loss.multibox_loss``;
* ``nms``: ``nms(boxes (K, 4) corners, scores (K,), iou_threshold) -> (k,)`` kept indices by
  descending score (chapter 07), in ``ssd.detect.detect_image``.

``boxes.match`` computes the IoU of the ground truths with the priors by ``iou``, assigns the
priors by ``match`` and encodes the matched ones by ``encode`` (so ``build_targets`` and the
trainer use all three); ``multibox_loss`` selects the boxes of ``L_conf`` by ``hard_negatives``;
``detect_image`` keeps its softmax, decoding, score threshold and top-k cuts and runs ``nms`` once
per class (``boxes.batched_nms_reference``'s loop). The public functions themselves
(``boxes.iou``, ``boxes.encode``, ``boxes.match_overlaps``, ``hard_negative_mask``,
``boxes.nms``) never change: they stay the references a learner's function is checked against.

What the learner's function gets and gives:

* NumPy arrays (CuPy input is copied to the host), each a copy (an in-place change cannot
  touch the library's arrays), in the dtype the library computes in: ``float32`` boxes and
  priors in training. ``variances`` are 4 Python floats.
* The result is converted back: the IoU to the library's dtype (the library's kernel computes
  the IoU in float64 and rounds once, so a float64 IoU gives the kernel's numbers exactly),
  ``encode``'s targets to the priors' dtype, indices to int64, the mask to bool.
* A result of the wrong shape or kind, or an exception inside the learner's function, raises
  ``LearnerFunctionError`` naming the slot and what was expected.

Blocks nest: an inner block's functions win for the slots it names (``slot=None`` leaves a slot
as the outer block set it). The switch lives in a ``contextvars.ContextVar``: it holds for the
code inside the block in this thread (the trainer calls every slot from the thread that runs
``train``; data-loader workers never call one).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType

import numpy as np

from .backend import get_array_module, to_numpy

#: The slots, each with the signature the library calls it with.
SLOTS: Mapping[str, str] = MappingProxyType({
    "iou": "iou(a (N, 4), b (M, 4)) -> (N, M) IoU",
    "match": "match(overlaps (G, P), iou_threshold) -> (P,) int, the ground truth of each "
             "prior or -1",
    "encode": "encode(matched (K, 4) corners, priors (K, 4) centre form, variances) -> (K, 4)",
    "hard_negatives": "hard_negatives(conf_loss (N, P), labels (N, P), neg_pos_ratio) -> "
                      "(N, P) bool",
    "nms": "nms(boxes (K, 4) corners, scores (K,), iou_threshold) -> (k,) int, kept indices "
           "by descending score",
})

_EMPTY: Mapping[str, Callable] = MappingProxyType({})
_PLUGGED: contextvars.ContextVar[Mapping[str, Callable]] = contextvars.ContextVar(
    "minissd_learner_functions", default=_EMPTY)


class LearnerFunctionError(RuntimeError):
    """A learner's function, called inside the library, raised or returned the wrong thing."""


@contextlib.contextmanager
def use_learner_functions(**functions: Callable | None) -> Iterator[Mapping[str, Callable]]:
    """Inside the block, the library calls these functions at their slots (see the module
    docstring); yields the mapping now in force. Unknown slot names raise ``TypeError``."""
    unknown = sorted(set(functions) - set(SLOTS))
    if unknown:
        raise TypeError(f"use_learner_functions: unknown slot(s) {', '.join(unknown)}; the "
                        f"slots are {', '.join(SLOTS)}")
    for name, fn in functions.items():
        if fn is not None and not callable(fn):
            raise TypeError(f"use_learner_functions: {name} must be a function (or None), got "
                            f"{type(fn).__name__}")
    merged = dict(_PLUGGED.get())
    merged.update({k: v for k, v in functions.items() if v is not None})
    token = _PLUGGED.set(MappingProxyType(merged))
    try:
        yield _PLUGGED.get()
    finally:
        _PLUGGED.reset(token)


def plugged() -> Mapping[str, Callable]:
    """The learner's functions in force here, by slot (empty outside every block)."""
    return _PLUGGED.get()


def learner_function(slot: str) -> Callable | None:
    """The learner's function plugged into ``slot`` here, or None: the library's own."""
    if slot not in SLOTS:
        raise KeyError(f"unknown slot {slot!r}; the slots are {', '.join(SLOTS)}")
    return _PLUGGED.get().get(slot)


def call_learner(slot: str, fn: Callable, *args, shape: tuple, kind: str, dtype=None, like=None,
                 where: str = "", index_range: tuple[int, int] | None = None):
    """Call the learner's ``fn`` for ``slot`` on host copies of ``args`` and return its result
    as an array of ``shape`` (``None`` for a length of any size) and ``kind``: ``"f"`` real
    numbers, cast to ``dtype``; ``"i"`` integers, as int64, each in ``index_range``
    ``(low, high)`` (high excluded) when given; ``"b"`` bool. The result is on the array module
    of ``like`` (NumPy without it). ``where`` names the caller in errors."""
    host = [np.array(to_numpy(a)) if hasattr(a, "shape") else a for a in args]
    caller = f" (called by {where})" if where else ""
    try:
        out = fn(*host)
    except Exception as exc:
        raise LearnerFunctionError(
            f"your {slot} raised {type(exc).__name__}: {exc}{caller}; it is called as "
            f"{SLOTS[slot]}") from exc
    if out is None:
        raise LearnerFunctionError(f"your {slot} returned None{caller}; expected {SLOTS[slot]}")
    out = np.asarray(to_numpy(out))
    if len(out.shape) != len(shape) or any(
            want is not None and got != want for got, want in zip(out.shape, shape)):
        raise LearnerFunctionError(
            f"your {slot} returned shape {out.shape}{caller}, expected "
            f"{tuple('any' if n is None else n for n in shape)}: "
            f"{SLOTS[slot]}")
    if kind == "b":
        if out.dtype != np.bool_:
            raise LearnerFunctionError(f"your {slot} returned dtype {out.dtype}{caller}, "
                                       f"expected bool")
    elif kind == "i":
        if out.size and out.dtype.kind not in "iu":
            raise LearnerFunctionError(f"your {slot} returned dtype {out.dtype}{caller}, "
                                       f"expected integer indices")
        out = out.astype(np.int64)
        if index_range is not None and out.size:
            low, high = index_range
            bad = out[(out < low) | (out >= high)]
            if bad.size:
                raise LearnerFunctionError(
                    f"your {slot} returned the index {int(bad[0])}{caller}; every index must "
                    f"lie in [{low}, {high - 1}]")
    elif kind == "f":
        if out.dtype.kind not in "fiu":
            raise LearnerFunctionError(f"your {slot} returned dtype {out.dtype}{caller}, "
                                       f"expected real numbers")
        out = out.astype(dtype if dtype is not None else np.float64)
    else:
        raise ValueError(f"kind must be 'f', 'i' or 'b', got {kind!r}")
    xp = get_array_module(like) if like is not None else np
    return out if xp is np else xp.asarray(out)
