// Pairwise IoU of corner boxes (x1, y1, x2, y2), compiled by CuPy's RawModule on first use.
//
// Same numerics as the Numba kernel (kernels/cpu.py) and the NumPy reference
// (minissd.boxes.iou_reference):
//   w = max(x2 - x1, 0), h = max(y2 - y1, 0)     an empty or inverted box has area 0
//   iou = inter / (area_a + area_b - inter)       and 0 when the union is 0
// The arithmetic runs in double for float boxes too (as in nms.cu), rounded once on the store:
// float math loses all precision on subnormal areas, and this way the float output is the
// float64 reference rounded to float. Compile with --fmad=false so that no multiply-add is
// fused and results match the CPU bit for bit.
//
// Layout: a is (n, 4), b is (m, 4), out is (n, m), all C-contiguous. One thread per output
// element, grid-stride loop, so any grid size covers any n * m.

#include "box_iou.cuh"

template <typename T>
__device__ void iou_matrix(const T* __restrict__ a, const T* __restrict__ b,
                           long long n, long long m, T* __restrict__ out) {
    const long long total = n * m;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += stride) {
        const long long i = k / m;
        const long long j = k - i * m;
        out[k] = (T)iou_d(a + 4 * i, b + 4 * j);
    }
}

extern "C" __global__ void iou_matrix_f32(const float* a, const float* b,
                                          long long n, long long m, float* out) {
    iou_matrix<float>(a, b, n, m, out);
}

extern "C" __global__ void iou_matrix_f64(const double* a, const double* b,
                                          long long n, long long m, double* out) {
    iou_matrix<double>(a, b, n, m, out);
}
