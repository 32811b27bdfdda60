"""Time a data-parallel SSD300 training step and its gradient allreduce.

    mpiexec -n K python -m minissd.distributed.benchmark [--batch 2] [--steps 2] [--repeats 5]

prints, on rank 0, for K processes:

* the allreduce of the SSD300 gradients (26.3M float32 = 105 MB, in ``BUCKET_BYTES`` buckets),
  the mean of ``--repeats`` calls, and the bandwidth it reached (a ring allreduce sends and
  receives ``2 (K - 1) / K`` times the buffer per process);
* a training step of the global batch ``--batch`` (the trainer's ``_step``: targets, forward,
  loss, backward, gradient sum, SGD update) on random images with random boxes, the mean of
  ``--steps`` steps after one warm-up step, and the part of it spent in the allreduce.

The numbers of this machine are in the README ("Training on several processes").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: The SSD300 input size and the classes of VOC (20 and the background).
IMAGE_SIZE, VOC_CLASSES = 300, 20
#: Objects per random image.
OBJECTS_PER_IMAGE = 3


def _random_batch(n, rng):
    """A batch of ``n`` random 300 px images with ``OBJECTS_PER_IMAGE`` random boxes each."""
    from ..data import Batch

    images = rng.normal(0, 50, (n, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    corners = rng.uniform(0, 0.5, (n, OBJECTS_PER_IMAGE, 2))
    sizes = rng.uniform(0.1, 0.5, (n, OBJECTS_PER_IMAGE, 2))
    boxes = [np.concatenate([c, c + s], axis=1).astype(np.float32)
             for c, s in zip(corners, sizes)]
    labels = [rng.integers(0, VOC_CLASSES, OBJECTS_PER_IMAGE) for _ in range(n)]
    return Batch(images, boxes, labels, np.arange(n), 0)


def main(argv=None):
    from .. import train as trainer
    from . import GradientAllreduce, shard, share_cpu_cores, world

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2, help="the global batch (default: 2)")
    p.add_argument("--steps", type=int, default=2, help="timed steps (default: 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed allreduces (default: 5)")
    a = p.parse_args(argv)
    comm = world()
    threads = share_cpu_cores(comm)
    config = trainer.TrainConfig(model="ssd300", batch_size=a.batch, milestones=())
    model = trainer.build_model(config, VOC_CLASSES)
    params = model.parameters()
    count = sum(p.size for p in params)
    reduce = GradientAllreduce(params, comm)
    rng = np.random.default_rng(comm.rank)
    for p in params:
        p.grad = rng.normal(size=p.shape).astype(p.dtype)
    seconds = []
    for _ in range(a.repeats):
        comm.barrier()
        reduce()
        seconds.append(reduce.seconds)
    allreduce_s = float(np.mean(seconds))
    model.zero_grad()

    setup = trainer._Setup(model, trainer.build_optimizer(config, model),
                           trainer.MultiStepLR(config.lr), model.priors(),
                           model.config.priors.variances, np, None, reduce)
    whole = _random_batch(a.batch, np.random.default_rng(0))
    mine = type(whole)(*(shard(part, comm.rank, comm.size) for part in whole[:4]), 0)
    step_s, in_allreduce = [], []
    for it in range(a.steps + 1):  # the first is a warm-up
        comm.barrier()
        row = trainer._step(it, setup, mine, Path("none"), comm)
        if it:
            step_s.append(row["seconds"])
            in_allreduce.append(reduce.seconds)
    if comm.is_root:
        nbytes = count * 4
        moved = 2 * (comm.size - 1) / comm.size * nbytes
        rate = f", {moved / allreduce_s / 1e9:.2f} GB/s" if comm.size > 1 else ""
        print(f"{comm.size} process(es){f' x {threads} thread(s)' if threads else ''}: "
              f"allreduce of {count / 1e6:.1f}M float32 gradients ({nbytes / 1e6:.0f} MB, "
              f"{len(reduce.buckets)} buckets): {allreduce_s:.3f} s{rate}; step of a global "
              f"batch of {a.batch} at {IMAGE_SIZE} px: {np.mean(step_s):.2f} s, "
              f"{np.mean(in_allreduce):.3f} s of it in the allreduce", flush=True)


if __name__ == "__main__":
    main()
