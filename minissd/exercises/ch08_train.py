"""Chapter 08 (training): checker for one step of SGD with momentum and weight decay.

``check_sgd_step(fn)`` runs the learner's ``fn(w, grad, velocity, lr, momentum, weight_decay)``
for several steps beside ``minissd.optim.SGD`` (PyTorch's form of momentum, which the trainer
uses) on the same parameter and gradients, and compares the weights after every step.
"""

from __future__ import annotations

import numpy as np

from minissd.nn import Parameter
from minissd.optim import SGD

from . import run_safely, verdict

WHAT = "SGD with momentum and weight decay matches minissd.optim.SGD"


def _cases():
    """``(name, w0, grads, lrs, momentum, weight_decay, hint)``."""
    rng = np.random.default_rng(8)
    w0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(5)]
    yield ("plain SGD (momentum 0, no decay)", w0, grads[:2], [0.1, 0.1], 0.0, 0.0,
           "without momentum or decay the step is w - lr * grad")
    yield ("weight decay, no momentum", w0, grads[:2], [0.1, 0.1], 0.0, 0.05,
           "weight decay adds weight_decay * w to the gradient before anything else: "
           "g = grad + weight_decay * w")
    yield ("momentum, first step", w0, grads[:1], [0.1], 0.9, 0.0,
           "on the first step there is no velocity yet (velocity is None): start it at "
           "v = g (PyTorch's form), then w - lr * v")
    yield ("momentum over several steps", w0, grads, [0.1] * 5, 0.9, 0.0,
           "the velocity accumulates: v = momentum * v + g, then w = w - lr * v; return the "
           "new velocity so that the next call gets it")
    yield ("momentum, decay and a changing lr", w0, grads, [0.1, 0.05, 0.05, 0.01, 0.2], 0.9,
           5e-4, "use the lr given to each call; the lr multiplies the whole velocity "
                 "(v is accumulated without the lr)")


def _reference(w0, grads, lrs, momentum, weight_decay):
    p = Parameter(w0.copy())
    opt = SGD([("w", p)], lr=lrs[0], momentum=momentum, weight_decay=weight_decay)
    out = []
    for g, lr in zip(grads, lrs):
        opt.lr = lr
        p.grad = g.copy()
        opt.step()
        out.append(p.data.copy())
    return out


def check_sgd_step(fn) -> bool:
    """``fn(w (any shape), grad (same), velocity (same) or None, lr, momentum, weight_decay)
    -> (new_w, new_velocity)``."""
    for name, w0, grads, lrs, momentum, decay, hint in _cases():
        want = _reference(w0, grads, lrs, momentum, decay)
        w, v = w0.copy(), None
        for step, (g, lr) in enumerate(zip(grads, lrs)):
            ok, out = run_safely(f"{WHAT} [case '{name}', step {step}]", fn, w.copy(), g.copy(),
                                 None if v is None else v.copy(), lr, momentum, decay)
            if not ok:
                return False
            if not (isinstance(out, tuple) and len(out) == 2):
                return verdict(False, WHAT, f"case '{name}': return a pair (new_w, "
                                            f"new_velocity), got {type(out).__name__}")
            w, v = np.asarray(out[0], dtype=np.float64), out[1]
            v = None if v is None else np.asarray(v, dtype=np.float64)
            if w.shape != w0.shape:
                return verdict(False, WHAT, f"case '{name}', step {step}: new_w has shape "
                                            f"{w.shape}, expected {w0.shape}")
            if not np.allclose(w, want[step], rtol=1e-12, atol=1e-12):
                err = float(np.abs(w - want[step]).max())
                return verdict(False, WHAT, f"case '{name}' (momentum {momentum}, weight_decay "
                                            f"{decay}), step {step}: weights off by up to "
                                            f"{err:.3g}; {hint}")
    return verdict(True, WHAT + " over 5 runs (plain, decay, momentum, changing lr)")
