"""The fast conv2d and max_pool2d kernels (``minissd.kernels.conv``, ``pool``) against the
readable references (``conv2d_reference``, ``max_pool2d_reference``), as the IoU and NMS kernels
against theirs: float64, hypothesis-drawn shapes and hyper-parameters, every algorithm of the
fast path forced in turn (im2col in one-row and few-row bands, GEMM by kernel offset, the
flipped-kernel and col2im input gradients); forward values and the gradients of input, weight and
bias. Max pooling agrees to the bit. Then the one switch: ``reference_mode()`` and
``MINISSD_REFERENCE`` run the whole model on the references, with the same numbers.
(Winograd: ``test_winograd.py``; the thread count: ``test_batch_threads.py``.)"""

import contextlib

import numpy as np
import pytest
from conv_strategies import SSD_CONVS, conv_geometry
from hypothesis import given, settings
from hypothesis import strategies as st
from minissd.kernels import conv as fast_conv
from minissd.kernels import winograd

from minissd import autograd as ag
from minissd.autograd import Tensor
from minissd.autograd import functional as F

seeds = st.integers(0, 2**32 - 1)
F64 = dict(rtol=1e-10, atol=1e-10)


@contextlib.contextmanager
def module_settings(module, **values):
    """``module``'s settings for the block (hypothesis refuses function-scoped fixtures: no
    monkeypatch)."""
    saved = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def conv_settings(**values):
    """``kernels.conv`` module settings for the block."""
    return module_settings(fast_conv, **values)


def run(op, arrays, requires_grad, *args):
    """Output and input gradients of ``op`` under a fixed random upstream gradient."""
    leaves = [None if a is None else Tensor(a.copy(), requires_grad=r)
              for a, r in zip(arrays, requires_grad)]
    y = op(*leaves, *args)
    y.backward(np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype))
    return [y.data] + [None if t is None else t.grad for t in leaves]


def assert_same(ours, reference, **tol):
    for name, a, b in zip(("output", "input grad", "weight grad", "bias grad"), ours, reference):
        if b is None:
            assert a is None, name
        elif tol:
            np.testing.assert_allclose(a, b, err_msg=name, **tol)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


@st.composite
def conv_case(draw):
    (kh, kw), stride, padding, dilation, size = draw(conv_geometry())
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(seeds))
    arrays = [rng.standard_normal(s) for s in ((n, c, *size), (o, c, kh, kw), (o,))]
    if not draw(st.booleans()):
        arrays[2] = None
    return arrays, (stride, padding, dilation), draw(st.booleans())


@settings(max_examples=150)
@given(case=conv_case(), band_bytes=st.sampled_from([1, 256, 1 << 20]),
       by_offset=st.sampled_from([-1.0, fast_conv.BY_OFFSET_PADDING_SHARE, 2.0]),
       flip_ratio=st.sampled_from([0, 1, 100]))
def test_conv2d_equals_the_reference(case, band_bytes, by_offset, flip_ratio):
    """Every algorithm on every case: ``by_offset`` -1 forces offset-by-offset, 2 forces im2col,
    the default picks by padding share; ``flip_ratio`` 0 forces col2im for the input gradient,
    100 the flipped kernel when the stride is 1; ``band_bytes`` splits images into 1-row and
    few-row bands (otherwise only large layers have several)."""
    arrays, hyper, need_input = case
    requires_grad = (need_input, True, True)
    reference = run(F.conv2d_reference, arrays, requires_grad, *hyper)
    with conv_settings(CPU_BAND_BYTES=band_bytes, BY_OFFSET_PADDING_SHARE=by_offset,
                       FLIP_MAX_CHANNEL_RATIO=flip_ratio):
        ours = run(F.conv2d, arrays, requires_grad, *hyper)
    assert_same(ours, reference, **F64)


@pytest.mark.parametrize("name, c, o, hw, k, padding, dilation, stride", SSD_CONVS)
def test_ssd_convs_equal_the_reference(name, c, o, hw, k, padding, dilation, stride):
    ho = (hw + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    share = fast_conv.padding_share((hw, hw), (ho, ho), (k, k), (stride,) * 2, (padding,) * 2,
                                    (dilation,) * 2)
    if name.startswith("fc6"):  # a third of fc6's im2col is padding: it goes offset by offset
        assert share == pytest.approx(1 - (45 / 57) ** 2)
        assert share > fast_conv.BY_OFFSET_PADDING_SHARE
    assert winograd.applies((k, k), (stride,) * 2, (dilation,) * 2, c, o, (ho, ho)) == (
        "Winograd" in name)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in ((2, c, hw, hw), (o, c, k, k), (o,))]
    hyper = (stride, padding, dilation)
    assert_same(run(F.conv2d, arrays, (True,) * 3, *hyper),
                run(F.conv2d_reference, arrays, (True,) * 3, *hyper), **F64)


@st.composite
def bias_case(draw):
    """``(x, weight, (stride, padding, dilation))`` of any geometry, or of the two that have
    paths of their own: 3x3 stride 1 (Winograd, when forced) and 1x1 stride 1 (a plain GEMM per
    image, in shares of the output channels at batch 1)."""
    kind = draw(st.sampled_from(["any", "3x3", "1x1"]))
    if kind == "any":
        kernel, stride, padding, dilation, size = draw(conv_geometry())
    else:
        k = int(kind[0])
        kernel, stride, dilation = (k, k), (1, 1), (1, 1)
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2))) if k == 3 else (0, 0)
        # 3x3: outputs of at least 2x2 (Winograd's smallest tile), odd sizes crop the last tile
        size = tuple(draw(st.integers(max(1, 4 - 2 * p) if k == 3 else 1, 13 - p))
                     for p in padding)
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(seeds))
    return (rng.standard_normal((n, c, *size)), rng.standard_normal((o, c, *kernel)),
            (stride, padding, dilation))


@settings(max_examples=150, deadline=None)
@given(case=bias_case(), dtype=st.sampled_from([np.float32, np.float64]),
       band_bytes=st.sampled_from([1, 256, 1 << 20]),
       by_offset=st.sampled_from([-1.0, fast_conv.BY_OFFSET_PADDING_SHARE, 2.0]),
       use_winograd=st.booleans(), f4=st.booleans())
def test_the_bias_goes_in_with_the_bits_of_adding_it_afterwards(case, dtype, band_bytes,
                                                                by_offset, use_winograd, f4):
    """``correlate`` adds the bias to each piece of the output once it is final (an im2col band,
    a share of a 1x1's output channels, a chunk summed by offset, a Winograd tile row, on the
    batch threads): the bits of ``out += bias[:, None, None]`` after the whole convolution, on
    every path (forced as above; Winograd on the 3x3 stride-1 cases, by F(2x2) or F(4x4);
    threads for any work, so that batch 1 splits its bands and shares)."""
    from minissd.kernels import batch_threads

    x, weight, (stride, padding, dilation) = case
    x, weight = x.astype(dtype), weight.astype(dtype)
    bias = np.random.default_rng(2).standard_normal(weight.shape[0]).astype(dtype)
    out_hw = [F.conv_output_size(*a) for a in zip(x.shape[2:], weight.shape[2:], stride,
                                                  padding, dilation)]
    plain, biased = (np.full((x.shape[0], weight.shape[0], *out_hw), np.nan, dtype=dtype)
                     for _ in range(2))
    with conv_settings(CPU_BAND_BYTES=band_bytes, BY_OFFSET_PADDING_SHARE=by_offset), \
            module_settings(winograd, MIN_CHANNELS=0 if use_winograd else 10**9,
                            MIN_F4_SIDE=0 if f4 else 10**9, MIN_F4_TILES=0 if f4 else 10**9), \
            module_settings(batch_threads, MIN_PARALLEL_WORK=0):
        fast_conv.correlate(np, x, weight, stride, padding, dilation, plain)
        fast_conv.correlate(np, x, weight, stride, padding, dilation, biased, bias=bias)
    plain += bias[:, None, None]
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(biased.view(bits), plain.view(bits))


def test_conv2d_refuses_a_bias_of_another_dtype():
    x, w = Tensor(np.ones((1, 2, 4, 4), np.float32)), Tensor(np.ones((3, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="conv2d: input is float32 but bias is float64"):
        F.conv2d(x, w, Tensor(np.ones(3)))


@st.composite
def pool_case(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h, w = draw(st.integers(kh, kh + 7)), draw(st.integers(kw, kw + 7))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    x = np.random.default_rng(draw(seeds)).standard_normal((n, c, h, w))
    if draw(st.booleans()):  # coarse values: many windows hold their maximum twice
        x = np.round(x)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return x.astype(dtype), ((kh, kw), (draw(st.integers(1, 4)), draw(st.integers(1, 4))),
                             (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))),
                             draw(st.booleans()))


@given(case=pool_case())
def test_max_pool2d_equals_the_reference_to_the_bit(case):
    x, args = case
    assert_same(run(F.max_pool2d, [x], (True,), *args),
                run(F.max_pool2d_reference, [x], (True,), *args))


# ------------------------------------------------------------------- the switch


def test_reference_mode_and_the_environment_choose_the_version(monkeypatch):
    calls = []
    monkeypatch.setattr(F, "conv2d_reference", lambda *a: calls.append("conv") or "ref")
    monkeypatch.setattr(F, "max_pool2d_reference", lambda *a: calls.append("pool") or "ref")
    x, w = Tensor(np.ones((1, 1, 4, 4))), Tensor(np.ones((1, 1, 3, 3)))
    monkeypatch.delenv("MINISSD_REFERENCE", raising=False)
    assert isinstance(F.conv2d(x, w), Tensor) and isinstance(F.max_pool2d(x, 2), Tensor)
    with ag.reference_mode():
        assert F.conv2d(x, w) == "ref" and F.max_pool2d(x, 2) == "ref"
        with ag.reference_mode(False):
            assert isinstance(F.conv2d(x, w), Tensor)
    assert isinstance(F.conv2d(x, w), Tensor)
    monkeypatch.setenv("MINISSD_REFERENCE", "1")
    assert F.conv2d(x, w) == "ref" and F.max_pool2d(x, 2) == "ref"
    with ag.reference_mode(False):
        assert isinstance(F.max_pool2d(x, 2), Tensor)
    assert calls == ["conv", "pool", "conv", "pool"]
    monkeypatch.setenv("MINISSD_REFERENCE", "yes")
    with pytest.raises(ValueError, match="MINISSD_REFERENCE must be 0 or 1, got 'yes'"):
        F.conv2d(x, w)


def test_the_small_model_gives_the_same_numbers_on_both_paths():
    """The small SSD in float64, forward and backward of a loss: every layer's conv and pool on
    the reference path and on the fast one."""
    from minissd.ssd.model import SSD, ssd_small

    image = np.random.default_rng(0).standard_normal((1, 3, 128, 128)) * 50
    results = []
    for reference in (True, False):
        model = SSD(ssd_small(4), seed=3, dtype=np.float64)
        with ag.reference_mode(reference):
            loc, conf = model(Tensor(image))
            ((loc * loc).sum() + (conf * conf).mean()).backward()
        results.append([loc.data, conf.data] + [p.grad for p in model.parameters()])
    for ref, fast in zip(*results):
        np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.gpu
@pytest.mark.parametrize("reference", [True, False], ids=["reference", "fast"])
def test_both_versions_run_on_cupy(reference):
    """The same code on CuPy arrays (``xp`` the array module of the input): conv2d (fc6-like, and
    a Winograd-wide 3x3) and max_pool2d, forward and gradients, as on NumPy's reference."""
    from minissd.backend import cupy, to_numpy

    cp = cupy()
    rng = np.random.default_rng(5)
    cases = [(F.conv2d, [rng.standard_normal(s) for s in ((2, 5, 19, 19), (7, 5, 3, 3), (7,))],
              (1, 6, 6)),
             (F.conv2d, [rng.standard_normal(s) for s in ((2, 96, 9, 9), (80, 96, 3, 3), (80,))],
              (1, 1, 1)),
             (F.max_pool2d, [np.round(rng.standard_normal((2, 3, 11, 11)))], (3, 2, 1, True))]
    for op, arrays, args in cases:
        expected = run(F.conv2d_reference if op is F.conv2d else F.max_pool2d_reference, arrays,
                       (True,) * len(arrays), *args)
        leaves = [Tensor(cp.asarray(a), requires_grad=True) for a in arrays]
        with ag.reference_mode(reference):
            y = op(*leaves, *args)
        y.backward(cp.asarray(np.random.default_rng(1).standard_normal(y.shape)))
        got = [y.data] + [t.grad for t in leaves]
        assert all(isinstance(a, cp.ndarray) for a in got)
        assert_same([to_numpy(a) for a in got], expected, **F64)
