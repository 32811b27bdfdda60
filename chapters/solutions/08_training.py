"""Worked solutions for chapters/08_training.ipynb (the notebook has imported numpy as np)."""


def sgd_step(w, grad, velocity, lr, momentum, weight_decay):
    """One SGD step with momentum and weight decay, PyTorch's form (minissd.optim.SGD).

    Args:
        w: a parameter array, any shape.
        grad: the loss gradient, same shape as w.
        velocity: the momentum buffer from the previous step (same shape), or None on the first.
        lr, momentum, weight_decay: floats.
    Returns:
        (new_w, new_velocity), both the shape of w.
    """
    g = grad + weight_decay * w
    velocity = g if velocity is None else momentum * velocity + g
    return w - lr * velocity, velocity
