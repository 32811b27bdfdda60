// Greedy NMS on the GPU with 64-box bitmask tiles (the scheme of ChainerCV's and
// torchvision's CUDA NMS), compiled by CuPy's RawModule on first use.
//
// Input: n boxes (x1, y1, x2, y2), already sorted by descending score (ties: lower original
// index first), plus a segment id per box (the class for batched NMS, all 0 for plain NMS):
// boxes of different segments never suppress each other.
//
// Step 1, nms_mask_*: the boxes are cut into blocks of 64. Block (row, col) of the grid
// compares the 64 boxes of row block `row` with the 64 boxes of column block `col` and
// writes, for each row box i, one 64-bit word: bit c is set when column box j = 64*col + c
// comes after i in score order, shares its segment, and IoU(i, j) > threshold (strictly).
// mask is (n, col_blocks) uint64; words with col < row are never written nor read.
//
// Step 2, nms_gather_keep: one thread block walks the boxes in score order and keeps a
// box unless a kept box has marked it; the union of the marks of kept boxes lives in
// shared memory (col_blocks words, so n <= 64 * 6144 with 48 KiB of shared memory).
//
// The IoU is computed in double for float and double boxes alike, with the same formula
// as minissd.boxes.nms_reference, so that the keep/suppress decisions equal the CPU's.
// Compile with --fmad=false (no fused multiply-add) to keep that promise.

#define NMS_BLOCK 64  // boxes per tile = bits per mask word

#include "box_iou.cuh"

template <typename T>
__device__ void nms_mask(const T* __restrict__ boxes, const long long* __restrict__ segment,
                         int n, double iou_threshold, unsigned long long* __restrict__ mask) {
    const int row_block = blockIdx.y;
    const int col_block = blockIdx.x;
    if (row_block > col_block) return;  // only boxes later in score order can be suppressed
    const int col_blocks = (n + NMS_BLOCK - 1) / NMS_BLOCK;
    const int row_size = min(n - row_block * NMS_BLOCK, NMS_BLOCK);
    const int col_size = min(n - col_block * NMS_BLOCK, NMS_BLOCK);

    __shared__ double col_boxes[NMS_BLOCK * 4];
    __shared__ long long col_segment[NMS_BLOCK];
    if (threadIdx.x < col_size) {
        const int j = col_block * NMS_BLOCK + threadIdx.x;
        for (int c = 0; c < 4; ++c) col_boxes[threadIdx.x * 4 + c] = (double)boxes[4 * j + c];
        col_segment[threadIdx.x] = segment[j];
    }
    __syncthreads();

    if (threadIdx.x < row_size) {
        const int i = row_block * NMS_BLOCK + threadIdx.x;
        double row_box[4];
        for (int c = 0; c < 4; ++c) row_box[c] = (double)boxes[4 * i + c];
        const long long row_segment = segment[i];
        unsigned long long bits = 0ULL;
        // On the diagonal tile, compare only with the boxes after i.
        const int first = (row_block == col_block) ? threadIdx.x + 1 : 0;
        for (int c = first; c < col_size; ++c) {
            if (col_segment[c] == row_segment && iou_d(row_box, col_boxes + 4 * c) > iou_threshold) {
                bits |= 1ULL << c;
            }
        }
        mask[(long long)i * col_blocks + col_block] = bits;
    }
}

extern "C" __global__ void nms_mask_f32(const float* boxes, const long long* segment, int n,
                                        double iou_threshold, unsigned long long* mask) {
    nms_mask<float>(boxes, segment, n, iou_threshold, mask);
}

extern "C" __global__ void nms_mask_f64(const double* boxes, const long long* segment, int n,
                                        double iou_threshold, unsigned long long* mask) {
    nms_mask<double>(boxes, segment, n, iou_threshold, mask);
}

// Launch with ONE block (any blockDim.x) and col_blocks * 8 bytes of dynamic shared memory.
// keep: (n,) bool, zero-initialised by the caller; set to true for every kept box.
extern "C" __global__ void nms_gather_keep(const unsigned long long* __restrict__ mask, int n,
                                           bool* __restrict__ keep) {
    extern __shared__ unsigned long long removed[];
    const int col_blocks = (n + NMS_BLOCK - 1) / NMS_BLOCK;
    for (int w = threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] = 0ULL;
    __syncthreads();

    for (int word = 0; word < col_blocks; ++word) {
        // Every thread holds its own copy of the current word: the boxes of this tile.
        unsigned long long removed_here = removed[word];
        const int first = word * NMS_BLOCK;
        const int count = min(NMS_BLOCK, n - first);
        for (int b = 0; b < count; ++b) {
            if ((removed_here >> b) & 1ULL) continue;  // suppressed by a kept box
            const int i = first + b;
            if (threadIdx.x == 0) keep[i] = true;
            const unsigned long long* row = mask + (long long)i * col_blocks;
            removed_here |= row[word];  // later boxes of this tile (same value in all threads)
            // Later tiles: each thread owns the words w = word + 1 + threadIdx.x (mod blockDim).
            for (int w = word + 1 + threadIdx.x; w < col_blocks; w += blockDim.x) {
                removed[w] |= row[w];
            }
        }
        __syncthreads();  // the next word is final before anyone reads it
    }
}
