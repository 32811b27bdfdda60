"""conv2d and max_pool2d against ``torch.nn.functional`` (an independent oracle): forward values
and the gradients of input, weight and bias under a random upstream gradient.

float64 on hypothesis-drawn shapes and hyper-parameters (which reach every code path of the GEMM
implementation: 1x1 shortcut, padded im2col, the flipped-kernel input gradient for stride 1 and
col2im for stride > 1, several row bands per image), the SSD layer configurations explicitly,
and float32 agreement at a VGG-sized layer.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minissd.autograd import Tensor, _conv_impl
from minissd.autograd import functional as F

torch = pytest.importorskip("torch", reason="PyTorch is the oracle here (pip install .[oracle])")
TF = torch.nn.functional

pytestmark = pytest.mark.oracle

seeds = st.integers(0, 2**32 - 1)
F64 = dict(rtol=1e-10, atol=1e-10)


def _leaves(rng, *shapes, dtype=np.float64):
    return [Tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]


def _torch(t):
    return torch.from_numpy(np.array(t.data)).requires_grad_()


def _close(ours, theirs, **tol):
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, **tol)


def check_conv(rng, n, c, o, h, w, k, stride, padding, dilation, bias, dtype=np.float64,
               **tol):
    tol = tol or F64
    shapes = [(n, c, h, w), (o, c) + k] + ([(o,)] if bias else [])
    ours = _leaves(rng, *shapes, dtype=dtype)
    theirs = [_torch(t) for t in ours]
    y = F.conv2d(*ours[:2], ours[2] if bias else None, stride, padding, dilation)
    ty = TF.conv2d(*theirs[:2], theirs[2] if bias else None, stride, padding, dilation)
    _close(y.data, ty, **tol)
    g = rng.standard_normal(y.shape).astype(dtype)
    y.backward(g)
    ty.backward(torch.from_numpy(g))
    for a, b in zip(ours, theirs):  # x, weight (, bias)
        _close(a.grad, b.grad, **tol)


def check_pool(rng, n, c, h, w, k, stride, padding, ceil_mode, ties=False):
    x = rng.standard_normal((n, c, h, w))
    if ties:  # coarse values: many windows hold their maximum twice
        x = np.round(x)
    ours = Tensor(x, requires_grad=True)
    theirs = _torch(ours)
    y = F.max_pool2d(ours, k, stride, padding, ceil_mode)
    ty = TF.max_pool2d(theirs, k, stride, padding, ceil_mode=ceil_mode)
    _close(y.data, ty, rtol=0, atol=0)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    ty.backward(torch.from_numpy(g))
    _close(ours.grad, theirs.grad, **F64)


# ----------------------------------------------------------------- hypothesis


@st.composite
def conv_case(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    size = []
    for k, d, p in zip((kh, kw), dilation, padding):
        smallest = max(1, d * (k - 1) + 1 - 2 * p)  # the input must hold one dilated kernel
        size.append(draw(st.integers(smallest, smallest + 6)))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 4)), o=draw(st.integers(1, 4)),
                h=size[0], w=size[1], k=(kh, kw), stride=stride, padding=padding,
                dilation=dilation, bias=draw(st.booleans()))


@given(case=conv_case(), seed=seeds, band_bytes=st.sampled_from([1, 256, 1 << 20]),
       by_offset=st.sampled_from([-1.0, _conv_impl.BY_OFFSET_PADDING_SHARE, 2.0]),
       flip_ratio=st.sampled_from([0, 1, 100]))
def test_conv2d_matches_torch(case, seed, band_bytes, by_offset, flip_ratio):
    """Every algorithm on every case: ``by_offset`` -1 forces offset-by-offset, 2 forces im2col,
    the default picks by padding share; ``flip_ratio`` 0 forces col2im for the input gradient,
    100 the flipped kernel when the stride is 1. ``band_bytes`` shrinks the im2col band so that
    images split into 1-row and few-row bands (otherwise only large layers have several)."""
    names = "CPU_BAND_BYTES", "BY_OFFSET_PADDING_SHARE", "FLIP_MAX_CHANNEL_RATIO"
    old = [getattr(_conv_impl, a) for a in names]
    for a, v in zip(names, (band_bytes, by_offset, flip_ratio)):
        setattr(_conv_impl, a, v)
    try:
        check_conv(np.random.default_rng(seed), **case)
    finally:
        for a, v in zip(names, old):
            setattr(_conv_impl, a, v)


@st.composite
def pool_case(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return dict(k=(kh, kw), stride=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
                padding=(draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))),
                ceil_mode=draw(st.booleans()), h=draw(st.integers(kh, kh + 7)),
                w=draw(st.integers(kw, kw + 7)), n=draw(st.integers(1, 2)),
                c=draw(st.integers(1, 3)), ties=draw(st.booleans()))


@given(case=pool_case(), seed=seeds)
def test_max_pool2d_matches_torch(case, seed):
    check_pool(np.random.default_rng(seed), **case)


# ------------------------------------------------------------------ SSD layers


@pytest.mark.parametrize("name, c, o, hw, k, padding, dilation, stride", [
    ("fc6: 3x3 dilation 6 padding 6 on 19x19", 5, 7, 19, 3, 6, 6, 1),
    ("fc7: 1x1 on 19x19", 6, 5, 19, 1, 0, 1, 1),
    ("VGG 3x3 padding 1", 4, 6, 38, 3, 1, 1, 1),
    ("extras conv8_2: 3x3 stride 2 padding 1, 19 -> 10", 6, 5, 19, 3, 1, 1, 2),
    ("extras conv10_2: 3x3 no padding, 3 -> 1", 6, 5, 3, 3, 0, 1, 1),
])
def test_ssd_convs(name, c, o, hw, k, padding, dilation, stride):
    ho = (hw + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    share = _conv_impl.padding_share((hw, hw), (ho, ho), (k, k), (stride,) * 2, (padding,) * 2,
                                     (dilation,) * 2)
    if name.startswith("fc6"):  # a third of fc6's im2col is padding: it goes offset by offset
        assert share == pytest.approx(1 - (45 / 57) ** 2)
        assert share > _conv_impl.BY_OFFSET_PADDING_SHARE
    check_conv(np.random.default_rng(0), 2, c, o, hw, hw, (k, k), stride, padding, dilation,
               bias=True)


@pytest.mark.parametrize("name, hw, k, stride, padding, ceil_mode, out", [
    ("pool3: 2x2/2 ceil_mode, 75 -> 38", 75, 2, 2, 0, True, 38),
    ("pool5: 3x3/1 padding 1, 19 -> 19", 19, 3, 1, 1, False, 19),
    ("pool1: 2x2/2, 300 -> 150", 300, 2, 2, 0, False, 150),
])
@pytest.mark.parametrize("ties", [False, True])
def test_ssd_pools(name, hw, k, stride, padding, ceil_mode, out, ties):
    y = F.max_pool2d(Tensor(np.zeros((1, 1, hw, hw))), k, stride, padding, ceil_mode)
    assert y.shape == (1, 1, out, out)
    check_pool(np.random.default_rng(1), 2, 3, hw, hw, k, stride, padding, ceil_mode, ties)


def test_pool_ties_go_to_the_first_maximum():
    """A window of equal values (ReLU zeros): the whole gradient goes to its top-left cell."""
    x = Tensor(np.zeros((1, 1, 2, 4)), requires_grad=True)
    F.max_pool2d(x, 2).backward(np.array([[[[3.0, 5.0]]]]))
    np.testing.assert_array_equal(x.grad[0, 0], [[3, 0, 5, 0], [0, 0, 0, 0]])


# ---------------------------------------------------------------- float32


@pytest.mark.parametrize("c, o, hw, k, padding, dilation, stride", [
    (64, 32, 38, 3, 1, 1, 1),  # several bands per image at the default band size
    (32, 64, 19, 3, 6, 6, 1),  # fc6-like
    (48, 40, 19, 1, 0, 1, 1),  # fc7-like
    (32, 16, 19, 3, 1, 1, 2),  # stride 2: col2im
])
def test_conv2d_float32(c, o, hw, k, padding, dilation, stride):
    check_conv(np.random.default_rng(2), 2, c, o, hw, hw, (k, k), stride, padding, dilation,
               bias=True, dtype=np.float32, rtol=1e-4, atol=1e-4)


def test_float32_stays_float32():
    rng = np.random.default_rng(3)
    x, w, b = _leaves(rng, (1, 3, 8, 8), (4, 3, 3, 3), (4,), dtype=np.float32)
    y = F.conv2d(x, w, b, padding=1)
    p = F.max_pool2d(y, 2)
    p.backward(np.ones(p.shape, dtype=np.float32))
    assert {t.dtype for t in (y.data, p.data, x.grad, w.grad, b.grad)} == {np.dtype(np.float32)}


def test_no_input_gradient_when_not_required():
    """The first layer's input (the image) needs no gradient: none is computed or stored."""
    rng = np.random.default_rng(4)
    w = Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    x = Tensor(rng.standard_normal((1, 3, 5, 5)))
    F.conv2d(x, w, padding=1).backward(np.ones((1, 2, 5, 5)))
    assert x.grad is None and w.grad is not None


# ---------------------------------------------------------------- benchmark


def test_benchmark_script_runs(capsys):
    """benchmarks/bench_conv.py on two small layers (timing table and one memory probe)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_conv.py"
    spec = importlib.util.spec_from_file_location("bench_conv", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--layers", "fc7,pool5", "--batch", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:4] in ("fc7 ",
                                                                                       "pool")}
    assert set(rows) == {"fc7", "pool5"}
    assert all(float(r[-2]) > 0 for r in rows.values())  # a positive ratio in every row
    # fc7 at batch 1 allocates at least its output and the input and weight gradients (less
    # 256 KiB: the RSS growth it measures can miss pages that other memory freed meanwhile)
    least = 4 * (1024 * 19 * 19 * 2 + 1024 * 1024) - (256 << 10)
    assert bench.memory_in_subprocess("minissd", "conv", "fc7", 1, 1) >= least
