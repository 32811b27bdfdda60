"""Encode / decode and their input errors: ``minissd/boxes/coder.py``."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minissd import boxes as B

VARIANCES = (0.1, 0.1, 0.2, 0.2)


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


def test_encode_decode_match_take_the_variances_alike_with_the_papers_default():
    from minissd.priors import SSD_VARIANCES

    priors = np.array([[0.5, 0.5, 0.2, 0.4], [0.3, 0.3, 0.4, 0.4]])
    gt = np.array([[0.42, 0.3, 0.62, 0.7]])
    other = (0.1, 0.2, 0.3, 0.4)
    assert SSD_VARIANCES == VARIANCES
    # default = the paper's; by keyword = by position (encode, decode) for any variances
    t = B.encode(gt[[0, 0]], priors)
    np.testing.assert_array_equal(t, B.encode(gt[[0, 0]], priors, SSD_VARIANCES))
    np.testing.assert_array_equal(B.encode(gt[[0, 0]], priors, variances=other),
                                  B.encode(gt[[0, 0]], priors, other))
    np.testing.assert_array_equal(B.decode(t, priors), B.decode(t, priors, SSD_VARIANCES))
    np.testing.assert_array_equal(B.decode(t, priors, variances=other),
                                  B.decode(t, priors, other))
    # match: the same keyword and default (positional after iou_threshold works too)
    m = B.match(gt, [0], priors)
    np.testing.assert_array_equal(m.loc, B.match(gt, [0], priors, 0.5, SSD_VARIANCES).loc)
    np.testing.assert_array_equal(B.match(gt, [0], priors, variances=other).loc[0],
                                  B.encode(gt, priors[:1], variances=other)[0])
