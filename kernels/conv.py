"""The fast conv2d kernels: im2col in bands of output rows, GEMM by kernel offset, and the hand-over
to Winograd (``winograd.py``), with the images of a batch split across threads
(``batch_threads.py``).

These are the fast twins of the readable ``minissd.autograd.functional.conv2d_reference`` (one
im2col of the whole batch, one matrix product, its adjoint): ``conv2d`` calls them unless
reference mode is on, and ``tests/kernels/test_conv_fast.py`` holds them to the reference on
drawn shapes. They take and return plain arrays (NumPy or CuPy, through ``xp``).

Layout (one image at a time, NCHW throughout)::

    x[i]     (C, H, W)          --pad-->   xpad (C, Hp, Wp)   a reused buffer, zero border
    cols     (C*kh*kw, r*Wo)    one band of r output rows, built by ONE copy of a strided
                                view of xpad (``windows``); row (c, u, v) of cols holds
                                xpad[c, y*sh + u*dh, x*sw + v*dw] for the band's (y, x)
    out[i]   (O, Ho*Wo)         out[i][:, band] = W2 @ cols,   W2 = weight.reshape(O, C*kh*kw)

Why this shape of loop:

* The GEMM ``W2 @ cols`` writes straight into the NCHW output: no transposes afterwards.
* The column buffer is the expensive object (``kh*kw`` times the input). Built for a band of
  rows it is a few MiB: it stays in the L2/L3 cache between the copy that writes it and the GEMM
  that reads it, and the same buffer is reused for every band and image (a fresh 200 MiB
  buffer per call would spend more time in page faults than in the copy). Nothing of it is kept
  for backward; backward rebuilds the bands it needs, which is cheaper than writing and reading
  back ``kh*kw`` copies of every activation.
* 1x1 stride-1 convolutions skip im2col: ``cols`` is the image itself, ``(C, H*W)``.

Backward, with ``g = dL/dout``:

* ``dW2 = sum_i g[i] @ cols[i].T`` band by band (the same columns as forward, rebuilt).
* ``dx``, stride 1: the input gradient of a stride-1 correlation is itself a correlation, of
  ``g`` padded by ``d*(k-1) - p`` with the kernel flipped in space and with its in/out channels
  swapped: ``dx = correlate(g, W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])``. So it reuses the
  forward kernel (one column build of ``g`` and one GEMM per band, written into ``dx``).
* ``dx``, stride > 1 (no such shortcut without wasting GEMM work on inserted zeros), or more
  output than input channels (the columns of ``g`` would be bigger than those of ``x``): the
  transpose of im2col. ``dcols = W2.T @ g[i][:, band]``, then ``col2im``: ``kh*kw`` strided adds
  of the band's columns onto a zeroed padded buffer (``add_windows``), cropped into ``dx[i]``.

Offset by offset, for convolutions whose im2col matrix would be largely padding zeros (SSD's fc6,
3x3 dilation 6 padding 6 on 19x19: a third of it): for each kernel offset ``(u, v)`` only the
outputs ``[ro, co]`` whose input cell exists take part, so no zero is multiplied::

    xs = x[:, :, rows hit by u, cols hit by v]         (C, N*m)  one copy of a strided block
    out[:, :, ro, co] += W[:, :, u, v] @ xs              (O, C) @ (C, N*m)
    dW[:, :, u, v]     = g[:, :, ro, co] @ xs.T

and the input gradient is its adjoint, offset by offset for all the images of a chunk at once::

    dx[:, :, rows hit by u, cols hit by v] += W[:, :, u, v].T @ g[:, :, ro, co]

(``N`` here: the images of one chunk, ``BY_OFFSET_MIN_COLUMNS`` output positions or more. A
call that is one chunk spreads the offsets of ``dW``, and the channel shares of ``out`` and
``dx``, over the threads instead.)
For 3x3 padding 1 layers the saving is a few percent and the per-offset adds of ``out`` cost
more than that when C <= 256 (measured), so they use im2col.

3x3 stride-1 layers with enough channels skip all of this for Winograd's F(2x2, 3x3) and
F(4x4, 3x3) (``winograd.py``): ``correlate`` and ``backward`` hand them over.

On the CPU the images go in chunks that the batch threads take in turn (``batch_threads``): one
image for im2col, a few for the offset GEMMs. The chunks depend on the batch size and the layer's
shape only, each chunk's GEMMs have the same shapes whichever thread runs it, and ``dW`` is
summed per chunk, then over the chunks in order: the results do not depend on the thread count.

Everything goes through ``xp`` (NumPy or CuPy); on CuPy the bands are simply bigger (and the
batch is one chunk).
"""

from __future__ import annotations

import functools

from . import winograd
from .batch_threads import (
    one_blas_thread,
    over_batch,
    over_chunks,
    split_one_chunk,
    sum_over_chunks,
)

#: Size of one band's column buffer on the CPU. 8 MiB fits the L3 cache with room for the
#: weights; bands are always at least one output row.
CPU_BAND_BYTES = 8 << 20
#: On the GPU the cache argument does not apply; large bands just mean fewer, bigger GEMMs.
GPU_BAND_BYTES = 512 << 20


def windows(xp, a, kernel, stride, dilation, out_hw):
    """A strided *view* of ``a`` (..., Hp, Wp) as ``(..., kh, kw, Ho, Wo)`` windows: no copy.

    ``windows(a)[..., u, v, y, x] = a[..., y*sh + u*dh, x*sw + v*dw]``."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    *lead, s2, s3 = a.strides
    return xp.lib.stride_tricks.as_strided(
        a, (*a.shape[:-2], kh, kw, ho, wo), (*lead, dh * s2, dw * s3, sh * s2, sw * s3))


def add_windows(dpad, dwin, stride, dilation):
    """The adjoint of ``windows``: add ``dwin`` (..., kh, kw, Ho, Wo) back onto ``dpad``
    (..., Hp, Wp), one strided slice add per kernel offset (overlapping windows accumulate)."""
    (sh, sw), (dh, dw) = stride, dilation
    kh, kw, ho, wo = dwin.shape[-4:]
    for u in range(kh):
        for v in range(kw):
            dpad[..., u * dh: u * dh + sh * (ho - 1) + 1: sh,
                 v * dw: v * dw + sw * (wo - 1) + 1: sw] += dwin[..., u, v, :, :]


def _band_rows(xp, k, ho, wo, itemsize):
    """Output rows per band so that a band's ``(k, rows*Wo)`` column buffer fits the budget."""
    budget = CPU_BAND_BYTES if xp.__name__ == "numpy" else GPU_BAND_BYTES
    return max(1, min(ho, budget // (k * wo * itemsize)))


def _bands(ho, rows):
    return [(r0, min(ho, r0 + rows)) for r0 in range(0, ho, rows)]


class _Padder:
    """Pads images ``(C, H, W)`` by ``(ph, pw)`` zeros on both sides into one reused buffer.

    The buffer's border is zeroed once and only its interior is written afterwards. A negative
    padding crops instead (the flipped-kernel input gradient needs that when ``p > d*(k-1)``)."""

    def __init__(self, xp, shape, padding, dtype):
        c, h, w = shape
        (ph, pw) = padding
        self.crop = (slice(max(-ph, 0), h - max(-ph, 0)), slice(max(-pw, 0), w - max(-pw, 0)))
        self.trivial = ph <= 0 and pw <= 0  # no zeros to add: a view of the image does
        if not self.trivial:
            self.buf = xp.zeros((c, h + 2 * ph, w + 2 * pw), dtype=dtype)
            ih, iw = h - 2 * max(-ph, 0), w - 2 * max(-pw, 0)
            self.inner = (slice(None), slice(max(ph, 0), max(ph, 0) + ih),
                          slice(max(pw, 0), max(pw, 0) + iw))

    def __call__(self, img):
        src = img[:, self.crop[0], self.crop[1]]
        if self.trivial:
            return src
        self.buf[self.inner] = src
        return self.buf


class _Columns:
    """The im2col matrices of images ``(C, H, W)``, band by band of output rows, built in
    buffers that are reused for every band and image (set up once per thread)."""

    def __init__(self, xp, shape, kernel, stride, padding, dilation, out_hw, dtype):
        c, h, w = shape
        (kh, kw), (ho, wo) = kernel, out_hw
        self.xp, self.kernel, self.stride, self.dilation, self.out_hw = (
            xp, kernel, stride, dilation, out_hw)
        self.k = c * kh * kw
        # a 1x1 stride-1 unpadded kernel: the image itself is its im2col matrix
        self.direct = (kh, kw) == (1, 1) and stride == (1, 1) and padding == (0, 0)
        if not self.direct:
            self.pad = _Padder(xp, shape, padding, dtype)
            self.rows = _band_rows(xp, self.k, ho, wo, dtype.itemsize)
            self.buf = xp.empty(self.k * self.rows * wo, dtype=dtype)

    def bands(self, img):
        """Yield ``(r0, r1, cols)`` for every band ``[r0, r1)`` of output rows of ``img``:
        ``cols`` is its ``(C*kh*kw, (r1 - r0)*Wo)`` im2col matrix, valid until the next one."""
        ho, wo = self.out_hw
        if self.direct:
            yield 0, ho, img.reshape(img.shape[0], -1)
            return
        xpad = self.pad(img)
        for r0, r1 in _bands(ho, self.rows):
            yield r0, r1, self.band(xpad, r0, r1, self.buf)

    def band(self, xpad, r0, r1, buf):
        """The ``(C*kh*kw, (r1 - r0)*Wo)`` im2col matrix of output rows [r0, r1) of ``xpad`` (an
        image padded by ``self.pad``), built in ``buf`` (``self.buf`` or one of its size)."""
        wo = self.out_hw[1]
        cols = buf[: self.k * (r1 - r0) * wo].reshape(xpad.shape[0], *self.kernel, r1 - r0, wo)
        self.xp.copyto(cols, windows(self.xp, xpad[:, r0 * self.stride[0]:], self.kernel,
                                     self.stride, self.dilation, (r1 - r0, wo)))
        return cols.reshape(self.k, (r1 - r0) * wo)


def offset_ranges(size, out, kernel, stride, padding, dilation=1):
    """For each kernel offset ``u`` along one axis: ``(u, outputs, inputs)``, the slice of output
    positions ``y`` whose input cell ``y*stride + u*dilation - padding`` lies inside ``[0, size)``
    and the (strided) slice of those input cells. Offsets that reach no input are left out."""
    for u in range(kernel):
        shift = u * dilation - padding
        lo = max(0, -(shift // stride))  # ceil(-shift / stride)
        hi = min(out, (size - 1 - shift) // stride + 1)
        if lo < hi:
            start = lo * stride + shift
            yield u, slice(lo, hi), slice(start, start + (hi - lo - 1) * stride + 1, stride)


def _taps(x_hw, out_hw, kernel, stride, padding, dilation):
    """Every kernel offset ``(u, v)`` that reaches the input, with its output and input slices,
    the largest blocks first (so that a sum over offsets can start with one that covers all)."""
    rows, cols = (list(offset_ranges(*a)) for a in zip(x_hw, out_hw, kernel, stride, padding,
                                                         dilation))
    taps = [(u, v, ro, co, ri, ci) for u, ro, ri in rows for v, co, ci in cols]
    return sorted(taps, key=lambda t: -(t[2].stop - t[2].start) * (t[3].stop - t[3].start))


def _sum_offsets(xp, dst, blocks):
    """``dst`` (N, K, H, W) = the sum over kernel offsets of their GEMM products.

    ``blocks`` yields ``(rows, cols, a, b)``: the product ``a @ b``, ``(K, N*r*c)``, belongs at
    ``dst[:, :, rows, cols]``. The sum runs in the GEMMs' own layout ``(K, N, H, W)`` (plain
    adds, no transposes) and is transposed into ``dst`` once. A first block covering all of
    ``dst`` (fc6's kernel centre; ``_taps`` puts the largest first) is written straight into
    the sum, so there is no zero fill."""
    n, k, h, w = dst.shape
    acc = xp.empty((k, n, h, w), dtype=dst.dtype)
    _accumulate_offsets(xp, acc, blocks)
    dst[...] = acc.transpose(1, 0, 2, 3)


def _sum_offsets_split(xp, dst, blocks):
    """``_sum_offsets`` for a call's only chunk (``batch_threads.split_one_chunk``): the rows of
    the sum (output channels; the input gradient's input channels) in ``SPLIT_SHARES`` fixed
    shares over the batch threads, each share summing its rows of every offset's product (one
    OpenBLAS thread); the offsets' blocks are all kept at once."""
    n, k, h, w = dst.shape
    blocks = [(rows, cols, a, b.copy()) for rows, cols, a, b in blocks]  # b: a reused buffer
    acc = xp.empty((k, n, h, w), dtype=dst.dtype)
    with one_blas_thread(xp):
        over_batch(xp, k, sum(a.size * b.shape[1] for _, _, a, b in blocks),
                   lambda k0, k1: _accumulate_offsets(
                       xp, acc[k0:k1], [(rows, cols, a[k0:k1], b) for rows, cols, a, b in blocks]),
                   size=-(-k // SPLIT_SHARES))
    dst[...] = acc.transpose(1, 0, 2, 3)


def _accumulate_offsets(xp, acc, blocks):
    """``acc (K, N, H, W)`` = the sum of the blocks' products (see ``_sum_offsets``)."""
    k, n, h, w = acc.shape
    part = xp.empty(acc.size, dtype=acc.dtype)
    started = False
    for rows, cols, a, b in blocks:
        r, c = len(range(h)[rows]), len(range(w)[cols])
        if not started and (r, c) == (h, w):
            xp.matmul(a, b, out=acc.reshape(k, -1))
        else:
            if not started:
                acc.fill(0)
            res = part[: k * b.shape[1]].reshape(k, b.shape[1])
            xp.matmul(a, b, out=res)
            acc[:, :, rows, cols] += res.reshape(k, n, r, c)
        started = True
    if not started:  # no offset meets the input: all padding
        acc.fill(0)


def padding_share(x_hw, out_hw, kernel, stride, padding, dilation):
    """The share of the im2col matrix that is padding (zeros): 1/3 for fc6 (3x3 dilation 6,
    padding 6 on 19x19), a few percent for 3x3 padding 1."""
    taps = _taps(x_hw, out_hw, kernel, stride, padding, dilation)
    used = sum((ro.stop - ro.start) * (co.stop - co.start) for _, _, ro, co, _, _ in taps)
    return 1 - used / (kernel[0] * kernel[1] * out_hw[0] * out_hw[1])


#: Above this share of zeros in im2col, convolve offset by offset instead (skipping the zeros).
BY_OFFSET_PADDING_SHARE = 0.25


def _by_offset(x_shape, out_hw, kernel, stride, padding, dilation):
    return padding_share(x_shape[2:], out_hw, kernel, stride, padding,
                         dilation) > BY_OFFSET_PADDING_SHARE


#: By offset, the images of a batch go in chunks of at least this many output positions (each
#: chunk's GEMMs repack the (O, C) weights of every offset: measured on fc6 at batch 8, chunks of
#: 4 images 3-8% faster than chunks of 2). Only the chunks' size, fixed by the layer's shape,
#: decides the GEMM shapes, never the thread count (see ``batch_threads``).
BY_OFFSET_MIN_COLUMNS = 1024


def _chunk_size(by_offset, out_hw):
    """Images per chunk (``batch_threads.batch_chunks``): by offset, enough for
    ``BY_OFFSET_MIN_COLUMNS``, rounded up to a power of two so that the chunks split the usual
    batch sizes evenly (fc6 on 19x19: 4); im2col works image by image, so one."""
    if not by_offset:
        return 1
    return 1 << (-(-BY_OFFSET_MIN_COLUMNS // (out_hw[0] * out_hw[1])) - 1).bit_length()


def _offset_weights(xp, weight):
    """``weight`` (O, C, kh, kw) as (kh, kw, O, C): one (O, C) GEMM operand per offset. Made once
    per call before the batch threads, the strided copy split between them by output channel."""
    o = weight.shape[0]
    wk = xp.empty((*weight.shape[2:], *weight.shape[:2]), dtype=weight.dtype)
    over_batch(xp, o, weight.size, lambda lo, hi: xp.copyto(
        wk[:, :, lo:hi], weight[lo:hi].transpose(2, 3, 0, 1)), size=-(-o // 16))
    return wk


def _offset_blocks(xp, x, taps):
    """Yield ``(u, v, ro, co, xs)`` for every kernel offset ``(u, v)`` of ``taps`` (``_taps``):
    ``xs`` is the ``(C, N*rows*cols)`` block of input cells that offset meets over the outputs
    ``[ro, co]`` of all images of ``x``, a chunk (one GEMM per offset for them all; a reused
    buffer, valid until the next iteration)."""
    n, c = x.shape[:2]
    cells = max([(ro.stop - ro.start) * (co.stop - co.start) for _, _, ro, co, _, _ in taps],
                default=0)
    buf = xp.empty(c * n * cells, dtype=x.dtype)
    for u, v, ro, co, ri, ci in taps:
        block = (c, n, ro.stop - ro.start, co.stop - co.start)
        xs = buf[: c * n * block[2] * block[3]].reshape(block)
        xp.copyto(xs, x[:, :, ri, ci].transpose(1, 0, 2, 3))
        yield u, v, ro, co, xs.reshape(c, -1)


def correlate(xp, x, weight, stride, padding, dilation, out, bias=None, keep_transform=False):
    """The forward convolution plus ``bias``, written into ``out`` (the images in chunks, split
    across threads on the CPU, see ``batch_threads``). ``keep_transform``: the weight wants no
    gradient here, so a Winograd layer may keep its transformed weights for the next call.

    x: (N, C, H, W); weight: (O, C, kh, kw); bias: (O,) or None; out: (N, O, Ho, Wo)
    C-contiguous. im2col: ``out[i][:, band] = W2 @ cols``. By offset (when im2col would be
    mostly padding): ``out[:, :, ro, co] += W[:, :, u, v] @ xs`` for each offset, zeros never
    multiplied. 3x3 stride-1 layers with enough channels go through Winograd (``winograd``).
    The bias is added to each piece of ``out`` as soon as that piece is final (a band, a chunk,
    a tile row), while it is still in cache: the bits of ``out += bias[:, None, None]`` after
    the whole convolution, without another pass over ``out`` on one thread."""
    if winograd.applies(weight.shape[2:], stride, dilation, x.shape[1], weight.shape[0],
                         out.shape[2:]):
        winograd.correlate(xp, x, weight, padding, out, bias, keep_transform)
        return
    by_offset = _by_offset(x.shape, out.shape[2:], weight.shape[2:], stride, padding, dilation)
    wk = _offset_weights(xp, weight) if by_offset else None
    over_chunks(xp, x.shape[0], _macs(weight, out), lambda chunks: _correlate(
        xp, x, weight, stride, padding, dilation, out, chunks, wk, bias),
        _chunk_size(by_offset, out.shape[2:]))


def _macs(weight, out):
    return weight.size * out.shape[0] * out.shape[2] * out.shape[3]


def _correlate(xp, x, weight, stride, padding, dilation, out, chunks, wk, bias=None):
    """The worker of ``correlate`` (see ``batch_threads.over_chunks``): each chunk ``[lo, hi)`` of
    ``x`` into ``out[lo:hi]``, plus ``bias``. ``wk`` (``_offset_weights``) is given exactly when
    the convolution goes by offset."""
    n, o, ho, wo = out.shape
    kernel = weight.shape[2:]
    split = split_one_chunk(xp)
    if wk is not None:
        for lo, hi in chunks:
            blocks = _offset_blocks(xp, x[lo:hi], _taps(x.shape[2:], (ho, wo), kernel, stride,
                                                         padding, dilation))
            (_sum_offsets_split if split else _sum_offsets)(
                xp, out[lo:hi], ((ro, co, wk[u, v], xs) for u, v, ro, co, xs in blocks))
            _add_bias(out[lo:hi], bias)
            yield None
        return
    w2 = weight.reshape(o, -1)  # (O, C*kh*kw); a view where it can be (1x1 flipped: W.T)
    flat = out.reshape(n, o, ho * wo)
    columns = _Columns(xp, x.shape[1:], kernel, stride, padding, dilation, (ho, wo), x.dtype)
    for lo, hi in chunks:
        for i in range(lo, hi):
            if split and columns.direct:
                _direct_split(xp, w2, x[i].reshape(x.shape[1], -1), flat[i], bias)
                continue
            if split:
                _bands_split(xp, columns, x[i], w2, flat[i], bias)
                continue
            for r0, r1, cols in columns.bands(x[i]):
                _product(xp, w2, cols, flat[i, :, r0 * wo: r1 * wo], bias)
        yield None


def _add_bias(out, bias):
    """``out += bias`` per output channel, ``out`` (N, O, H, W) or (O, P); nothing without one."""
    if bias is None:
        return
    if out.ndim == 4:
        out += bias[:, None, None]
    else:
        out += bias[:, None]


def _product(xp, w2, cols, out, bias):
    """``out = w2 @ cols + bias[:, None]``: (O, K) @ (K, P) -> out (O, P), the bias added while
    the product is in cache."""
    xp.matmul(w2, cols, out=out)
    _add_bias(out, bias)


#: A split image (``_bands_split``) goes in at least this many bands where it has the rows.
SPLIT_MIN_BANDS = 8
#: A split 1x1 or by-offset product goes in this many shares of the output channels.
SPLIT_SHARES = 8


def _direct_split(xp, w2, cols, out, bias):
    """A 1x1 convolution of a call's only image: ``out = w2 @ cols + bias`` in ``SPLIT_SHARES``
    fixed shares of the output channels over the batch threads, one OpenBLAS thread each."""
    o = w2.shape[0]
    with one_blas_thread(xp):
        over_batch(xp, o, w2.size * cols.shape[1], lambda o0, o1: _product(
            xp, w2[o0:o1], cols, out[o0:o1], None if bias is None else bias[o0:o1]),
            size=-(-o // SPLIT_SHARES))


def _bands_split(xp, columns, img, w2, out, bias):
    """The bands of a call's only image (``batch_threads.split_one_chunk``: batch 1) spread over
    the batch threads, each building its bands' columns in a buffer of its own, from one padded
    copy of the image; one OpenBLAS thread per GEMM. At least ``SPLIT_MIN_BANDS`` bands (conv1_1's
    cache budget alone would give two bands of 258 and 42 rows): fixed by the layer's shape."""
    ho, wo = columns.out_hw
    xpad = columns.pad(img)
    bands = _bands(ho, min(columns.rows, -(-ho // SPLIT_MIN_BANDS)))

    def worker(chunks):
        buf = xp.empty_like(columns.buf)
        for first, last in chunks:
            for r0, r1 in bands[first:last]:
                _product(xp, w2, columns.band(xpad, r0, r1, buf), out[:, r0 * wo: r1 * wo], bias)
            yield None

    with one_blas_thread(xp):
        over_chunks(xp, len(bands), w2.size * ho * wo, worker)


def backward(xp, x, g, weight, stride, padding, dilation, need_input, need_weight):
    """``(dx, dW)`` of ``correlate`` (None where not needed), given g = dL/dout C-contiguous."""
    if winograd.applies(weight.shape[2:], stride, dilation, x.shape[1], weight.shape[0],
                         g.shape[2:]):
        return winograd.backward(xp, x, g, weight, padding, need_input, need_weight)
    gw = weight_grad(xp, x, g, weight.shape[2:], stride, padding, dilation) if need_weight \
        else None
    gx = input_grad(xp, g, weight, x.shape, stride, padding, dilation) if need_input else None
    return gx, gw


def weight_grad(xp, x, g, kernel, stride, padding, dilation):
    """``dW`` (O, C, kh, kw) from x (N, C, H, W) and g (N, O, Ho, Wo) C-contiguous:
    ``dW2 = sum_i g[i] @ cols[i].T`` band by band, or by offset
    ``dW[:, :, u, v] = g[:, :, ro, co] @ xs.T`` (the images of a chunk side by side). Each
    chunk's sum is formed alone, and the chunks' sums are added in order (``batch_threads``)."""
    n, o = g.shape[:2]
    c = x.shape[1]
    by_offset = _by_offset(x.shape, g.shape[2:], kernel, stride, padding, dilation)
    total = sum_over_chunks(
        xp, n, c * kernel[0] * kernel[1] * g.size, lambda chunks: _weight_grad(
            xp, x, g, kernel, stride, padding, dilation, chunks, by_offset),
        _chunk_size(by_offset, g.shape[2:]))
    if total is None:  # an empty batch
        return xp.zeros((o, c, *kernel), dtype=g.dtype)
    return xp.ascontiguousarray(total)


def _offset_weight_grad(xp, x, g, taps, gw, chunks):
    """Worker (over chunks of ``taps``): ``gw[u, v] = g[:, :, ro, co] @ xs.T`` (O, C) for each
    offset ``(u, v)`` of the chunks, ``xs`` the block of ``x`` it meets (``_offset_blocks``)."""
    n, o = g.shape[:2]
    gbuf = xp.empty(g.size, dtype=g.dtype)
    for first, last in chunks:
        for u, v, ro, co, xs in _offset_blocks(xp, x, taps[first:last]):
            gs = gbuf[: o * xs.shape[1]].reshape(o, n, ro.stop - ro.start, co.stop - co.start)
            xp.copyto(gs, g[:, :, ro, co].transpose(1, 0, 2, 3))
            xp.matmul(gs.reshape(o, xs.shape[1]), xs.T, out=gw[u, v])
        yield None


def _weight_grad(xp, x, g, kernel, stride, padding, dilation, chunks, by_offset):
    """The worker of ``weight_grad``: yields each chunk's share of ``dW``, a fresh array."""
    n, o, ho, wo = g.shape
    c = x.shape[1]
    if by_offset:
        taps = _taps(x.shape[2:], (ho, wo), kernel, stride, padding, dilation)
        for lo, hi in chunks:
            gw = xp.zeros((*kernel, o, c), dtype=g.dtype)  # offsets reaching nothing stay 0
            # the offsets over the batch threads when this is a call's only chunk (inside a
            # batch thread they simply run one after the other)
            over_chunks(xp, len(taps), c * g[lo:hi].size * len(taps), functools.partial(
                _offset_weight_grad, xp, x[lo:hi], g[lo:hi], taps, gw))
            yield gw.transpose(2, 3, 0, 1)  # a view: summed, then copied by weight_grad
        return
    columns = _Columns(xp, x.shape[1:], kernel, stride, padding, dilation, (ho, wo), x.dtype)
    gflat = g.reshape(n, o, ho * wo)
    part = xp.empty((o, columns.k), dtype=g.dtype)
    for lo, hi in chunks:
        gw = None
        for i in range(lo, hi):
            for r0, r1, cols in columns.bands(x[i]):
                if gw is None:  # the first band is written, the others added
                    gw = xp.matmul(gflat[i, :, r0 * wo: r1 * wo], cols.T)
                else:
                    xp.matmul(gflat[i, :, r0 * wo: r1 * wo], cols.T, out=part)
                    gw += part
        yield gw.reshape(o, c, *kernel)


#: The flipped-kernel input gradient builds columns of g (kh*kw*O rows); col2im writes and adds
#: kh*kw*C rows. Measured (one thread, CPU time): flipped ~10% cheaper when O == C, even at
#: O == 2C, and col2im 8x cheaper for conv1_1 (3 -> 64, where the flipped GEMM has 3 rows).
FLIP_MAX_CHANNEL_RATIO = 1


def input_grad(xp, g, weight, x_shape, stride, padding, dilation):
    """``dx`` (N, C, H, W) from ``g`` (N, O, Ho, Wo) C-contiguous and ``weight`` (O, C, kh, kw):
    the adjoint of the forward by offset where that went by offset; else, stride 1 and
    ``O <= C``, a correlation of ``g`` with the flipped kernel; else col2im."""
    o, c, kh, kw = weight.shape
    n = x_shape[0]
    (ph, pw), (dh, dw) = padding, dilation
    dx = xp.empty(x_shape, dtype=g.dtype)
    work = _macs(weight, g)
    if _by_offset(x_shape, g.shape[2:], (kh, kw), stride, padding, dilation):
        wk = _offset_weights(xp, weight)
        over_chunks(xp, n, work, lambda chunks: _offset_adjoint(
            xp, g, wk, stride, padding, dilation, dx, chunks), _chunk_size(True, g.shape[2:]))
    elif stride == (1, 1) and o <= FLIP_MAX_CHANNEL_RATIO * c:
        # a correlation of g with the flipped, channel-swapped kernel
        wflip = weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
        fpad = (dh * (kh - 1) - ph, dw * (kw - 1) - pw)
        by_offset = _by_offset(g.shape, x_shape[2:], (kh, kw), (1, 1), fpad, dilation)
        wk = _offset_weights(xp, wflip) if by_offset else None
        over_chunks(xp, n, work, lambda chunks: _correlate(
            xp, g, wflip, (1, 1), fpad, dilation, dx, chunks, wk),
            _chunk_size(by_offset, x_shape[2:]))
    else:
        over_chunks(xp, n, work, lambda chunks: _col2im(xp, g, weight, stride, padding,
                                                         dilation, dx, chunks))
    return dx


def _offset_adjoint(xp, g, wk, stride, padding, dilation, dx, chunks):
    """Worker: the adjoint of the forward by offset, ``dx[:, :, ri, ci] += W[:, :, u, v].T @ gs``
    for each offset, on each chunk of images."""
    kernel, (h, w) = wk.shape[:2], dx.shape[2:]
    taps = _taps((h, w), g.shape[2:], kernel, stride, padding, dilation)
    split = split_one_chunk(xp)
    for lo, hi in chunks:
        (_sum_offsets_split if split else _sum_offsets)(
            xp, dx[lo:hi], _offset_grad_blocks(xp, g[lo:hi], wk, taps))
        yield None


def _offset_grad_blocks(xp, g, wk, taps):
    """``_sum_offsets``'s blocks for the adjoint: ``(ri, ci, W[:, :, u, v].T, gs)`` with ``gs``
    the ``(O, N*rows*cols)`` block of ``g`` at the outputs ``[ro, co]`` of offset ``(u, v)``."""
    n, o = g.shape[:2]
    gbuf = xp.empty(g.size, dtype=g.dtype)
    for u, v, ro, co, ri, ci in taps:
        block = (o, n, ro.stop - ro.start, co.stop - co.start)
        gs = gbuf[: o * n * block[2] * block[3]].reshape(block)
        xp.copyto(gs, g[:, :, ro, co].transpose(1, 0, 2, 3))
        yield ri, ci, wk[u, v].T, gs.reshape(o, -1)


def _col2im(xp, g, weight, stride, padding, dilation, dx, chunks):
    """Worker: ``dcols = W2.T @ g[i][:, band]``, added back window by window, image by image."""
    o, c, kh, kw = weight.shape
    n, _, h, w = dx.shape
    ph, pw = padding
    ho, wo = g.shape[2:]
    k = c * kh * kw
    w2t = weight.reshape(o, k).T
    gflat = g.reshape(n, o, ho * wo)
    dpad = xp.empty((c, h + 2 * ph, w + 2 * pw), dtype=g.dtype)
    rows = _band_rows(xp, k, ho, wo, g.dtype.itemsize)
    buf = xp.empty(k * rows * wo, dtype=g.dtype)
    for lo, hi in chunks:
        for i in range(lo, hi):
            dpad.fill(0)
            for r0, r1 in _bands(ho, rows):
                dcols = buf[: k * (r1 - r0) * wo].reshape(k, (r1 - r0) * wo)
                xp.matmul(w2t, gflat[i, :, r0 * wo: r1 * wo], out=dcols)
                add_windows(dpad[:, r0 * stride[0]:], dcols.reshape(c, kh, kw, r1 - r0, wo),
                            stride, dilation)
            dx[i] = dpad[:, ph: ph + h, pw: pw + w]
        yield None
