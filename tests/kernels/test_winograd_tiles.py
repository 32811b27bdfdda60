"""The Numba Winograd tile kernels (``minissd.kernels.winograd_tiles``) against the NumPy
transforms they replace on the CPU (``winograd.*_tiles_reference``): the same bits, float32 and
float64, F(2x2, 3x3) and F(4x4, 3x3) (all but ``add_input_tiles``, which F(4x4) never uses), on
drawn shapes and bands (one tile row, one column, several bands one after another, channel
shares), values with signed zeros, ties and a wide range of magnitudes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minissd.kernels import winograd, winograd_tiles

values = st.sampled_from(["normal", "mixed"])


def _draw_values(rng, shape, dtype, kind):
    x = rng.standard_normal(shape)
    if kind == "mixed":  # signed zeros, repeats, tiny and huge magnitudes
        pick = rng.integers(0, 5, shape)
        x = np.where(pick == 0, 0.0, x)
        x = np.where(pick == 1, -0.0, x)
        x = np.where(pick == 2, x * 1e-30, x)
        x = np.where(pick == 3, np.round(x), x * 1e20 ** (rng.random(shape) < 0.2))
    return x.astype(dtype)


@st.composite
def cases(draw):
    return dict(
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        n=draw(st.integers(1, 3)),
        c=draw(st.integers(1, 5)),
        th=draw(st.integers(1, 5)),
        tw=draw(st.integers(1, 5)),
        band=draw(st.integers(1, 5)),
        crop=(draw(st.integers(0, 1)), draw(st.integers(0, 1))),
        share=draw(st.booleans()),
        kind=draw(values),
        seed=draw(st.integers(0, 2**32 - 1)),
        m=draw(st.sampled_from([2, 4])),  # F(2x2, 3x3) or F(4x4, 3x3) (not add_input_tiles)
    )


def _bands(th, rows):
    return [(t0, min(th, t0 + rows)) for t0 in range(0, th, rows)]


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _channel_split(c, share):
    """All channels in one call, or in two shares (as the batch threads split one image)."""
    return [(0, c)] if not share or c < 2 else [(0, c // 2), (c // 2, c)]


@settings(max_examples=150, deadline=None)
@given(case=cases(), data=st.data())
def test_input_tiles_same_bits(case, data):
    """The kernel reads the images and takes the zero padding itself; the reference reads the
    padded copy (padding 0-2 rows and columns before the images, zeros after them as far as the
    tiles reach; images as small as one row and column)."""
    rng = np.random.default_rng(case["seed"])
    n, c, th, tw, dt, m = case["n"], case["c"], case["th"], case["tw"], case["dtype"], case["m"]
    a = m + 2
    hp, wp = m * th + 2, m * tw + 2
    ph, pw = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))
    h, w = data.draw(st.integers(1, hp - ph)), data.draw(st.integers(1, wp - pw))
    x = _draw_values(rng, (n, c, h, w), dt, case["kind"])
    xpad = np.zeros((n, c, hp, wp), dtype=dt)
    xpad[:, :, ph: ph + h, pw: pw + w] = x
    scratch = np.empty(a * n * c * th * wp, dtype=dt)
    for t0, t1 in _bands(th, case["band"]):
        want = np.empty((a, a, c, n, t1 - t0, tw), dtype=dt)
        winograd.input_tiles_reference(np, xpad, t0, t1, tw, scratch, want)
        got = np.full_like(want, np.nan)
        for c0, c1 in _channel_split(c, case["share"]):
            winograd_tiles.input_tiles_any(x, (ph, pw), t0, got, c0, c1)
        np.testing.assert_array_equal(_bits(got), _bits(want))


@settings(max_examples=150, deadline=None)
@given(case=cases(), with_bias=st.booleans())
def test_output_tiles_same_bits(case, with_bias):
    """With a bias, the kernel adds it to each row it writes; the reference's output plus the
    bias afterwards has the same bits."""
    rng = np.random.default_rng(case["seed"])
    n, o, th, tw, dt, m = case["n"], case["c"], case["th"], case["tw"], case["dtype"], case["m"]
    a = m + 2
    # tiles may hang over by up to m - 1 rows and columns
    ho, wo = (m * s - rng.integers(0, m) * crop for s, crop in zip((th, tw), case["crop"]))
    want = np.full((n, o, ho, wo), 7.0, dtype=dt)
    got = want.copy()
    bias = _draw_values(rng, (o,), dt, case["kind"]) if with_bias else None
    scratch = np.empty(m * a * o * n * th * tw, dtype=dt)
    for t0, t1 in _bands(th, case["band"]):
        tiles = _draw_values(rng, (a, a, o, n, t1 - t0, tw), dt, case["kind"])
        winograd.output_tiles_reference(np, tiles, want, t0, scratch)
        for o0, o1 in _channel_split(o, case["share"]):
            winograd_tiles.output_tiles_any(tiles, got, t0, o0, o1, bias)
    if with_bias:
        want += bias[:, None, None]
    np.testing.assert_array_equal(_bits(got), _bits(want))


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_grad_tiles_same_bits(case):
    """The kernel reads g itself, zero where the tiles hang over its last rows or columns; the
    reference reads g zero-extended to the tiles."""
    rng = np.random.default_rng(case["seed"])
    n, o, th, tw, dt, m = case["n"], case["c"], case["th"], case["tw"], case["dtype"], case["m"]
    a = m + 2
    ho, wo = (m * s - rng.integers(0, m) * crop for s, crop in zip((th, tw), case["crop"]))
    g = _draw_values(rng, (n, o, ho, wo), dt, case["kind"])
    gpad = np.zeros((n, o, m * th, m * tw), dtype=dt)
    gpad[:, :, :ho, :wo] = g
    scratch = np.empty(a * n * o * th * m * tw, dtype=dt)
    for t0, t1 in _bands(th, case["band"]):
        want = np.empty((a, a, o, n, t1 - t0, tw), dtype=dt)
        winograd.grad_tiles_reference(np, gpad, t0, t1, scratch, want)
        got = np.full_like(want, np.nan)
        for o0, o1 in _channel_split(o, case["share"]):
            winograd_tiles.grad_tiles_any(g, t0, got, o0, o1)
        np.testing.assert_array_equal(_bits(got), _bits(want))


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_add_input_tiles_same_bits(case):
    """Band after band onto one buffer that already holds values: overlapping tiles and band
    edges add in the reference's order."""
    rng = np.random.default_rng(case["seed"])
    n, c, th, tw, dt = case["n"], case["c"], case["th"], case["tw"], case["dtype"]
    want = _draw_values(rng, (n, c, 2 * th + 2, 2 * tw + 2), dt, case["kind"])
    got = want.copy()
    scratch = np.empty(4 * n * c * th * (2 * tw + 2), dtype=dt)
    for t0, t1 in _bands(th, case["band"]):
        dv = _draw_values(rng, (4, 4, c, n, t1 - t0, tw), dt, case["kind"])
        winograd.add_input_tiles_reference(np, dv, want, t0, scratch)
        for c0, c1 in _channel_split(c, case["share"]):
            winograd_tiles.add_input_tiles(dv, got, t0, c0, c1)
    np.testing.assert_array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("name", ["input_tiles", "output_tiles", "grad_tiles", "add_input_tiles"])
def test_dispatch_takes_the_kernel_on_numpy(monkeypatch, name):
    """``winograd.<name>`` runs the Numba kernel for NumPy arrays (not the reference)."""
    called = []
    monkeypatch.setattr(winograd_tiles, name, lambda *a: called.append(a))
    monkeypatch.setattr(winograd, f"{name}_reference",
                        lambda *a: pytest.fail("the NumPy reference ran"))
    shapes = {"input_tiles": ((np.zeros((1, 1, 4, 4)), (0, 0)), 0, 1, 1, None,
                              np.zeros((4, 4, 1, 1, 1, 1))),
              "output_tiles": (np.zeros((4, 4, 1, 1, 1, 1)), np.zeros((1, 1, 2, 2)), 0, None),
              "grad_tiles": ((np.zeros((1, 1, 2, 2)), (0, 0)), 0, 1, None,
                             np.zeros((4, 4, 1, 1, 1, 1))),
              "add_input_tiles": (np.zeros((4, 4, 1, 1, 1, 1)), np.zeros((1, 1, 4, 4)), 0, None)}
    getattr(winograd, name)(np, *shapes[name])
    assert len(called) == 1
