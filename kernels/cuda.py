"""CuPy launchers for the CUDA C kernels in this folder (``iou.cu``, ``nms.cu``; both use
``box_iou.cuh``).

The sources are read and compiled by ``cupy.RawModule`` (NVRTC) on the first call and kept
for the life of the process; importing this module needs neither CuPy nor a GPU. Callers
should use ``minissd.boxes.iou`` / ``nms`` / ``batched_nms``, which validate their inputs
and dispatch here for CuPy arrays.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from minissd.backend import cupy

SOURCE_DIR = Path(__file__).resolve().parent
# No fused multiply-add: keeps the GPU's float results equal to the CPU's.
NVRTC_OPTIONS = ("--fmad=false",)
THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535
NMS_BLOCK = 64  # boxes per tile = bits per mask word; must equal NMS_BLOCK in nms.cu
SHARED_MEMORY_BYTES = 48 * 1024  # what nms_gather_keep may ask for without opting in
GATHER_THREADS = 256


def cuda_source(name: str) -> str:
    """The CUDA C text of ``kernels/<name>.cu``, with each ``#include "x.cuh"`` of this folder
    pasted in (NVRTC compiles a string and knows no include path)."""
    text = (SOURCE_DIR / f"{name}.cu").read_text()
    return re.sub(r'^#include "([\w.]+\.cuh)"$',
                  lambda m: (SOURCE_DIR / m.group(1)).read_text(), text, flags=re.M)


@functools.lru_cache(maxsize=None)
def _module(name: str):
    """Compile ``kernels/<name>.cu`` once per process (CuPy also caches the binary on disk)."""
    return cupy().RawModule(code=cuda_source(name), options=NVRTC_OPTIONS)


def _suffix(dtype) -> str:
    if dtype == np.float32:
        return "f32"
    if dtype == np.float64:
        return "f64"
    raise TypeError(f"CUDA box kernels take float32 or float64 boxes, got {dtype}")


def iou_matrix(a, b):
    """IoU of CuPy corner boxes a: (N, 4) and b: (M, 4), one dtype -> (N, M) of that dtype."""
    cp = cupy()
    a = cp.ascontiguousarray(a)
    b = cp.ascontiguousarray(b)
    n, m = a.shape[0], b.shape[0]
    out = cp.empty((n, m), dtype=a.dtype)
    if n * m == 0:
        return out
    kernel = _module("iou").get_function(f"iou_matrix_{_suffix(a.dtype)}")
    blocks = min((n * m + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK, MAX_BLOCKS)
    kernel((blocks,), (THREADS_PER_BLOCK,), (a, b, np.int64(n), np.int64(m), out))
    return out


def nms_keep(boxes_sorted, segment_sorted, iou_threshold: float):
    """Keep flags for CuPy boxes sorted by descending score; see ``nms.cu``.

    boxes_sorted: (K, 4) float32/float64 corners; segment_sorted: (K,) int64 (class per
    box, or zeros). Returns (K,) bool on the device: True where the box is kept.
    """
    cp = cupy()
    boxes_sorted = cp.ascontiguousarray(boxes_sorted)
    segment_sorted = cp.ascontiguousarray(segment_sorted, dtype=cp.int64)
    n = boxes_sorted.shape[0]
    keep = cp.zeros(n, dtype=cp.bool_)
    if n == 0:
        return keep
    col_blocks = (n + NMS_BLOCK - 1) // NMS_BLOCK
    shared_bytes = col_blocks * 8
    if shared_bytes > SHARED_MEMORY_BYTES:
        raise ValueError(
            f"CUDA NMS handles at most {SHARED_MEMORY_BYTES // 8 * NMS_BLOCK} boxes, got {n}; "
            "use pre_nms_top_k to cut the candidates first"
        )
    module = _module("nms")
    mask = cp.zeros((n, col_blocks), dtype=cp.uint64)
    mask_kernel = module.get_function(f"nms_mask_{_suffix(boxes_sorted.dtype)}")
    mask_kernel(
        (col_blocks, col_blocks),
        (NMS_BLOCK,),
        (boxes_sorted, segment_sorted, np.int32(n), np.float64(iou_threshold), mask),
    )
    gather = module.get_function("nms_gather_keep")
    gather((1,), (GATHER_THREADS,), (mask, np.int32(n), keep), shared_mem=shared_bytes)
    return keep
