"""Winograd F(2x2, 3x3) and, for the forward, F(4x4, 3x3) (``minissd.kernels.winograd``): the
matrices satisfy the minimal filtering identity, and conv2d through Winograd gives the numbers of
the readable reference (``conv2d_reference``: im2col and one product) for the forward pass and
all gradients, in float64 on hypothesis-drawn shapes and paddings, with one and several bands,
bit for bit on any thread count; its gradients pass gradcheck."""

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minissd.kernels import batch_threads as _threads
from minissd.kernels import winograd as _winograd

from minissd.autograd import Tensor, gradcheck
from minissd.autograd import functional as F

seeds = st.integers(0, 2**32 - 1)


@given(d=st.lists(st.floats(-10, 10), min_size=4, max_size=4),
       g=st.lists(st.floats(-10, 10), min_size=3, max_size=3))
def test_matrices_give_two_outputs_of_a_3_tap_correlation(d, g):
    """F(2, 3) in one dimension: ``A^T [(G g) * (B^T d)] = [d0 g0 + d1 g1 + d2 g2, d1 g0 + ...]``;
    the 2-D algorithm nests it along rows and columns."""
    at, bt, gm = (np.array(m, dtype=np.float64) for m in (_winograd.AT, _winograd.BT,
                                                          _winograd.G))
    d, g = np.array(d), np.array(g)
    direct = [d[0:3] @ g, d[1:4] @ g]
    np.testing.assert_allclose(at @ ((gm @ g) * (bt @ d)), direct, rtol=1e-12, atol=1e-9)


@given(d=st.lists(st.floats(-10, 10), min_size=6, max_size=6),
       g=st.lists(st.floats(-10, 10), min_size=3, max_size=3))
def test_f4_matrices_give_four_outputs_of_a_3_tap_correlation(d, g):
    """F(4, 3): six inputs, four outputs ``d[i:i+3] @ g``, with 6 multiplications instead of 12."""
    at, bt, gm = (np.array(m, dtype=np.float64) for m in (_winograd.AT4, _winograd.BT4,
                                                          _winograd.G4))
    d, g = np.array(d), np.array(g)
    direct = [d[i: i + 3] @ g for i in range(4)]
    np.testing.assert_allclose(at @ ((gm @ g) * (bt @ d)), direct, rtol=1e-12, atol=1e-9)


@contextlib.contextmanager
def forced(winograd, band_bytes=_winograd.CPU_BAND_BYTES, threads=None,
           group_columns=_winograd.MIN_GEMM_COLUMNS, f4=False):
    """Winograd on (for any channel count) or off; a band size; the image grouping; a thread
    count with no minimum work; the forward by F(4x4, 3x3) on any map (``f4``) or never
    (hypothesis refuses function-scoped fixtures: no monkeypatch)."""
    import os

    saved = (_winograd.MIN_CHANNELS, _winograd.CPU_BAND_BYTES, _winograd.MIN_GEMM_COLUMNS,
             _threads.MIN_PARALLEL_WORK, _winograd.MIN_F4_SIDE, _winograd.MIN_F4_TILES,
             os.environ.get("MINISSD_NUM_THREADS"))
    _winograd.MIN_CHANNELS = 0 if winograd else 10**9
    _winograd.CPU_BAND_BYTES = band_bytes
    _winograd.MIN_GEMM_COLUMNS = group_columns
    _winograd.MIN_F4_SIDE = _winograd.MIN_F4_TILES = 0 if f4 else 10**9
    if threads is not None:
        _threads.MIN_PARALLEL_WORK = 0
        os.environ["MINISSD_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        (_winograd.MIN_CHANNELS, _winograd.CPU_BAND_BYTES, _winograd.MIN_GEMM_COLUMNS,
         _threads.MIN_PARALLEL_WORK, _winograd.MIN_F4_SIDE, _winograd.MIN_F4_TILES) = saved[:6]
        if threads is not None:
            if saved[6] is None:
                del os.environ["MINISSD_NUM_THREADS"]
            else:
                os.environ["MINISSD_NUM_THREADS"] = saved[6]


def _conv(arrays, padding, need_input=True, bias=True, conv2d=F.conv2d):
    """Output and gradients (x, weight, bias) of conv2d under a fixed upstream gradient."""
    x, w, b = (Tensor(a.copy(), requires_grad=req) for a, req in
               zip(arrays, (need_input, True, True)))
    y = conv2d(x, w, b if bias else None, padding=padding)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype)
    y.backward(g)
    return [y.data, x.grad, w.grad] + ([b.grad] if bias else [])


@st.composite
def case(draw):
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    # outputs of at least 2x2 (Winograd's smallest tile); odd sizes crop the last tile
    h, w = (draw(st.integers(max(1, 4 - 2 * p), 13 - p)) for p in padding)
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(seeds))
    arrays = [rng.standard_normal(s) for s in ((n, c, h, w), (o, c, 3, 3), (o,))]
    return arrays, padding


@settings(max_examples=60, deadline=None)
@given(case=case(), band_bytes=st.sampled_from([1, 3000, 1 << 20]),
       group_columns=st.sampled_from([1, 20, 384]), need_input=st.booleans(), bias=st.booleans(),
       f4=st.booleans())
def test_winograd_equals_the_reference(case, band_bytes, group_columns, need_input, bias, f4):
    """``band_bytes`` 1: one tile row per band; 3000: a few; 1 MiB: the whole image.
    ``group_columns`` 1: one image per group; 20: groups of a few images, the last one often
    smaller. ``f4``: the forward by F(4x4, 3x3) (tiles hanging over by 1 to 3 pixels)."""
    arrays, padding = case
    reference = _conv(arrays, padding, need_input, bias, conv2d=F.conv2d_reference)
    with forced(True, band_bytes, group_columns=group_columns, f4=f4):
        ours = _conv(arrays, padding, need_input, bias)
    for a, b in zip(ours, reference):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(case=case(), band_bytes=st.sampled_from([1, 3000, 1 << 20]),
       group_columns=st.sampled_from([1, 20, 384]))
def test_whole_plane_transforms_give_the_kernels_bits(case, band_bytes, group_columns):
    """The path CuPy arrays take, run on NumPy: the whole-plane transforms
    (``*_tiles_reference``) read zero-padded copies of the images and of g (``_Padding``'s
    buffers) where the Numba kernels read the arrays themselves; the numbers are the same bits."""
    arrays, padding = case
    with forced(True, band_bytes, group_columns=group_columns):
        kernels = _conv(arrays, padding)
        saved = _winograd._on_cpu
        _winograd._on_cpu = lambda xp: False
        try:
            planes = _conv(arrays, padding)
        finally:
            _winograd._on_cpu = saved
    for a, b in zip(planes, kernels):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=15, deadline=None)
@given(case=case(), threads=st.integers(2, 3), f4=st.booleans())
def test_winograd_gives_the_same_numbers_on_any_thread_count(case, threads, f4):
    arrays, padding = case
    with forced(True, threads=1, f4=f4):
        one = _conv(arrays, padding)
    with forced(True, threads=threads, f4=f4):
        many = _conv(arrays, padding)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)  # bit for bit (see _threads)


@settings(max_examples=15, deadline=None)
@given(case=case(), f4=st.booleans())
def test_winograd_gradcheck(case, f4):
    arrays, padding = case
    with forced(True, band_bytes=3000, f4=f4):
        assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=padding),
                         *(Tensor(a, requires_grad=True) for a in arrays))


@pytest.mark.parametrize("f4", [False, True])
def test_float32_error_stays_small(f4):
    """At a VGG-like layer the float32 result (forward and gradients) stays within 1e-5 of the
    largest value, and near im2col's error: within 4x for F(2x2, 3x3); within 16x for
    F(4x4, 3x3) (measured: forward 4.3e-6, input gradient 5.5e-6, weight gradient 6.9e-6, 10x
    to 14x im2col's: its transforms multiply by up to 8, and float32 rounds G's 1/6 and 1/24)."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 64, 38, 38)), rng.standard_normal((64, 64, 3, 3)) * 0.05,
              rng.standard_normal(64)]
    exact = _conv(arrays, (1, 1))
    errors = {}
    for winograd in (True, False):
        with forced(winograd, f4=f4):
            got = _conv([a.astype(np.float32) for a in arrays], (1, 1))
        errors[winograd] = [np.abs(a - b).max() / np.abs(b).max() for a, b in zip(got, exact)]
    assert max(errors[True]) < 1e-5
    assert max(errors[True]) < (16 if f4 else 4) * max(errors[False])


@pytest.mark.parametrize("kernel, stride, dilation, c, o, out_hw, expected", [
    ((3, 3), (1, 1), (1, 1), 512, 512, (19, 19), True),  # conv5_x
    ((3, 3), (1, 1), (1, 1), 64, 128, (150, 150), True),  # conv2_1
    ((3, 3), (1, 1), (1, 1), 64, 64, (300, 300), True),  # conv1_2 (32: the line, measured)
    ((3, 3), (1, 1), (1, 1), 32, 64, (150, 150), False),  # 21: below the line
    ((3, 3), (1, 1), (1, 1), 512, 24, (38, 38), False),  # a loc head: few output channels
    ((3, 3), (1, 1), (6, 6), 512, 1024, (19, 19), False),  # fc6: dilated
    ((3, 3), (2, 2), (1, 1), 256, 512, (10, 10), False),  # conv8_2: stride 2
    ((1, 1), (1, 1), (1, 1), 1024, 1024, (19, 19), False),  # fc7
    ((3, 3), (1, 1), (1, 1), 128, 256, (1, 1), False),  # conv11_2: a single output
])
def test_which_layers_use_winograd(kernel, stride, dilation, c, o, out_hw, expected):
    assert _winograd.applies(kernel, stride, dilation, c, o, out_hw) is expected


@pytest.mark.parametrize("out_hw, n, expected", [
    ((300, 300), 1, "F4"),  # conv1_2
    ((38, 38), 1, "F4"),  # conv4_x: 10x10 tiles of 4x4 an image
    ((32, 32), 1, "F2"),  # 64 tiles do not repay F(4x4)'s weight transform
    ((32, 32), 2, "F4"),
    ((19, 19), 8, "F2"),  # conv5_x: 5x5 tiles of 4x4 would make 25-column GEMMs at batch 1
    ((38, 19), 8, "F2"),  # both sides must reach the line
])
def test_which_forward_scheme(out_hw, n, expected):
    assert _winograd.forward_scheme(np, out_hw, n) is getattr(_winograd, expected)


def test_cupy_arrays_keep_f2():
    """F(4x4, 3x3) is a CPU path (its transforms are Numba kernels; not measured on a GPU)."""
    class FakeCupy:
        __name__ = "cupy"

    assert _winograd.forward_scheme(FakeCupy(), (300, 300), 8) is _winograd.F2


@pytest.mark.parametrize("in_hw, padding, expected", [
    ((300, 300), (1, 1), True),  # conv1_2's input gradient: F(4x4) forward, padding 1
    ((38, 38), (2, 0), True),
    ((38, 38), (3, 1), False),  # padding 3 would need padding -1 for the gradient's forward
    ((19, 19), (1, 1), False),  # F(2x2) maps keep the adjoint
])
def test_which_input_gradients_go_as_a_forward(in_hw, padding, expected):
    assert _winograd.input_grad_as_forward(np, in_hw, padding, 2) is expected


@pytest.mark.parametrize("scheme", [_winograd.F2, _winograd.F4])
def test_a_kept_weight_transform_follows_the_weight(scheme):
    """``kept_weight_transform`` gives ``weight_transform``'s bits, keeps them while the weight's
    values stay the same, recomputes after any in-place change (a signed zero included), and
    forgets the weight when it is garbage-collected."""
    import gc

    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    w[0, 0, 0, 0] = 0.0
    fresh = _winograd.weight_transform(np, w, scheme).copy()
    kept = _winograd.kept_weight_transform(np, w, scheme)
    np.testing.assert_array_equal(kept, fresh)
    assert _winograd.kept_weight_transform(np, w, scheme) is kept  # unchanged: kept
    w[0, 0, 0, 0] = -0.0  # equal as a number, not as bits: transformed anew
    again = _winograd.kept_weight_transform(np, w, scheme)
    assert again is not kept
    np.testing.assert_array_equal(again.view(np.uint32),
                                  _winograd.weight_transform(np, w, scheme).view(np.uint32))
    w[2] *= 3  # an optimiser step in place
    np.testing.assert_array_equal(_winograd.kept_weight_transform(np, w, scheme),
                                  _winograd.weight_transform(np, w, scheme))
    key = (id(w), scheme.a)
    assert key in _winograd._kept
    del w
    gc.collect()
    assert key not in _winograd._kept


def test_inference_forward_is_never_stale_and_training_drops_the_kept_transform():
    """conv2d with no gradient wanted keeps the transform: the same bits as a forward that wants
    gradients, also after the weight changes in place; a forward that wants gradients frees it."""
    from minissd.autograd import no_grad

    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((1, 80, 9, 9)).astype(np.float32))
    w = Tensor(rng.standard_normal((80, 80, 3, 3)).astype(np.float32), requires_grad=True)
    assert _winograd.applies((3, 3), (1, 1), (1, 1), 80, 80, (9, 9))
    key = (id(w.data), _winograd.forward_scheme(np, (9, 9), 1).a)
    for step in range(3):
        with no_grad():
            inference = F.conv2d(x, w, padding=1).data
        assert key in _winograd._kept
        training = F.conv2d(x, w, padding=1).data  # wants a weight gradient
        assert key not in _winograd._kept
        np.testing.assert_array_equal(inference, training)
        with no_grad():
            np.testing.assert_array_equal(F.conv2d(x, w, padding=1).data, training)
        w.data -= 0.01 * rng.standard_normal(w.shape).astype(np.float32)  # a step in place
