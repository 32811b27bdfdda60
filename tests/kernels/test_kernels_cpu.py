"""The Numba kernels against the float64 references, called through minissd.boxes."""

import subprocess
import sys

import numpy as np
from box_strategies import box_arrays, scored_boxes, thresholds
from hypothesis import given
from hypothesis import strategies as st

from minissd import boxes as B


@given(box_arrays(max_n=12), box_arrays(max_n=12))
def test_iou_float64_kernel_is_bit_identical_to_reference(a, b):
    np.testing.assert_array_equal(B.iou(a, b), B.iou_reference(a, b))


@given(box_arrays(max_n=12, dtype=np.float32), box_arrays(max_n=12, dtype=np.float32))
def test_iou_float32_kernel_is_the_reference_rounded_to_float32(a, b):
    """float64 arithmetic inside, one rounding on the store: exact even for subnormal areas
    (a regression case: widths of 1e-45 gave 0 instead of 0.5 with float32 arithmetic)."""
    got = B.iou(a, b)
    assert got.dtype == np.float32
    expected = B.iou_reference(a, b)  # float64 on the same float32 coordinates
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    assert ((got >= 0) & (got <= 1)).all()
    np.testing.assert_array_equal(got, B.iou(b, a).T)


def test_iou_float32_subnormal_areas():
    a = np.array([[0, 0, 1e-45, 1]], np.float32)
    b = np.array([[0, 0, 1e-45, 0.5]], np.float32)
    assert B.iou(a, b)[0, 0] == np.float32(0.5)


def test_iou_kernel_large_and_not_contiguous():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (300, 2))
    a = np.concatenate([xy, xy + rng.uniform(0, 30, (300, 2))], 1)
    b = np.asfortranarray(a[::2])  # strided, Fortran order: copied to C order first
    np.testing.assert_array_equal(B.iou(a, b), B.iou_reference(a, b))


@given(st.data(), st.sampled_from([np.float32, np.float64]))
def test_nms_kernel_segments_equal_reference(data, dtype):
    """Several segments in one kernel call == the reference on each segment."""
    from minissd.kernels import cpu

    parts = [data.draw(scored_boxes(max_n=8, dtype=dtype)) for _ in range(3)]
    threshold = data.draw(thresholds(np.concatenate([p[0] for p in parts])))
    ranked, starts, expected = [], [0], []
    for boxes, scores in parts:
        order = np.argsort(-scores, kind="stable")
        ranked.append(boxes[order].astype(np.float64))
        keep_ref = B.nms_reference(boxes, scores, threshold)
        flags = np.isin(order, keep_ref)
        expected.append(flags)
        starts.append(starts[-1] + len(boxes))
    keep = cpu.nms_sorted_segments(np.concatenate(ranked).reshape(-1, 4),
                                   np.array(starts, np.int64), threshold, -1)
    np.testing.assert_array_equal(keep, np.concatenate(expected))


def test_kernel_module_compiles_lazily():
    code = (
        "from minissd.kernels import cpu\n"
        "assert cpu.iou_matrix.signatures == [], 'compiled at import'\n"
        "assert cpu.nms_sorted_segments.signatures == []\n"
        "import numpy as np\n"
        "from minissd.boxes import iou\n"
        "iou(np.zeros((1, 4)), np.zeros((1, 4)))\n"
        "assert len(cpu.iou_matrix.signatures) == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
