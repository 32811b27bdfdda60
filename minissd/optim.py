"""Optimisers (SGD with momentum and weight decay, the paper's; Adam) and the multistep
learning-rate schedule with warm-up."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .autograd import no_grad
from .backend import device_of, get_array_module, to_device, to_numpy


class Optimizer:
    """What SGD and Adam share: named parameters, which of them take weight decay, and the
    gradient each step uses (``grad + weight_decay * w``)."""

    def __init__(self, params, lr, weight_decay, decay_biases, who):
        params = list(params)
        named = [p if isinstance(p, tuple) else (str(i), p) for i, p in enumerate(params)]
        if not named:
            raise ValueError(f"{who}: got an empty parameter list")
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.lr, self.weight_decay = lr, weight_decay
        # biases: a name ending in "bias", or a 1-D parameter
        self.decay = [decay_biases or not (n.endswith("bias") or p.ndim == 1) for n, p in named]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _gradients(self):
        """``(index, parameter, gradient with weight decay)`` of every parameter with a grad."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay and self.decay[i]:
                g = g + self.weight_decay * p.data
            yield i, p, g


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (PyTorch's form)::

        g = grad + weight_decay * w        (no decay on biases when decay_biases=False)
        v = momentum * v + g
        w = w - lr * v

    Args:
        params: a list of Parameters, or ``module.named_parameters()`` pairs (names are needed
            to recognise biases: a parameter whose name ends in ``"bias"`` or that is 1-D).
        lr, momentum, weight_decay: the paper's 1e-3, 0.9, 5e-4 for SSD.
        decay_biases: apply weight decay to biases too (ChainerCV's SSD does not).
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, decay_biases=True):
        super().__init__(params, lr, weight_decay, decay_biases, "SGD")
        self.momentum = momentum
        self.velocity = [None] * len(self.params)

    def step(self):
        with no_grad():
            for i, p, g in self._gradients():
                if self.momentum:
                    v = self.velocity[i]
                    self.velocity[i] = g.copy() if v is None else self.momentum * v + g
                    g = self.velocity[i]
                p.data -= (self.lr * g).astype(p.dtype, copy=False)

    def state_dict(self) -> dict:
        """Momentum buffers as NumPy arrays, keyed ``velocity.<param name>``, plus the lr."""
        state = {f"velocity.{n}": to_numpy(v)
                 for n, v in zip(self.names, self.velocity) if v is not None}
        state["lr"] = to_numpy(get_array_module(self.params[0].data).asarray(self.lr))
        return state

    def load_state_dict(self, state: dict):
        self.lr = float(state["lr"])
        device = device_of(self.params[0].data)
        for i, n in enumerate(self.names):
            v = state.get(f"velocity.{n}")
            if v is not None and tuple(v.shape) != self.params[i].shape:
                raise ValueError(f"SGD.load_state_dict: velocity of {n!r} has shape "
                                 f"{tuple(v.shape)}, parameter has {self.params[i].shape}")
            self.velocity[i] = None if v is None else to_device(v, device)


class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam`` (L2 weight decay added to the gradient)::

        g = grad + weight_decay * w
        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
        w = w - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    Not the paper's optimiser: SSD fine-tunes an ImageNet VGG with SGD. The small model trains
    from scratch and without batch normalisation, where Adam's per-weight step sizes make it
    fit in minutes (``minissd demo`` uses it).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decay_biases=True):
        super().__init__(params, lr, weight_decay, decay_biases, "Adam")
        self.betas, self.eps = betas, eps
        self.steps = 0
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)

    def step(self):
        self.steps += 1
        b1, b2 = self.betas
        correction1, correction2 = 1 - b1 ** self.steps, 1 - b2 ** self.steps
        with no_grad():
            for i, p, g in self._gradients():
                xp = get_array_module(g)
                if self.m[i] is None:
                    self.m[i], self.v[i] = xp.zeros_like(p.data), xp.zeros_like(p.data)
                self.m[i] = b1 * self.m[i] + (1 - b1) * g
                self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
                update = (self.m[i] / correction1) / (xp.sqrt(self.v[i] / correction2) + self.eps)
                p.data -= (self.lr * update).astype(p.dtype, copy=False)

    def state_dict(self) -> dict:
        state = {"lr": np.asarray(self.lr), "steps": np.asarray(self.steps)}
        for n, m, v in zip(self.names, self.m, self.v):
            if m is not None:
                state[f"m.{n}"], state[f"v.{n}"] = to_numpy(m), to_numpy(v)
        return state

    def load_state_dict(self, state: dict):
        self.lr, self.steps = float(state["lr"]), int(state["steps"])
        device = device_of(self.params[0].data)
        for i, n in enumerate(self.names):
            for buf, key in ((self.m, f"m.{n}"), (self.v, f"v.{n}")):
                value = state.get(key)
                if value is not None and tuple(value.shape) != self.params[i].shape:
                    raise ValueError(f"Adam.load_state_dict: {key!r} has shape "
                                     f"{tuple(value.shape)}, parameter has {self.params[i].shape}")
                buf[i] = None if value is None else to_device(value, device)


@dataclass
class MultiStepLR:
    """``lr(it) = base_lr * gamma ** (milestones passed) * warm-up factor``.

    The warm-up factor rises linearly from ``warmup_factor`` at iteration 0 to 1 at
    ``warmup_iters``. SSD on VOC: base 1e-3, milestones (80k, 100k), gamma 0.1, 120k iterations.
    """

    base_lr: float
    milestones: tuple = ()
    gamma: float = 0.1
    warmup_iters: int = 0
    warmup_factor: float = 1.0 / 3

    def __call__(self, iteration: int) -> float:
        lr = self.base_lr * self.gamma ** sum(iteration >= m for m in self.milestones)
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            lr *= self.warmup_factor * (1 - alpha) + alpha
        return lr
