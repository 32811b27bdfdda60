"""Data-parallel training on several processes and machines, on MPI (NCCL on GPUs).

``mpiexec -n K minissd train ...`` (or ``mpiexec -n K python script.py`` where the script calls
``minissd.train.train``) trains ONE model with K processes. Each step:

1. every process loads its contiguous shard of the global batch (``sharding``): the global batch
   and its order are one process's, the shards are disjoint and cover it;
2. the number of positive default boxes of the global batch is summed over the processes, and
   each process divides its shard's MultiBox loss by it (``multibox_loss(num_positives=...)``),
   so that the processes' losses add up to the global batch's loss;
3. batch norm, where the model has it, normalises with the global batch's statistics
   (``sync_batch_norm``), so that the forward and backward are those of one process;
4. after the backward pass the gradients are summed over the processes in a few large flat
   buffers (``gradients.GradientAllreduce``): every process now holds the gradient of the global
   batch, applies the same optimiser step, and the weights stay identical, which
   ``gradients.check_identical`` verifies every ``CHECK_EVERY`` iterations.

K processes thus compute the numbers one process computes on the whole batch (up to the order of
floating-point sums). Rank 0 alone writes the run folder (lock, checkpoints, metrics, pictures,
progress bar). The modules, one concept each:

    communicator.py     ranks, collectives, failure handling (``world()``)
    sharding.py         which samples of a batch a process loads
    gradients.py        the bucketed gradient allreduce; the weight check
    batch_norm.py       points a model's batch norm at the communicator (the op, an autograd
                        op with its backward, is minissd.nn.sync_batch_norm)
    gpu.py              CuPy arrays: NCCL, a CUDA-aware MPI, or host memory
    cores.py            threads per process when several share a machine
    benchmark.py        time of a step and of the gradient allreduce (``python -m``)

Importing this package imports no MPI: ``world()`` imports mpi4py only in a process that an MPI
launcher started.
"""

from ..nn.sync_batch_norm import sync_batch_norm
from .batch_norm import synchronise_batch_norm
from .communicator import (
    DistributedError,
    MPICommunicator,
    PeerError,
    SingleProcess,
    launched_by_mpi,
    launched_rank,
    on_every_rank,
    world,
)
from .cores import share_cpu_cores
from .gradients import CHECK_EVERY, GradientAllreduce, check_identical
from .sharding import shard, shard_bounds

__all__ = [
    "world", "SingleProcess", "MPICommunicator", "launched_by_mpi", "launched_rank",
    "DistributedError", "PeerError", "on_every_rank", "shard", "shard_bounds",
    "GradientAllreduce", "check_identical", "CHECK_EVERY", "sync_batch_norm",
    "synchronise_batch_norm", "share_cpu_cores",
]
