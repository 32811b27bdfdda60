"""Run the CUDA C of kernels/*.cu on the CPU, to check its index arithmetic without a GPU.

The .cu files are compiled with g++ behind a small shim: ``__global__`` and friends become
plain C++, ``blockIdx``/``threadIdx``/``blockDim``/``gridDim`` become globals that a host
loop sets, and ``__syncthreads`` does nothing. That is only faithful where threads do not
talk through shared memory in between syncs, so:

* ``iou_matrix_*``: any grid (the grid-stride loop); we use several small blocks;
* ``nms_mask_*``: each block is run twice, thread by thread: the first sweep fills the
  shared tile, the second recomputes every mask word with the full tile (idempotent);
* ``nms_gather_keep``: one block of one thread (the sequential walk).

This checks the host-independent logic (tiles, bit positions, the diagonal, the gather);
the GPU tests in test_kernels_gpu.py check the real thing where a GPU exists.
"""

import shutil
import subprocess

import numpy as np
import pytest
from box_strategies import scored_boxes, thresholds
from hypothesis import given, settings
from hypothesis import strategies as st
from minissd.kernels import cuda

from minissd import boxes as B

SHIM = r"""
#include <algorithm>
#include <cstdio>
#include <vector>
using std::min;
struct Dim3 { unsigned x = 0, y = 0, z = 0; };
static Dim3 blockIdx, threadIdx, blockDim, gridDim;
static void __syncthreads() {}
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
unsigned long long removed[1 << 16];  // nms_gather_keep's dynamic shared memory
"""

HARNESS = r"""
// stdin: "iou n m" then n*4 + m*4 doubles        -> n*m IoUs (float32 and float64 kernels)
//        "nms n threshold" then n*4 doubles, n segment ids -> keep flags (f32 and f64)
int main() {
    char what[8];
    if (scanf("%7s", what) != 1) return 1;
    if (what[0] == 'i') {
        long long n, m;
        scanf("%lld %lld", &n, &m);
        std::vector<double> a(4 * n), b(4 * m), out(n * m);
        for (auto& v : a) scanf("%lf", &v);
        for (auto& v : b) scanf("%lf", &v);
        std::vector<float> af(a.begin(), a.end()), bf(b.begin(), b.end()), outf(n * m);
        gridDim.x = 3; blockDim.x = 5;  // a grid much smaller than n * m
        for (blockIdx.x = 0; blockIdx.x < gridDim.x; ++blockIdx.x)
            for (threadIdx.x = 0; threadIdx.x < blockDim.x; ++threadIdx.x) {
                iou_matrix_f64(a.data(), b.data(), n, m, out.data());
                iou_matrix_f32(af.data(), bf.data(), n, m, outf.data());
            }
        for (long long k = 0; k < n * m; ++k) printf("%.17g %.9g\n", out[k], (double)outf[k]);
        return 0;
    }
    int n;
    double threshold;
    scanf("%d %lf", &n, &threshold);
    std::vector<double> boxes(4 * n);
    std::vector<long long> segment(n);
    for (auto& v : boxes) scanf("%lf", &v);
    for (auto& v : segment) scanf("%lld", &v);
    std::vector<float> boxes_f(boxes.begin(), boxes.end());
    const int col_blocks = (n + NMS_BLOCK - 1) / NMS_BLOCK;
    for (int variant = 0; variant < 2; ++variant) {
        std::vector<unsigned long long> mask((size_t)n * col_blocks, 0ULL);
        gridDim.x = gridDim.y = col_blocks; blockDim.x = NMS_BLOCK;
        for (blockIdx.y = 0; blockIdx.y < gridDim.y; ++blockIdx.y)
            for (blockIdx.x = 0; blockIdx.x < gridDim.x; ++blockIdx.x)
                for (int sweep = 0; sweep < 2; ++sweep)
                    for (threadIdx.x = 0; threadIdx.x < blockDim.x; ++threadIdx.x) {
                        if (variant == 0)
                            nms_mask_f64(boxes.data(), segment.data(), n, threshold, mask.data());
                        else
                            nms_mask_f32(boxes_f.data(), segment.data(), n, threshold, mask.data());
                    }
        bool keep[1 << 16] = {false};
        gridDim.x = gridDim.y = 1; blockDim.x = 1; blockIdx.x = blockIdx.y = 0; threadIdx.x = 0;
        nms_gather_keep(mask.data(), n, keep);
        for (int i = 0; i < n; ++i) printf("%d", keep[i] ? 1 : 0);
        printf("\n");
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the CPU emulation of the CUDA kernels")
    folder = tmp_path_factory.mktemp("cuda_emulated")
    sources = [cuda.cuda_source(name).replace("extern __shared__", "extern")
               for name in ("iou", "nms")]
    program = folder / "emulated.cpp"
    program.write_text(SHIM + "\n".join(sources) + HARNESS)
    binary = folder / "emulated"
    result = subprocess.run([compiler, "-O1", "-ffp-contract=off", "-o", str(binary), str(program)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return binary


def _run(binary, text):
    return subprocess.run([str(binary)], input=text, capture_output=True, text=True,
                          check=True).stdout


def _numbers(array):
    return " ".join(repr(float(v)) for v in np.asarray(array, dtype=np.float64).ravel())


def test_emulated_iou_kernel(emulator):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 10, (7, 2))
    a = np.concatenate([xy, xy + rng.uniform(-1, 5, (7, 2))], 1)
    b = np.concatenate([a[:3], np.array([[1, 1, 1, 1], [0, 0, 10, 10.0]])])
    out = np.array(_run(emulator, f"iou {len(a)} {len(b)} {_numbers(a)} {_numbers(b)}").split(),
                   dtype=np.float64).reshape(len(a) * len(b), 2)
    np.testing.assert_array_equal(out[:, 0].reshape(len(a), len(b)), B.iou_reference(a, b))
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    np.testing.assert_array_equal(out[:, 1].reshape(len(a), len(b)).astype(np.float32),
                                  B.iou(a32, b32))


@settings(max_examples=25)
@given(st.data())
def test_emulated_nms_kernels_equal_reference(emulator, data):
    boxes, scores = data.draw(scored_boxes(max_n=140, dtype=np.float32))  # up to 3 tiles
    threshold = data.draw(thresholds(boxes))
    n = boxes.shape[0]
    if n == 0:
        return
    segment = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    order = np.lexsort((-scores, segment))  # by segment, then score; ties by index
    text = f"nms {n} {threshold!r} {_numbers(boxes[order])} {' '.join(map(str, segment[order]))}"
    keep_f64, keep_f32 = _run(emulator, text).split()
    expected = B.batched_nms_reference(boxes, scores, segment, threshold)
    for flags in (keep_f64, keep_f32):
        kept = order[np.array([c == "1" for c in flags])]
        kept = np.sort(kept)[np.argsort(-scores[np.sort(kept)], kind="stable")]
        np.testing.assert_array_equal(kept, expected)
