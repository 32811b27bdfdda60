"""Summing CuPy arrays over processes: NCCL, or MPI by way of host memory.

One process per GPU: ``MPICommunicator.select_gpu`` makes device ``local_rank`` current before
the model moves there. Then, for every CuPy array handed to ``allreduce_sum_``:

* **NCCL** (NVIDIA's collective library, in CuPy as ``cupy.cuda.nccl``), when CuPy has it: the
  sum runs on the GPUs, over NVLink or PCIe inside a machine and over InfiniBand or TCP sockets
  between machines, on CuPy's current stream (so it is ordered with the kernels before and
  after it). The NCCL communicator is made on the first call: rank 0 draws its unique id and MPI
  broadcasts it (every rank makes that first call at the same point: the first synchronised
  batch norm or the first gradient sum).
* **a CUDA-aware MPI** (one built with CUDA support, e.g. OpenMPI with UCX), when
  ``MINISSD_CUDA_AWARE_MPI=1``: MPI reads and writes the device memory itself.
* otherwise **through host memory**: copy to the CPU, sum with MPI, copy back. Correct
  everywhere, and slower by two PCIe copies of every buffer.

Unrun: no GPU was available where this was written; the tests that need one skip without it.
"""

from __future__ import annotations

import os

#: Set to 1 when the MPI library is CUDA-aware and NCCL is not available.
CUDA_AWARE_ENV = "MINISSD_CUDA_AWARE_MPI"


class GPUReducer:
    """``allreduce_sum_`` for CuPy arrays on the processes of ``comm`` (an MPICommunicator)."""

    def __init__(self, comm):
        from ..backend import cupy

        self.cp = cupy()
        self.mpi = comm
        self._nccl = None
        try:
            from cupy.cuda import nccl
        except ImportError:
            nccl = None
        if nccl is not None and getattr(nccl, "available", True):
            self.how = "nccl"
            self.nccl = nccl
            unique_id = comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None)
            self._nccl = nccl.NcclCommunicator(comm.size, unique_id, comm.rank)
            self._dtypes = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64,
                            "int64": nccl.NCCL_INT64, "int32": nccl.NCCL_INT32}
        elif os.environ.get(CUDA_AWARE_ENV, "") not in ("", "0"):
            self.how = "cuda-aware mpi"
        else:
            self.how = "host"

    def allreduce_sum_(self, array):
        """``array`` (a C-contiguous CuPy array) summed over all ranks, in place; returns it."""
        if self.how == "nccl":
            dtype = self._dtypes.get(array.dtype.name)
            if dtype is None:
                raise TypeError(f"allreduce_sum_: NCCL sums of {array.dtype} are not wired; "
                                f"use one of {sorted(self._dtypes)}")
            stream = self.cp.cuda.get_current_stream()
            self._nccl.allReduce(array.data.ptr, array.data.ptr, array.size, dtype,
                                 self.nccl.NCCL_SUM, stream.ptr)
            return array
        MPI = self.mpi.MPI
        if self.how == "cuda-aware mpi":
            self.cp.cuda.get_current_stream().synchronize()  # MPI does not know CuPy's stream
            self.mpi.comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
            return array
        host = self.cp.asnumpy(array)
        self.mpi.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        array.set(host)
        return array
