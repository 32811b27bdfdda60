"""Who am I, and how do I talk to the other processes: the communicator of a data-parallel run.

``mpiexec -n K python ...`` starts K copies of the same program. Each one is a *rank* ``r`` in
``[0, K)`` of a *world* of ``size`` K; ``local_rank`` is its rank among the processes on its own
machine (on GPUs: the device it uses). Rank 0 is the one that writes files.

Two communicators, one interface:

* ``SingleProcess``: K = 1 and every collective is the identity. It imports nothing, so a plain
  ``python`` or ``minissd train`` never touches MPI.
* ``MPICommunicator``: the processes of an MPI launch, through mpi4py. NumPy arrays are reduced by
  MPI itself; CuPy arrays through NCCL (CuPy's bindings, one GPU per process), or, without NCCL,
  through MPI by way of host memory (see ``minissd.distributed.gpu``).

``world()`` picks between them from the environment: an MPI launcher (OpenMPI's or MPICH's
``mpiexec``, Slurm's ``srun`` with PMIx) sets variables in every process it starts
(``LAUNCHER_VARIABLES``).

The collectives (every rank must call the same ones in the same order, or they wait forever):

    allreduce_sum_(array)  the elementwise sum over all ranks, in place; NumPy or CuPy
    allreduce(value)       the sum of a Python number (or a small NumPy array) over all ranks
    allgather(obj)         [obj of rank 0, obj of rank 1, ...] on every rank
    bcast(obj)             rank 0's obj on every rank
    barrier()

Failures. One rank that stops (an exception) would leave the others waiting in their next
collective. Two rules prevent the hang:

* ``all_or_none()``, around work without collectives (checking the config, taking the run
  folder's lock, reading the data): when it raises on any rank, it raises on every rank, the
  failing ranks their own error and the others a ``PeerError`` that names the rank and its
  message; every process then ends in order (the CLI prints rank 0's line alone).
* ``stop_all_on_error()``, around work with collectives (the training loop): an exception on one
  rank is printed as ``minissd: rank r of K: <error>`` and every process is ended by
  ``MPI_Abort``, within seconds. An error that every rank raises at the same point, because it
  is computed from numbers all ranks share (a non-finite global loss, drifted weights), is
  marked with ``on_every_rank(exc)`` and passes through in order instead.

A process killed from outside (``kill -9``, out of memory) is noticed by ``mpiexec``, which then
ends the others.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback

import numpy as np

from ..backend import is_cupy_array

#: The rank of this process, as an MPI launcher sets it in every process it starts: OpenMPI's
#: ``mpiexec``, PMIx (OpenMPI 5, Slurm's ``srun --mpi=pmix``), MPICH's and Intel MPI's Hydra.
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")

#: The environment variable that makes a failing rank print its traceback before aborting.
DEBUG_ENV = "MINISSD_DEBUG"

#: What a rank that aborts the run hands ``MPI_Abort`` (``mpiexec`` exits with it).
ABORT_STATUS = 2


class DistributedError(RuntimeError):
    """A data-parallel run cannot go on (mpi4py missing, weights that drifted apart, ...)."""


class PeerError(DistributedError):
    """Another rank failed; ``rank`` names it and the message is its error's."""

    def __init__(self, rank: int, size: int, message: str):
        super().__init__(f"rank {rank} of {size}: {message}")
        self.rank = rank


def on_every_rank(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised by every rank at the same point (so ``stop_all_on_error`` lets it
    end the processes in order instead of aborting them); returns it."""
    exc.on_every_rank = True
    return exc


def launched_rank() -> int | None:
    """This process's rank as its MPI launcher set it in the environment, or None when no
    launcher started it (read without importing MPI: cheap)."""
    for name in LAUNCHER_VARIABLES:
        if name in os.environ:
            return int(os.environ[name])
    return None


def launched_by_mpi() -> bool:
    return launched_rank() is not None


class SingleProcess:
    """The communicator of one process: rank 0 of 1; every collective is the identity."""

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0, the rank that writes files."""
        return self.rank == 0

    def allreduce_sum_(self, array):
        """``array`` summed elementwise over all ranks, in place (C-contiguous); returns it."""
        return array

    def allreduce(self, value):
        """The sum of ``value`` (a number or a small NumPy array) over all ranks."""
        return value

    def allgather(self, obj) -> list:
        return [obj]

    def bcast(self, obj, root: int = 0):
        return obj

    def barrier(self) -> None:
        pass

    def select_gpu(self) -> None:
        """Make this process's GPU (``local_rank``) the current CuPy device."""

    @contextlib.contextmanager
    def all_or_none(self):
        """Run a block without collectives; if it raises on any rank, raise on every rank
        (see the module docstring)."""
        yield

    @contextlib.contextmanager
    def stop_all_on_error(self):
        """Run a block with collectives; an exception on one rank ends every process (see the
        module docstring)."""
        yield

    def abort(self, message: str) -> None:
        """Print ``message`` naming this rank and end every process of the run."""
        print(f"minissd: {message}", file=sys.stderr, flush=True)
        raise SystemExit(ABORT_STATUS)

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class MPICommunicator(SingleProcess):
    """The processes of an MPI launch (mpi4py's ``COMM_WORLD`` unless ``comm`` is given)."""

    def __init__(self, comm=None):
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise DistributedError(
                f"this process was started by an MPI launcher (mpiexec) but mpi4py cannot be "
                f"imported ({exc}); install the `mpi` extra: pip install -e \".[mpi]\"") from None
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks on this machine
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self._gpu = None  # minissd.distributed.gpu.GPUReducer, made on the first CuPy array

    def allreduce_sum_(self, array):
        if not array.flags.c_contiguous:
            raise ValueError(f"allreduce_sum_: the array must be C-contiguous (shape "
                             f"{array.shape}, dtype {array.dtype})")
        if is_cupy_array(array):
            if self._gpu is None:
                from .gpu import GPUReducer

                self._gpu = GPUReducer(self)
            return self._gpu.allreduce_sum_(array)
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array

    def allreduce(self, value):
        if isinstance(value, np.ndarray):
            return self.allreduce_sum_(np.ascontiguousarray(value).copy())
        return self.comm.allreduce(value, op=self.MPI.SUM)

    def allgather(self, obj) -> list:
        return self.comm.allgather(obj)

    def bcast(self, obj, root: int = 0):
        return self.comm.bcast(obj, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()

    def select_gpu(self) -> None:
        from ..backend import cupy

        cp = cupy()
        count = cp.cuda.runtime.getDeviceCount()
        if self.local_size > count:
            raise DistributedError(f"{self.local_size} processes on this machine but "
                                   f"{count} GPUs: start at most one process per GPU")
        cp.cuda.Device(self.local_rank).use()

    @contextlib.contextmanager
    def all_or_none(self):
        error = None
        try:
            yield
        except Exception as exc:
            error = exc
        failures = self.allgather(None if error is None else _one_line(error))
        if error is not None:
            raise error
        failed = [(rank, message) for rank, message in enumerate(failures) if message]
        if failed:
            raise PeerError(failed[0][0], self.size, failed[0][1])

    @contextlib.contextmanager
    def stop_all_on_error(self):
        try:
            yield
        except Exception as exc:
            if self.size == 1 or getattr(exc, "on_every_rank", False):
                raise
            if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                traceback.print_exc()
            self.abort(f"rank {self.rank} of {self.size}: {_one_line(exc)} (ending all "
                       f"{self.size} processes)")

    def abort(self, message: str) -> None:
        print(f"minissd: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        self.comm.Abort(ABORT_STATUS)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_world = None


def world() -> SingleProcess:
    """The communicator of this process: ``MPICommunicator`` when an MPI launcher started it,
    else ``SingleProcess`` (made once, then reused)."""
    global _world
    if _world is None:
        _world = MPICommunicator() if launched_by_mpi() else SingleProcess()
    return _world


__all__ = ["SingleProcess", "MPICommunicator", "world", "launched_by_mpi", "launched_rank",
           "DistributedError", "PeerError", "on_every_rank", "LAUNCHER_VARIABLES"]
