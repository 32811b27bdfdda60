"""Checkers for the chapters' exercises: one module per chapter (``ch01_autograd`` ...).

A checker takes the learner's function, runs a gradient check or a property test against it,
prints ``PASS: ...`` or ``NOT YET: ...`` with a pointer to what is wrong, and returns a bool.
Checkers never raise on a wrong answer (an exception inside the learner's code is reported as
a failure with its message), so a notebook always runs to its end.
"""

from __future__ import annotations

import traceback

PASS, FAIL = "PASS", "NOT YET"


def verdict(ok: bool, what: str, hint: str = "") -> bool:
    """Print the checker's one-line verdict and return ``ok``."""
    print(f"{PASS}: {what}" if ok else f"{FAIL}: {what}" + (f" -- {hint}" if hint else ""))
    return ok


def run_safely(what: str, fn, *args, **kwargs):
    """Call the learner's ``fn``; on an exception print a verdict and return ``(False, None)``."""
    try:
        return True, fn(*args, **kwargs)
    except NotImplementedError:
        verdict(False, what, "the function still raises NotImplementedError: fill it in")
        return False, None
    except Exception as exc:  # the learner's bug, shown briefly
        last = traceback.extract_tb(exc.__traceback__)[-1]
        verdict(False, what, f"it raised {type(exc).__name__}: {exc} (line {last.lineno})")
        return False, None
