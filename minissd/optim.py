"""SGD with momentum and weight decay, and the multistep learning-rate schedule with warm-up."""

from __future__ import annotations

from dataclasses import dataclass

from .autograd import no_grad
from .backend import device_of, get_array_module, to_device, to_numpy


class SGD:
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
        params = list(params)
        named = [p if isinstance(p, tuple) else (str(i), p) for i, p in enumerate(params)]
        if not named:
            raise ValueError("SGD: got an empty parameter list")
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.decay = [decay_biases or not (n.endswith("bias") or p.ndim == 1)
                      for n, p in named]
        self.velocity = [None] * len(self.params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        with no_grad():
            for i, p in enumerate(self.params):
                if p.grad is None:
                    continue
                g = p.grad
                if self.weight_decay and self.decay[i]:
                    g = g + self.weight_decay * p.data
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
