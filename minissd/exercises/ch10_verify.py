"""Chapter 10 (verifying another implementation): checker for ``first_divergence``.

``check_first_divergence(fn)`` gives the learner's ``fn(ours, theirs, tol)`` planted pairs of
activation dicts and checks the layer it names against the rule of ``minissd.pytorch.parity``:
visit the layers in ``ours``' order, skip a layer ``theirs`` lacks, and call a layer divergent
when the shapes differ or ``max|a - b| / max|b| > tol``. Needs only NumPy (no torch).
"""

from __future__ import annotations

import numpy as np

from minissd.pytorch.parity import diff

from . import run_safely, verdict

WHAT = "first_divergence names the first layer beyond tolerance (minissd.pytorch.parity's rule)"


def reference_first_divergence(ours, theirs, tol):
    """The rule the checker holds answers to (the same measure as
    ``minissd.pytorch.parity.diff``)."""
    for name, a in ours.items():
        if name in theirs and not diff(name, a, theirs[name], tol).ok:
            return name
    return None


def _acts(rng, names, shape=(1, 4, 5, 5)):
    """Post-ReLU-like activations: about half the entries are exactly 0."""
    return {n: np.maximum(rng.normal(size=shape), 0.0) * (1 + i) for i, n in enumerate(names)}


def _perturbed(acts, changes):
    out = {n: a.copy() for n, a in acts.items()}
    for name, delta in changes.items():
        if callable(delta):
            out[name] = delta(out[name])
        else:
            out[name] = out[name] + delta
    return out


def _cases():
    """``(name, ours, theirs, tol, hint)``."""
    rng = np.random.default_rng(10)
    names = ["conv1_1", "conv1_2", "pool1", "conv2_1", "l2norm", "loc0", "conf0"]
    base = _acts(rng, names)
    yield ("all layers agree to rounding", base,
           _perturbed(base, {n: 1e-14 * rng.normal(size=base[n].shape) for n in names}), 1e-10,
           "return None when no layer is beyond tolerance; measure each layer relative to the "
           "whole tensor, max|a - b| / max|b|: these differ by 1e-14 of their largest value "
           "(rounding), though an element-wise |a - b| / |b| can be large where b is tiny")
    noise = {n: 1e-3 * rng.normal(size=base[n].shape) for n in names[3:]}
    yield ("divergence at conv2_1, propagating to every later layer", base,
           _perturbed(base, {**noise, "conf0": 10 * rng.normal(size=base["conf0"].shape)}), 1e-6,
           "return the FIRST layer (in forward order) beyond tolerance, not the one with the "
           "largest error: errors propagate forward")
    yield ("a shape mismatch", base,
           _perturbed(base, {"pool1": lambda a: a[..., :4, :4]}), 1e-6,
           "different shapes are a divergence: compare shapes before subtracting (broadcasting "
           "or an exception would hide it)")
    zeros = {n: a.copy() for n, a in base.items()}
    zeros["pool1"] = np.zeros_like(zeros["pool1"])
    zeros_theirs = {n: a.copy() for n, a in zeros.items()}
    zeros_theirs["conv2_1"] = zeros_theirs["conv2_1"] * (1 + 1e-12)
    zeros["conv1_2"].flat[0] = zeros_theirs["conv1_2"].flat[0] = 1e-9  # a tiny activation ...
    zeros_theirs["conv1_2"].flat[0] += 1e-14  # ... off by 1e-5 of itself, 1e-15 of the tensor
    yield ("zeros in the activations (ReLU) and an all-zero layer", zeros, zeros_theirs, 1e-10,
           "measure relative to the whole tensor, max|a - b| / max|b|, not element by element "
           "(|a - b| / |b| is 0/0 where ReLU gives zeros); an all-zero pair agrees")
    ordered = {n: base[n] for n in names}
    shuffled = {n: base[n] for n in reversed(names)}
    shuffled = _perturbed(shuffled, {"conv1_2": 1.0, "conf0": 1.0})
    yield ("theirs lists the layers in another order", ordered, shuffled, 1e-6,
           "walk the layers in the order of `ours` (the forward order), looking each name up "
           "in `theirs`")
    missing = {n: a for n, a in base.items() if n != "conv1_2"}
    missing = _perturbed(missing, {"loc0": 1.0})
    yield ("a layer only ours has", base, missing, 1e-6,
           "skip a layer that `theirs` lacks (nothing to compare), and go on")
    exact = {n: a.copy() for n, a in base.items()}
    ref = {n: a.copy() for n, a in base.items()}
    ref["conv1_1"] = np.ones((2, 3))
    exact["conv1_1"] = np.ones((2, 3)) * 1.5
    yield ("error exactly at the tolerance agrees", exact, ref, 0.5,
           "a layer diverges when the relative error is strictly greater than tol "
           "(rel <= tol agrees)")
    for k in range(30):
        acts = _acts(rng, names, shape=tuple(int(s) for s in rng.integers(1, 5, 3)))
        changes = {}
        for n in names:
            if rng.random() < 0.25:
                changes[n] = float(rng.choice([1e-9, 1e-6, 1e-3])) * rng.normal(size=acts[n].shape)
        yield (f"drawn pair #{k}", acts, _perturbed(acts, changes),
               float(rng.choice([1e-8, 1e-5])), "")


def check_first_divergence(fn) -> bool:
    """``fn(ours: dict name -> array, theirs: dict name -> array, tol: float) -> str | None``."""
    for name, ours, theirs, tol, hint in _cases():
        want = reference_first_divergence(ours, theirs, tol)
        ok, got = run_safely(f"{WHAT} [case '{name}']", fn, {n: a.copy() for n, a in ours.items()},
                             {n: a.copy() for n, a in theirs.items()}, tol)
        if not ok:
            return False
        if got != want:
            return verdict(False, WHAT, f"case '{name}' (tol {tol:g}): you return {got!r}, "
                                        f"expected {want!r}" + (f"; {hint}" if hint else ""))
    return verdict(True, WHAT + " on 37 planted pairs (agreement, propagation, shape "
                                "mismatch, zeros, order, missing layers)")
