"""Run by the tests under ``mpiexec -n K python mpi_worker.py JOBS.json``: train each job of the
JSON list in turn, as every process of a data-parallel run does.

A job is ``{"config": {TrainConfig fields}, "resume": bool}``, plus optionally
``"fail": {"rank": r, "iteration": i, "how": "raise" | "kill" | "setup"}``, which makes rank
``r`` raise an exception at iteration ``i`` of training, kill itself there (SIGKILL), or raise
while reading the data (before training starts).
"""

import json
import os
import signal
import sys

import minissd.train as train_module
from minissd.distributed import world
from minissd.train import TrainConfig, train


def inject(fail, comm):
    """Patch the trainer so that rank ``fail["rank"]`` fails as ``fail["how"]`` says."""
    if comm.rank != fail["rank"]:
        return
    if fail["how"] == "setup":
        def load(*args, **kwargs):
            raise OSError(f"injected setup failure on rank {comm.rank}")

        train_module._load_dataset_once = load
        return
    step = train_module._step

    def failing_step(it, *args, **kwargs):
        if it == fail["iteration"]:
            if fail["how"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected failure at iteration {it}")
        return step(it, *args, **kwargs)

    train_module._step = failing_step


def main(path):
    comm = world()
    for job in json.loads(open(path).read()):
        fields = dict(job["config"])
        for key in ("milestones", "class_names"):
            if fields.get(key) is not None:
                fields[key] = tuple(fields[key])
        if "fail" in job:
            inject(job["fail"], comm)
        train(TrainConfig(**fields), resume=job.get("resume", False), overwrite=True)
    if comm.rank == 0:
        print("worker: all jobs done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
