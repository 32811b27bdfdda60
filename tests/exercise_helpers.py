"""What the exercise-checker tests share: the worked solutions, and what a verdict must look like.

A checker prints one verdict and returns a bool, never raising: ``PASS: ...`` for a right answer;
``NOT YET: ...`` on a single line, with a pointer to the mistake, for a wrong one.
(A uniquely named module on pytest's ``pythonpath``: ``from conftest import ...`` would find
another folder's conftest.)
"""

import importlib.util
from pathlib import Path

#: ``chapters/solutions/``: one worked-solution file per notebook.
SOLUTIONS = Path(__file__).resolve().parents[1] / "chapters" / "solutions"


def solution(stem, name):
    """The function ``name`` of the worked solution ``chapters/solutions/<stem>.py``."""
    spec = importlib.util.spec_from_file_location(f"solution_{stem}", SOLUTIONS / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def passes(check, fn, capsys):
    """``check(fn)`` accepts ``fn``: returns True and prints a PASS verdict."""
    ok = check(fn)
    out = capsys.readouterr().out
    assert ok is True, out
    assert out.startswith("PASS: ") and "NOT YET" not in out, out
    return out


def fails(check, fn, capsys, pointer=None):
    """``check(fn)`` refuses ``fn``: returns False and prints one NOT YET line (holding
    ``pointer``, when given)."""
    ok = check(fn)
    out = capsys.readouterr().out
    assert ok is False, out
    assert out.startswith("NOT YET: ") and out.count("\n") == 1, out
    if pointer:
        assert pointer in out, out
    return out


def not_implemented(*args, **kwargs):
    """The notebook's starting point: an exercise not yet done."""
    raise NotImplementedError("fill this in")


#: Where chapter 12's slots (``minissd.learner.SLOTS``) take the worked solutions from: the
#: chapters whose exercises wrote those functions.
LEARNER_SOLUTIONS = {"iou": ("05_matching_encoding", "iou"),
                     "match": ("05_matching_encoding", "match"),
                     "encode": ("05_matching_encoding", "encode"),
                     "hard_negatives": ("06_multibox_loss", "hard_negatives"),
                     "nms": ("07_nms_kernels", "greedy_nms")}


def learner_solutions():
    """``{slot: the worked solution}`` for ``use_learner_functions(**...)``."""
    return {slot: solution(stem, name) for slot, (stem, name) in LEARNER_SOLUTIONS.items()}


def network_outputs(seed, num_classes=4):
    """Random ``loc (P, 4)``, ``conf (P, C)`` (the background favoured) and the small model's
    priors (P, 4), float64: network outputs to detect on."""
    import numpy as np

    from minissd.priors import make_priors
    from minissd.ssd.model import ssd_small

    rng = np.random.default_rng(seed)
    priors = make_priors(ssd_small(num_classes).priors)
    loc = rng.normal(0, 0.5, (len(priors), 4))
    conf = rng.normal(0, 1.5, (len(priors), num_classes))
    conf[:, 0] += 3.0
    return loc, conf, priors
