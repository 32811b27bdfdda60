"""The CUDA kernels (CuPy RawModule) against the float64 references. Skipped without a GPU."""

import numpy as np
import pytest
from box_strategies import box_arrays, scored_boxes, thresholds
from hypothesis import given, settings
from hypothesis import strategies as st

from minissd import boxes as B
from minissd import priors as P

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    from minissd.backend import cupy

    return cupy()


@settings(max_examples=50)
@given(box_arrays(max_n=12), box_arrays(max_n=12), st.sampled_from([np.float32, np.float64]))
def test_cuda_iou_matches_reference(a, b, dtype):
    from minissd.backend import cupy

    cp = cupy()
    a, b = a.astype(dtype), b.astype(dtype)
    got = B.iou(cp.asarray(a), cp.asarray(b))
    assert isinstance(got, cp.ndarray) and got.dtype == dtype and got.shape == (len(a), len(b))
    expected = B.iou_reference(a, b)
    if dtype == np.float64:
        np.testing.assert_array_equal(cp.asnumpy(got), expected)
    else:
        np.testing.assert_allclose(cp.asnumpy(got), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(cp.asnumpy(got), B.iou(a, b))  # same float32 math


@settings(max_examples=50)
@given(st.data(), st.sampled_from([np.float32, np.float64]))
def test_cuda_nms_equals_reference(data, dtype):
    from minissd.backend import cupy

    cp = cupy()
    boxes, scores = data.draw(scored_boxes(max_n=150, dtype=dtype))  # > 64: several tiles
    threshold = data.draw(thresholds(boxes))
    top = data.draw(st.one_of(st.none(), st.integers(0, 20)))
    got = B.nms(cp.asarray(boxes), cp.asarray(scores), threshold, top_k=top)
    expected = B.nms_reference(boxes, scores, threshold, top_k=top)
    np.testing.assert_array_equal(cp.asnumpy(got), expected)


def test_cuda_nms_many_clustered_boxes(cp):
    rng = np.random.default_rng(0)
    for n in (1, 63, 64, 65, 5000):
        xy = rng.uniform(0, 500, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 80, (n, 2))], 1).astype(np.float32)
        scores = rng.random(n).astype(np.float32)
        labels = rng.integers(0, 4, n)
        got = B.nms(cp.asarray(boxes), cp.asarray(scores), 0.45)
        np.testing.assert_array_equal(cp.asnumpy(got), B.nms(boxes, scores, 0.45))
        got = B.batched_nms(cp.asarray(boxes), cp.asarray(scores), cp.asarray(labels), 0.45,
                            pre_nms_top_k=400, top_k=200)
        expected = B.batched_nms(boxes, scores, labels, 0.45, pre_nms_top_k=400, top_k=200)
        np.testing.assert_array_equal(cp.asnumpy(got), expected)


def test_cuda_match_encode_decode_equal_cpu(cp):
    priors = P.make_priors(P.SMALL, dtype=np.float64)
    gt = np.array([[0.1, 0.1, 0.4, 0.5], [0.12, 0.1, 0.42, 0.5], [0.6, 0.6, 0.9, 0.95]])
    labels = np.array([0, 3, 1])
    cpu = B.match(gt, labels, priors, variances=P.SSD_VARIANCES)
    gpu = B.match(cp.asarray(gt), cp.asarray(labels), cp.asarray(priors), variances=P.SSD_VARIANCES)
    np.testing.assert_array_equal(cp.asnumpy(gpu.gt_index), cpu.gt_index)
    np.testing.assert_array_equal(cp.asnumpy(gpu.labels), cpu.labels)
    np.testing.assert_allclose(cp.asnumpy(gpu.loc), cpu.loc, rtol=1e-12, atol=1e-12)
    decoded = B.decode(gpu.loc, cp.asarray(priors), P.SSD_VARIANCES)
    np.testing.assert_allclose(cp.asnumpy(decoded), B.decode(cpu.loc, priors, P.SSD_VARIANCES))


def test_cuda_empty_inputs(cp):
    assert B.iou(cp.zeros((0, 4), cp.float32), cp.zeros((3, 4), cp.float32)).shape == (0, 3)
    assert B.nms(cp.zeros((0, 4)), cp.zeros(0), 0.5).shape == (0,)
