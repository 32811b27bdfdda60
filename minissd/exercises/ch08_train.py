"""Chapter 08 (training): checkers for one training step and for one step of SGD.

``check_train_step(fn, config, dataset)`` runs the learner's
``fn(model, optimizer, batch, priors, lr) -> (loss, loc_loss, conf_loss)`` for a few iterations
from the start ``minissd.train.train`` starts from (the same seeded model, optimiser, schedule
and batches), and holds the three numbers of every iteration and the final weights to what
``train`` itself gives on the same config, bit for bit. A difference is traced to the part of
the step it comes from: the targets or the loss (iteration 0's numbers), the update (a later
iteration's numbers), the last update (the weights).

``check_sgd_step(fn)`` runs the learner's ``fn(w, grad, velocity, lr, momentum, weight_decay)``
for several steps beside ``minissd.optim.SGD`` (PyTorch's form of momentum, which the trainer
uses) on the same parameter and gradients, and compares the weights after every step.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace

import numpy as np

from minissd.backend import to_numpy
from minissd.nn import Parameter
from minissd.optim import SGD, MultiStepLR

from . import run_safely, verdict

# ------------------------------------------------------------------------- train_step

STEP_WHAT = "train_step gives the numbers of minissd.train.train, iteration by iteration"
PARTS = ("loss", "loc_loss", "conf_loss")


def trainer_start(config, dataset):
    """What ``train(config)`` starts from, built from public pieces: ``(model, optimizer,
    schedule, loader, priors)`` (the same seeded weights, optimiser, lr schedule, batches in the
    same order and default boxes). Close the loader when done (``with loader:``)."""
    from minissd.data import DataLoader
    from minissd.data.transforms import AUGMENTATIONS, SSDAugmentation, SSDTransformEval
    from minissd.train import build_model, build_optimizer

    model = build_model(config, len(dataset.class_names)).to(config.device)
    optimizer = build_optimizer(config, model)
    schedule = MultiStepLR(config.lr, tuple(config.milestones), config.gamma,
                           config.warmup_iters, config.warmup_factor)
    size = model.config.image_size
    transform = (SSDAugmentation(size, model.config.mean, AUGMENTATIONS[config.augmentation])
                 if config.augment else SSDTransformEval(size, mean=model.config.mean))
    loader = DataLoader(dataset, config.batch_size, shuffle=True, seed=config.seed,
                        transform=transform, drop_last=len(dataset) >= config.batch_size)
    return model, optimizer, schedule, loader, model.priors(np.dtype(config.dtype))


def _weights(model):
    return {k: to_numpy(v).copy() for k, v in model.state_dict().items()}


def _three_numbers(out):
    """The learner's ``(loss, loc_loss, conf_loss)`` as floats, or a message."""
    if not (isinstance(out, tuple | list) and len(out) == 3):
        return None, (f"return the three numbers (loss, loc_loss, conf_loss), got "
                      f"{type(out).__name__}" + (f" of length {len(out)}"
                                                 if isinstance(out, tuple | list) else ""))
    try:
        return [float(getattr(v, "item", lambda v=v: v)()) for v in out], None
    except (TypeError, ValueError) as exc:
        return None, f"return plain numbers (loss.item()): {exc}"


def _loss_hint(got, want):
    """Why iteration 0's numbers differ: the first forward and loss, before any update."""
    loss, loc, conf = (not np.isclose(g, w, rtol=1e-4, atol=0) for g, w in zip(got, want))
    if not (loss or loc or conf):
        return ("nearly equal but not bit for bit: run in the trainer's dtype (the images as "
                "priors.dtype, float32) and pass build_targets' arrays to multibox_loss as "
                "they are")
    if conf and not loc:
        return ("L_conf differs, L_loc agrees: the labels (build_targets with the model's "
                "model.config.loss.iou_threshold) or the mining (pass model.config.loss to "
                "multibox_loss: its neg_pos_ratio)")
    if loc and not conf:
        return ("L_loc differs, L_conf agrees: the targets' variances "
                "(model.config.priors.variances) or alpha and the smooth L1 beta (pass "
                "model.config.loss to multibox_loss)")
    return ("both parts differ before any update: the targets (build_targets(batch.boxes, "
            "batch.labels, priors, ...)) or the forward pass (model(Tensor(batch.images))) "
            "on this batch; and return the loss computed before the step")


def check_train_step(fn, config, dataset, iterations: int = 3) -> bool:
    """``fn(model, optimizer, batch, priors, lr) -> (loss, loc_loss, conf_loss)``: one
    iteration of ``train``. Compared with ``train`` on ``config`` (its first ``iterations``
    iterations, run here in a temporary folder) for the same numbers and final weights."""
    from minissd.train import train

    config = replace(config, iterations=iterations, progress=False, num_workers=0,
                     checkpoint_every=iterations)
    with tempfile.TemporaryDirectory(prefix="minissd_check_") as tmp:
        ref_model, ref_rows = train(replace(config, out_dir=tmp), dataset=dataset,
                                    overwrite=True)
    model, optimizer, schedule, loader, priors = trainer_start(config, dataset)
    with loader:
        batches = loader.forever(start_epoch=0)
        for it in range(iterations):
            before = _weights(model)
            lr = schedule(it)
            ok, out = run_safely(f"{STEP_WHAT} [iteration {it}]", fn, model, optimizer,
                                 next(batches), priors, lr)
            if not ok:
                return False
            got, problem = _three_numbers(out)
            if problem:
                return verdict(False, STEP_WHAT, f"iteration {it}: {problem}")
            want = [float(ref_rows[it][k]) for k in PARTS]
            unchanged = all(np.array_equal(before[k], v) for k, v in _weights(model).items())
            if got != want:
                table = ", ".join(f"{k} {g:.6g} (train: {w:.6g})"
                                  for k, g, w in zip(PARTS, got, want))
                if it == 0:
                    hint = _loss_hint(got, want)
                elif it == 1:
                    hint = ("iteration 0's numbers agree, so the update after it differs: set "
                            f"optimizer.lr = lr (the schedule's {schedule(0):.3g} at iteration "
                            "0, the warm-up's), then optimizer.zero_grad(), loss.backward(), "
                            "optimizer.step(), once each")
                else:
                    hint = ("the first updates agree, a later one not: the gradients add up "
                            "across iterations unless optimizer.zero_grad() comes before "
                            "loss.backward() in every step; and use the lr given to each call")
                return verdict(False, STEP_WHAT, f"iteration {it}: {table}; {hint}")
            if unchanged:
                return verdict(False, STEP_WHAT, (
                    f"iteration {it}: the numbers agree but your step left every weight as it "
                    f"was: after loss.backward(), call optimizer.step()"))
    theirs = _weights(ref_model)
    for name, value in _weights(model).items():
        if not np.array_equal(value, theirs[name]):
            return verdict(False, STEP_WHAT, (
                f"the {iterations} iterations' numbers agree but the weights after the last "
                f"step differ ({name!r} first): the last update must be the same as the others "
                f"(optimizer.lr = lr, zero_grad, backward, step)"))
    return verdict(True, STEP_WHAT + f" ({iterations} iterations: loss, L_loc, L_conf and the "
                                     f"final weights, bit for bit)")


# ------------------------------------------------------------------------- sgd_step

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
