"""Worked solutions for chapters/08_training.ipynb (the notebook has imported numpy as np,
Tensor, build_targets, multibox_loss and set xp = xp_for(DEVICE))."""


def train_step(model, optimizer, batch, priors, lr):
    """One training iteration, as minissd.train.train runs it.

    Args:
        model: the SSD (training mode); optimizer: its Adam or SGD.
        batch: a minissd.data.Batch: images (B, 3, H, W) float32, boxes and labels (lists of
            B arrays: normalised corners, 0-based classes).
        priors: (P, 4) default boxes, centre form, in the model's dtype.
        lr: the learning rate of this iteration (the schedule's).
    Returns:
        (loss, loc_loss, conf_loss): the MultiBox loss and its parts before the update, floats.
    """
    optimizer.lr = lr
    loc_t, labels = build_targets(batch.boxes, batch.labels, priors,
                                  model.config.loss.iou_threshold, model.config.priors.variances)
    loc, conf = model(Tensor(xp.asarray(batch.images, dtype=priors.dtype)))
    loss, loc_loss, conf_loss = multibox_loss(loc, conf, xp.asarray(loc_t), xp.asarray(labels),
                                              model.config.loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item(), loc_loss.item(), conf_loss.item()


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
