"""Box formats and IoU (reference and dispatch): ``minissd/boxes/geometry.py``."""

import subprocess
import sys

import numpy as np
import pytest
from box_strategies import box_arrays
from hypothesis import given
from hypothesis import strategies as st

from minissd import boxes as B

EPS64 = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------- formats


def test_corner_centre_conversions_by_hand():
    corners = np.array([[0.0, 0.0, 2.0, 4.0], [1.0, 1.0, 1.0, 3.0]])
    centre = np.array([[1.0, 2.0, 2.0, 4.0], [1.0, 2.0, 0.0, 2.0]])
    np.testing.assert_array_equal(B.corners_to_centre(corners), centre)
    np.testing.assert_array_equal(B.centre_to_corners(centre), corners)


@given(box_arrays(max_n=8, allow_inverted=False))
def test_conversions_round_trip(boxes):
    back = B.centre_to_corners(B.corners_to_centre(boxes))
    np.testing.assert_allclose(back, boxes, rtol=1e-12, atol=1e-12 * np.abs(boxes).max(initial=1))


def test_conversions_keep_leading_dims_and_dtype():
    x = np.zeros((2, 3, 4), dtype=np.float32)
    assert B.corners_to_centre(x).shape == (2, 3, 4)
    assert B.centre_to_corners(x).dtype == np.float32


# ---------------------------------------------------------------------------- IoU


def test_iou_by_hand():
    a = np.array([[0.0, 0.0, 2.0, 2.0]])
    b = np.array([
        [1.0, 1.0, 3.0, 3.0],  # overlap 1, union 7
        [0.0, 0.0, 2.0, 2.0],  # identical
        [2.0, 0.0, 4.0, 2.0],  # touching edge
        [0.5, 0.5, 1.5, 1.5],  # nested, 1/4
        [5.0, 5.0, 6.0, 6.0],  # disjoint
        [1.0, 1.0, 1.0, 1.0],  # zero-area point inside a
        [2.0, 2.0, 0.0, 0.0],  # inverted: area 0
    ])
    expected = np.array([[1 / 7, 1.0, 0.0, 0.25, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(B.iou_reference(a, b), expected, rtol=1e-15)
    np.testing.assert_allclose(B.iou(a, b), expected, rtol=1e-15)


def test_iou_of_two_zero_area_boxes_is_zero_not_nan():
    p = np.array([[1.0, 1.0, 1.0, 1.0]])
    assert B.iou_reference(p, p)[0, 0] == 0.0
    assert B.iou(p, p)[0, 0] == 0.0
    assert B.iou(p.astype(np.float32), p.astype(np.float32))[0, 0] == 0.0


@pytest.mark.parametrize("n, m", [(0, 3), (3, 0), (0, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_iou_empty_inputs(n, m, dtype):
    a = np.zeros((n, 4), dtype)
    b = np.zeros((m, 4), dtype)
    out = B.iou(a, b)
    assert out.shape == (n, m) and out.dtype == dtype
    assert B.iou_reference(a, b).shape == (n, m)


def test_iou_dtypes():
    a32 = np.array([[0, 0, 1, 1]], np.float32)
    assert B.iou(a32, a32).dtype == np.float32
    assert B.iou(a32, a32.astype(np.float64)).dtype == np.float64
    assert B.iou(np.array([[0, 0, 1, 1]]), a32).dtype == np.float64  # int boxes -> float64
    assert B.iou([[0, 0, 2, 2]], [[0, 0, 1, 1]])[0, 0] == 0.25  # lists are fine


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_iou_rejects_non_finite_naming_the_argument(bad):
    good = np.zeros((2, 4))
    broken = good.copy()
    broken[1, 2] = bad
    with pytest.raises(ValueError, match=r"\bb\b.*NaN or infinite"):
        B.iou(good, broken)
    with pytest.raises(ValueError, match=r"\ba\b.*NaN or infinite"):
        B.iou(broken, good)
    with pytest.raises(ValueError, match=r"\ba\b"):
        B.iou_reference(broken, good)


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 4, 1), (0,)])
def test_iou_rejects_wrong_shapes_naming_argument_and_shape(shape):
    message = r"b must have shape \(N, 4\), got shape " + re_shape(shape)
    with pytest.raises(ValueError, match=message):
        B.iou(np.zeros((1, 4)), np.zeros(shape))


def re_shape(shape):
    return r"\(" + r", ?".join(str(s) for s in shape) + r",?\)"


def test_iou_rejects_non_numeric():
    with pytest.raises(TypeError, match="a must hold real numbers"):
        B.iou(np.array([["a", "b", "c", "d"]]), np.zeros((1, 4)))


@given(box_arrays(max_n=8), box_arrays(max_n=8))
def test_iou_reference_properties(a, b):
    """In [0, 1], symmetric, never NaN."""
    ab = B.iou_reference(a, b)
    assert ab.shape == (a.shape[0], b.shape[0])
    assert np.isfinite(ab).all()
    assert (ab >= 0).all() and (ab <= 1 + 4 * EPS64).all()
    np.testing.assert_array_equal(ab, B.iou_reference(b, a).T)


@given(box_arrays(min_n=1, max_n=8, allow_inverted=False))
def test_iou_is_one_on_identical_non_degenerate_boxes(a):
    positive = B.box_area(a) > 0
    diagonal = np.diag(B.iou_reference(a, a))
    np.testing.assert_array_equal(diagonal[positive], 1.0)
    np.testing.assert_array_equal(diagonal[~positive], 0.0)


@given(
    st.lists(
        st.tuples(*[st.floats(0, 100)] * 2, *[st.floats(0.01, 50)] * 2), min_size=1, max_size=6
    ),
    st.floats(-100, 100),
    st.floats(-100, 100),
    st.floats(0.25, 4),
)
def test_iou_invariant_to_translation_and_common_scaling(rows, dx, dy, s):
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in rows])
    base = B.iou(boxes, boxes)
    shifted = boxes + np.array([dx, dy, dx, dy])
    np.testing.assert_allclose(B.iou(shifted, shifted), base, atol=1e-9)
    np.testing.assert_allclose(B.iou(boxes * s, boxes * s), base, atol=1e-9)


def test_importing_minissd_compiles_no_kernel():
    code = (
        "import sys, minissd, minissd.boxes, minissd.priors\n"
        "assert 'numba' not in sys.modules, 'importing minissd imported numba'\n"
        "assert 'minissd.kernels.cpu' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
