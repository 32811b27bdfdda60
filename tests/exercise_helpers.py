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
