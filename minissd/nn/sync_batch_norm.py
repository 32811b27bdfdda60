"""Batch normalisation with the statistics of the global batch, across processes.

Plain batch norm normalises each channel with the mean and variance of the batch it sees. Split
over K processes, each would see only its shard and normalise with that shard's statistics: a
different function from the one a single process computes on the whole batch (and noisier, the
smaller the shards). Synchronised batch norm sums over all processes instead, so K processes
compute exactly what one process computes on the whole batch.

Forward, for ``x (N_r, C, H, W)`` on process ``r`` (``n`` = the global ``sum_r N_r H W``)::

    n    = allreduce(N_r H W)                              one allreduce of an integer
    mean = allreduce(sum_{N,H,W} x) / n                    one allreduce of C numbers
    var  = allreduce(sum_{N,H,W} (x - mean)^2) / n         one allreduce of C numbers (biased)
    y    = weight * (x - mean) / sqrt(var + eps) + bias

Backward. Process ``r``'s output affects only its own loss ``L_r``, but its input affects every
process's output through the mean and the variance, so the gradient of the global loss
``L = sum_r L_r`` with respect to ``x_r`` needs two sums over all processes (with
``g_hat = weight * dL/dy`` and ``x_hat = (x - mean) / sqrt(var + eps)``)::

    dL/dx = (g_hat - allreduce(sum g_hat) / n - x_hat * allreduce(sum g_hat x_hat) / n)
            / sqrt(var + eps)                               one allreduce of 2C numbers

which is one process's batch-norm backward with the sums taken over the global batch. The
gradients of ``weight`` and ``bias`` stay local (``sum g x_hat``, ``sum g``): they are summed
with all the other gradients after the backward pass (``GradientAllreduce``).

Every process must run the same layers in the same order (they do: the same model on batches of
one image size), since each forward and backward of a layer is a collective.
"""

from __future__ import annotations

from ..autograd import Tensor, as_tensor


def sync_batch_norm(x, weight, bias, eps, comm):
    """Training-mode batch norm over the inputs of all processes of ``comm``.

    Args:
        x: Tensor ``(N_r, C, H, W)``, this process's shard (``N_r`` may differ by process).
        weight, bias: Tensors ``(C,)``, the same on every process.
        eps: added to the variance.
        comm: a communicator of the processes (``minissd.distributed``; anything with
            ``allreduce`` and ``allreduce_sum_``).
    Returns:
        ``(y, mean, var, count)``: the Tensor ``y (N_r, C, H, W)``; the global mean and biased
        variance, plain arrays ``(C,)`` for the running statistics; ``count``, the global number
        of values per channel (``sum_r N_r H W``).
    """
    x, weight, bias = as_tensor(x), as_tensor(weight), as_tensor(bias)
    if x.ndim != 4 or weight.shape != (x.shape[1],) or bias.shape != (x.shape[1],):
        raise ValueError(f"sync_batch_norm: input must be (N, C, H, W) with weight and bias "
                         f"(C,), got {x.shape}, {weight.shape}, {bias.shape}")
    xp = x.xp
    axes, shape = (0, 2, 3), (1, -1, 1, 1)
    channels = x.shape[1]
    count = comm.allreduce(x.size // channels)  # a Python int: exact at any size
    mean = comm.allreduce_sum_(xp.ascontiguousarray(x.data.sum(axis=axes))) / count
    centred = x.data - mean.reshape(shape)
    var = comm.allreduce_sum_(xp.ascontiguousarray((centred * centred).sum(axis=axes))) / count
    inv_std = 1.0 / xp.sqrt(var + eps)
    x_hat = centred * inv_std.reshape(shape)
    y = x_hat * weight.data.reshape(shape) + bias.data.reshape(shape)

    def backward(g):
        g_hat = g * weight.data.reshape(shape)
        sums = xp.concatenate([g_hat.sum(axis=axes), (g_hat * x_hat).sum(axis=axes)])
        comm.allreduce_sum_(sums)
        sum_g_hat, sum_g_hat_x_hat = sums[:channels], sums[channels:]
        gx = (inv_std.reshape(shape) / count) * (
            count * g_hat - sum_g_hat.reshape(shape) - x_hat * sum_g_hat_x_hat.reshape(shape))
        return gx, (g * x_hat).sum(axis=axes), g.sum(axis=axes)

    return Tensor.from_op(y, (x, weight, bias), backward, "sync_batch_norm"), mean, var, count


__all__ = ["sync_batch_norm"]
