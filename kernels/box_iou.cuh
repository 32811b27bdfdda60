// IoU of two corner boxes (x1, y1, x2, y2), computed in double for float and double boxes
// alike, with the formula of minissd.boxes.iou_reference:
//   w = max(x2 - x1, 0), h = max(y2 - y1, 0)     an empty or inverted box has area 0
//   iou = inter / (area_a + area_b - inter)       and 0 when the union is 0
// Shared by iou.cu and nms.cu (kernels/cuda.py pastes it in where they #include it).

#ifndef MINISSD_BOX_IOU_CUH
#define MINISSD_BOX_IOU_CUH

__device__ __forceinline__ double max_d(double u, double v) { return u > v ? u : v; }
__device__ __forceinline__ double min_d(double u, double v) { return u < v ? u : v; }

template <typename T>
__device__ __forceinline__ double area_d(const T* box) {
    return max_d((double)box[2] - (double)box[0], 0.0) *
           max_d((double)box[3] - (double)box[1], 0.0);
}

template <typename T>
__device__ __forceinline__ double iou_d(const T* a, const T* b) {
    const double inter_w = max_d(min_d(a[2], b[2]) - max_d(a[0], b[0]), 0.0);
    const double inter_h = max_d(min_d(a[3], b[3]) - max_d(a[1], b[1]), 0.0);
    const double inter = inter_w * inter_h;
    const double union_area = area_d(a) + area_d(b) - inter;
    return union_area > 0.0 ? inter / union_area : 0.0;
}

#endif  // MINISSD_BOX_IOU_CUH
