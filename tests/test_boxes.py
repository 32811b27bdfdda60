"""Box formats, IoU (reference and dispatch), encode/decode, input errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minissd import boxes as B

sys.path.insert(0, str(Path(__file__).parent / "kernels"))
from box_strategies import box_arrays  # noqa: E402

VARIANCES = (0.1, 0.1, 0.2, 0.2)
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


# ---------------------------------------------------------------------------- encode / decode


def test_encode_by_hand():
    priors = np.array([[0.5, 0.5, 0.2, 0.4]])
    gt = np.array([[0.42, 0.3, 0.62, 0.7]])  # centre (0.52, 0.5), size (0.2, 0.4)
    t = B.encode(gt, priors, VARIANCES)
    np.testing.assert_allclose(t, [[0.02 / (0.1 * 0.2), 0.0, 0.0, 0.0]], atol=1e-12)
    gt2 = np.array([[0.3, 0.1, 0.7, 0.9]])  # size (0.4, 0.8): twice the prior
    np.testing.assert_allclose(B.encode(gt2, priors, VARIANCES)[0, 2:], [np.log(2) / 0.2] * 2)


def test_a_prior_encodes_to_zero_and_decodes_to_itself():
    priors = np.array([[0.3, 0.6, 0.2, 0.1], [0.5, 0.5, 1.0, 1.0]])
    corners = B.centre_to_corners(priors)
    np.testing.assert_allclose(B.encode(corners, priors, VARIANCES), 0, atol=1e-12)
    np.testing.assert_allclose(B.decode(np.zeros((2, 4)), priors, VARIANCES), corners, atol=1e-15)


@given(
    st.lists(
        st.tuples(st.floats(-1, 2), st.floats(-1, 2), st.floats(1e-3, 2), st.floats(1e-3, 2),
                  st.floats(0, 1), st.floats(0, 1), st.floats(1e-3, 1), st.floats(1e-3, 1)),
        min_size=1, max_size=10,
    )
)
def test_encode_decode_round_trip(rows):
    rows = np.array(rows)
    gt = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1)
    priors = rows[:, 4:]
    back = B.decode(B.encode(gt, priors, VARIANCES), priors, VARIANCES)
    np.testing.assert_allclose(back, gt, rtol=1e-9, atol=1e-12)
    # and in float32
    gt32, priors32 = gt.astype(np.float32), priors.astype(np.float32)
    t32 = B.encode(gt32, priors32, VARIANCES)
    assert t32.dtype == np.float32
    np.testing.assert_allclose(B.decode(t32, priors32, VARIANCES), gt32, rtol=1e-4, atol=1e-5)


def test_encode_decode_batched_leading_dims():
    rng = np.random.default_rng(0)
    priors = np.concatenate([rng.uniform(0, 1, (7, 2)), rng.uniform(0.05, 0.5, (7, 2))], 1)
    loc = rng.normal(size=(3, 7, 4))
    boxes = B.decode(loc, priors, VARIANCES)
    assert boxes.shape == (3, 7, 4)
    np.testing.assert_allclose(B.encode(boxes, priors, VARIANCES), loc, atol=1e-10)
    np.testing.assert_allclose(boxes[1], B.decode(loc[1], priors, VARIANCES))


def test_decode_max_log_scale_caps_the_size():
    priors = np.array([[0.5, 0.5, 0.1, 0.1]])
    loc = np.array([[0.0, 0.0, 1e4, 1e4]])  # would overflow exp
    cap = np.log(1000.0 / 16)
    box = B.decode(loc, priors, VARIANCES, max_log_scale=cap)
    np.testing.assert_allclose(box[0, 2] - box[0, 0], 0.1 * 1000 / 16)


# ----------------------------------------------------------------- encode / decode input errors

PRIORS = np.array([[0.5, 0.5, 0.2, 0.4], [0.3, 0.3, 0.1, 0.1]])
GT = B.centre_to_corners(PRIORS) + np.array([0.01, 0.0, 0.02, 0.0])  # both priors, shifted


@pytest.mark.parametrize("fn", ["encode", "decode"])
@pytest.mark.parametrize("variances, message", [
    ((0.1, 0.1, 0.2), r"variances must be 4 numbers .* shape \(3,\)"),  # was silently used
    ((0.1, 0.2), r"variances must be 4 numbers .* shape \(2,\)"),  # was a broadcast error
    ([[0.1, 0.1], [0.2, 0.2]], r"variances must be 4 numbers .* shape \(2, 2\)"),
    ((0.0, 0.1, 0.2, 0.2), r"variances must be finite and > 0 .* \[0.0, 0.1, 0.2, 0.2\]"),
    ((0.1, 0.1, -0.2, 0.2), r"variances must be finite and > 0"),
    ((0.1, np.nan, 0.2, 0.2), r"variances must be finite and > 0"),
])
def test_encode_decode_reject_bad_variances(fn, variances, message):
    first = GT if fn == "encode" else np.zeros((2, 4))
    with pytest.raises(ValueError, match=message):
        getattr(B, fn)(first, PRIORS, variances)


@pytest.mark.parametrize("fn", ["encode", "decode"])
@pytest.mark.parametrize("priors, message", [
    ([[0.5, 0.5, 0.0, 0.4], [0.3, 0.3, 0.1, 0.1]],
     r"priors must have width and height > 0 .*prior 0 is \[0.5, 0.5, 0.0, 0.4\]"),
    ([[0.5, 0.5, 0.2, 0.4], [0.3, 0.3, 0.1, -0.1]],
     r"priors must have width and height > 0 .*prior 1"),
    ([[0.5, np.nan, 0.2, 0.4], [0.3, 0.3, 0.1, 0.1]], r"priors contains NaN or infinite"),
    ([[0.5, 0.5, np.inf, 0.4], [0.3, 0.3, 0.1, 0.1]], r"priors contains NaN or infinite"),
    ([[0.5, 0.5, 0.2], [0.3, 0.3, 0.1]], r"priors must have shape \(P, 4\).*got shape \(2, 3\)"),
])
def test_encode_decode_reject_bad_priors(fn, priors, message):
    first = GT if fn == "encode" else np.zeros((2, 4))
    with pytest.raises(ValueError, match=message):
        getattr(B, fn)(first, np.array(priors), VARIANCES)


@pytest.mark.parametrize("loc, message", [
    ([[np.nan, 0, 0, 0], [0, 0, 0, 0]], "loc contains NaN or infinite"),  # was NaN boxes
    ([[0, 0, np.inf, 0], [0, 0, 0, 0]], "loc contains NaN or infinite"),
    (np.zeros((2, 3)), r"loc must have shape \(\.\.\., P, 4\) with P = 2 priors, got .*\(2, 3\)"),
    (np.zeros((1, 4)), r"loc must have shape .*got shape \(1, 4\)"),  # was broadcast to both
    (np.zeros((3, 4)), r"loc must have shape .*got shape \(3, 4\)"),  # was a broadcast error
    (np.zeros(4), r"loc must have shape .*got shape \(4,\)"),
    (np.zeros((5, 3, 4)), r"loc must have shape .*got shape \(5, 3, 4\)"),
])
def test_decode_rejects_bad_loc_naming_it(loc, message):
    with pytest.raises(ValueError, match=message):
        B.decode(np.array(loc, dtype=float), PRIORS, VARIANCES)


def test_decode_rejects_a_non_finite_cap():
    with pytest.raises(ValueError, match="max_log_scale must be None or a finite number"):
        B.decode(np.zeros((2, 4)), PRIORS, VARIANCES, max_log_scale=np.nan)


@pytest.mark.parametrize("matched, message", [
    ([[0.4, 0.3, 0.4, 0.7], [0.2, 0.2, 0.4, 0.4]],  # zero width: log 0 = -inf
     r"matched must have x2 > x1 and y2 > y1 .*box \(0,\) is \[0.4, 0.3, 0.4, 0.7\]"),
    ([[0.4, 0.3, 0.6, 0.7], [0.2, 0.4, 0.4, 0.2]],  # inverted: log of a negative = NaN
     r"matched must have x2 > x1 and y2 > y1 .*box \(1,\)"),
    ([[0.4, 0.3, 0.6, np.nan], [0.2, 0.2, 0.4, 0.4]], "matched contains NaN or infinite"),
    (np.zeros((2, 3)), r"matched must have shape \(\.\.\., P, 4\) with P = 2 priors"),
    ([[0.4, 0.3, 0.6, 0.7]], r"matched must have shape .*got shape \(1, 4\)"),
])
def test_encode_rejects_bad_matched_boxes_naming_them(matched, message):
    with pytest.raises(ValueError, match=message):
        B.encode(np.array(matched, dtype=float), PRIORS, VARIANCES)


def test_encode_error_gives_the_index_in_a_batch():
    matched = np.stack([GT, GT])
    matched[1, 0, 2] = matched[1, 0, 0]  # image 1, prior 0: zero width
    with pytest.raises(ValueError, match=r"box \(1, 0\)"):
        B.encode(matched, PRIORS, VARIANCES)


def test_encode_decode_accept_variances_as_any_sequence_and_integer_inputs():
    for v in ([0.1, 0.1, 0.2, 0.2], np.array(VARIANCES), np.array(VARIANCES, np.float32)):
        np.testing.assert_allclose(B.encode(GT, PRIORS, v), B.encode(GT, PRIORS, VARIANCES))
    assert B.decode(np.zeros((2, 4), np.int64), PRIORS, VARIANCES).dtype == np.float64
