"""Turning a model's batch norm into batch norm over all processes.

The op itself, ``minissd.nn.sync_batch_norm``, lives beside the layer that calls it (``nn``
knows nothing of MPI: it takes any communicator with ``allreduce`` and ``allreduce_sum_``);
this module only points a model's ``BatchNorm2d`` layers at the run's communicator.
"""

from __future__ import annotations

from ..nn import BatchNorm2d


def synchronise_batch_norm(model, comm) -> int:
    """Make every ``BatchNorm2d`` of ``model`` use the statistics of all processes of ``comm``
    in training mode (``comm=None`` undoes it); returns how many layers there are."""
    layers = [m for _, m in model.named_modules() if isinstance(m, BatchNorm2d)]
    for layer in layers:
        layer.comm = comm
    return len(layers)


__all__ = ["synchronise_batch_norm"]
