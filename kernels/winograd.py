"""Winograd F(2x2, 3x3): 3x3 stride-1 convolutions with 16 multiplications per 2x2 output tile
instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016);
and, on large maps, F(4x4, 3x3): 36 per 4x4 tile instead of 144.

The input, padded, is cut into 4x4 tiles ``d`` starting every 2 pixels (neighbours overlap by 2
rows or columns); each gives a 2x2 tile of the output::

    out_tile = A^T [ sum_c (G w[o, c] G^T) * (B^T d[c] B) ] A        (* elementwise, 4x4)

With ``U = G w G^T`` (4, 4, O, C) and ``V = B^T d B`` (4, 4, C, T) for the T tiles, the sum over
``c`` is one GEMM per tile position ``xi = (i, j)``: 16 GEMMs of ``(O, C) @ (C, T)``, 2.25x fewer
multiply-adds than im2col's ``(O, 9C) @ (9C, 4T)``. ``A``, ``B`` and ``G`` only hold 0, +-1 and
1/2, so the transforms are a few adds per value (``_combine``), and float32 results stay within
about 1e-6 of the direct sum (float64: 1e-15).

F(4x4, 3x3) is the same recipe with 6x6 tiles every 4 pixels (``BT4``, ``G4``, ``AT4``: 36 GEMMs
over a quarter as many tiles, 4x fewer multiply-adds than im2col). Its matrices hold up to 8
and 1/24, so float32 results stray further: 4e-6 to 7e-6 of the largest value at a VGG layer,
10-14x im2col's error (``tests/kernels/test_winograd.py``). The forward takes it on the CPU
where both output sides reach ``MIN_F4_SIDE`` and a call has ``MIN_F4_TILES`` tiles
(``forward_scheme``; on 19x19 maps its GEMMs get too few columns). The same functions run both
algorithms (``Scheme``: the transforms read which one from their arrays' tile size); on this
project's machine, whose OpenBLAS runs
AVX2 kernels where PyTorch's convolutions use AVX-512, it took SSD300's batch-8 forward from
2.6-2.7 s to 2.0-2.2 s.

The backward is the gradient of the convolution, whichever algorithm computed the forward. The
input gradient of a stride-1 3x3 convolution is itself one (``flipped_weight``): where that
forward would take F(4x4, 3x3), ``backward`` computes it so (``input_grad_as_forward``). The
weight gradient, and elsewhere the input gradient, is the exact adjoint of the three steps (of
F(4x4, 3x3) for the weight gradient where the forward takes it, else of F(2x2, 3x3)), with
``dM = A dY A^T`` per output tile::

    dU[xi] = dM[xi] @ V[xi].T            dW = G^T dU G
    dV[xi] = U[xi].T @ dM[xi]            dd = B dV B^T, added back onto the overlapping tiles

Images go in groups of at least ``MIN_GEMM_COLUMNS`` tiles (side by side in the GEMM columns;
large maps one image at a time), and each group in bands of tile rows, so that a band's ``V``
and ``M`` stay cache-sized (``_band_tile_rows``). The transforms work on whole strided planes
(row pass, then column pass), never on single tiles: those NumPy transforms
(``*_tiles_reference``) are the readable ones and run on CuPy; on NumPy arrays the Numba kernels
of ``winograd_tiles.py`` do the same arithmetic in one pass (the same bits). On the CPU a group
is the chunk of images that one batch thread takes (``batch_threads``): the groups, so the
GEMMs' shapes, depend on the batch size and the layer's shape only, and ``dU`` is summed per
group, then over the groups in order; so the results do not depend on the thread count.
"""

from __future__ import annotations

import threading
import weakref
from typing import NamedTuple

from . import workspace
from .batch_threads import (
    one_blas_thread,
    over_batch,
    over_chunks,
    split_one_chunk,
    sum_over_chunks,
)

# Lavin & Gray's F(2x2, 3x3) matrices (points 0, 1, -1, infinity)
BT = ((1, 0, -1, 0),
      (0, 1, 1, 0),
      (0, -1, 1, 0),
      (0, 1, 0, -1))
G = ((1, 0, 0),
     (0.5, 0.5, 0.5),
     (0.5, -0.5, 0.5),
     (0, 0, 1))
AT = ((1, 1, 1, 0),
      (0, 1, -1, -1))
# F(4x4, 3x3), Lavin & Gray's table (points 0, +-1, +-2, infinity): 6x6 input tiles every 4 pixels
BT4 = ((4, 0, -5, 0, 1, 0),
       (0, -4, -4, 1, 1, 0),
       (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0),
       (0, 2, -1, -2, 1, 0),
       (0, 4, 0, -5, 0, 1))
G4 = ((1 / 4, 0, 0),
      (-1 / 6, -1 / 6, -1 / 6),
      (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6),
      (0, 0, 1))
AT4 = ((1, 1, 1, 1, 1, 0),
       (0, 1, -1, 2, -2, 0),
       (0, 1, 1, 4, 4, 0),
       (0, 1, -1, 8, -8, 1))


class Scheme(NamedTuple):
    """One Winograd algorithm F(m x m, 3x3): ``a = m + 2`` input rows per tile, ``a * a`` GEMMs."""

    bt: tuple
    g: tuple
    at: tuple

    @property
    def m(self):
        return len(self.at)

    @property
    def a(self):
        return len(self.bt)


F2 = Scheme(BT, G, AT)
F4 = Scheme(BT4, G4, AT4)
SCHEMES = {F2.a: F2, F4.a: F4}  # by input tile size: the transforms read it off their arrays

#: Size of one band's transformed input ``V`` on the CPU (cache-sized, as im2col's bands).
CPU_BAND_BYTES = 8 << 20
GPU_BAND_BYTES = 512 << 20
#: GEMMs get at least this many columns (tiles) when the images of a call have them: fewer, and
#: repacking the (O, C) matrix of each of the 16 GEMMs costs more than it is worth.
MIN_GEMM_COLUMNS = 384
#: Winograd where C*O/(C+O) reaches this: below it the transforms (memory traffic ~ C + O per
#: tile) cost more than the GEMM work saved (~ C*O per tile). Measured with the Numba transforms
#: (``winograd_tiles``), forward + backward, im2col -> Winograd, 2 cores: SSD300 conv1_2
#: (64 -> 64 on 300x300, 32) batch 8 3.2 -> 1.5 s, batch 2 0.50 -> 0.40 s, batch 1 forward
#: 81 -> 80 ms; the small model's conv3_2 (64 -> 64 on 32x32, batch 16) 44 -> 38 ms; but
#: 512 -> 16 (15.5) 128 -> 133 ms and 1024 -> 24 (23.4) 69 -> 92 ms at batch 8. (With the
#: NumPy transforms the line stood at 40: conv1_2 was 1.52x torch by Winograd, 1.04x by im2col.)
MIN_CHANNELS = 32
#: The forward takes F(4x4, 3x3) where both output sides reach this (CPU only). Measured, one
#: layer, 2 threads, median ms of 8 calls (two runs), F(2x2) -> F(4x4): batch 8, 64 -> 64 on
#: 300x300 224-274 -> 149-198, 128 on 150x150 169-193 -> 122-157, 256 on 75x75 148-167 ->
#: 103-122, 512 on 38x38 147-167 -> 120-134, but 512 on 19x19 43 -> 47 (5x5 tiles); batch 1:
#: 29-57 -> 22-41, 21-37 -> 16-30, 19-24 -> 13-23, 20-23 -> 20-26, 19x19 8-10 -> 13-17.
MIN_F4_SIDE = 32
#: ... and where a call has at least this many 4x4 tiles: F(4x4)'s weight transform writes 36
#: values per weight pair (F(2x2): 16), which a few tiles do not repay. SSD300's 38x38 layers
#: have 100 tiles an image: at batch 1 they took F(2x2) while the 36 MiB of a 512 -> 512
#: layer's transform were page-faulted in afresh on every call (batch-1 forward 291-327 ->
#: 269-296 ms by F(2x2)); with the transform in a reused buffer (``workspace``) F(4x4) is the
#: faster there too in four comparisons of five: batch-1 ``predict`` 258 -> 251, 259 -> 257,
#: 286 -> 261, 359 -> 353 ms, once 361 -> 405 (medians of 12-16 calls, alternating in one
#: process).
MIN_F4_TILES = 100


def applies(kernel, stride, dilation, channels, out_channels, out_hw):
    """Whether ``conv2d`` goes through F(2x2, 3x3) (any padding)."""
    return (tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and min(out_hw) >= 2
            and channels * out_channels >= MIN_CHANNELS * (channels + out_channels))


def _combine(xp, rows, parts, outs, accumulate=False):
    """``outs[i] (+)= sum_k rows[i][k] * parts[k]`` for a small matrix ``rows`` of 0, +-1, 1/2.

    ``parts`` and ``outs`` are array views of one shape; a two-term row is one NumPy call."""
    for row, out in zip(rows, outs):
        terms = [(coef, part) for coef, part in zip(row, parts) if coef != 0]
        if not accumulate and len(terms) >= 2 and abs(terms[0][0]) == abs(terms[1][0]) == 1:
            (c0, p0), (c1, p1) = terms[:2]
            if c0 == c1:
                xp.add(p0, p1, out=out)
                if c0 < 0:
                    xp.negative(out, out=out)
            elif c0 > 0:
                xp.subtract(p0, p1, out=out)
            else:
                xp.subtract(p1, p0, out=out)
            terms = terms[2:]
        elif not accumulate:
            coef, part = terms.pop(0)
            xp.multiply(part, coef, out=out)
        for coef, part in terms:
            if coef == 1:
                out += part
            elif coef == -1:
                out -= part
            else:
                out += coef * part


def _transpose(rows):
    return tuple(zip(*rows))


def _gg(xp, dtype, scheme=F2):
    """``G (x) G`` (a*a, 9): ``(G w G^T)[i, j] = sum_uv G[i, u] G[j, v] w[u, v]`` as one
    matrix."""
    g = xp.asarray(scheme.g, dtype=dtype)
    return xp.kron(g, g)


#: The weight transforms go in this many chunks of output channels (a fixed number: a GEMM's
#: bits depend on its shape, and the shapes must not depend on the thread count).
WEIGHT_CHUNKS = 16


def weight_transform(xp, weight, scheme=F2):
    """``U = G w G^T`` per (o, c): (O, C, 3, 3) -> (a, a, O, C), C-contiguous: one GEMM
    ``(G (x) G) @ w.reshape(O*C, 9).T``, split between the batch threads by output channel.
    ``U`` lives in this thread's scratch buffer (``workspace``): valid until the next
    ``weight_transform`` in this thread."""
    o, c = weight.shape[:2]
    a = scheme.a
    gg, w9 = _gg(xp, weight.dtype, scheme), weight.reshape(o * c, 9)
    u = workspace.scratch(xp, "winograd.U", (a * a, o * c), weight.dtype)
    with one_blas_thread(xp):  # it comes right before the batch threads (see one_blas_thread)
        over_batch(xp, o, a * a * weight.size, lambda lo, hi: xp.matmul(
            gg, w9[lo * c: hi * c].T, out=u[:, lo * c: hi * c]), size=-(-o // WEIGHT_CHUNKS))
    return u.reshape(a, a, o, c)


#: Transformed weights kept from call to call (``kept_weight_transform``): by ``(id(weight),
#: tile size)``, ``(weakref to the weight, a copy of its values, U)``.
_kept = {}
_kept_lock = threading.RLock()  # re-entrant: a weight collected while it is held drops its entry


def kept_weight_transform(xp, weight, scheme=F2):
    """``weight_transform``'s ``U`` (the same bits), kept from the last call with this weight
    array for as long as its values stay what they were: compared bit for bit with a copy taken
    then, so a weight changed in place (an optimiser step, ``load_state_dict``) is transformed
    anew, never served stale. For forwards whose weights want no gradient (inference): there
    the transform was recomputed from unchanged weights on every call, measured at 72 ms of a
    483 ms batch-1 SSD300 ``predict`` (170 MB of ``U`` written per call); kept, in one process,
    alternating calls: batch-1 ``predict`` 0.888x (16 calls each), batch 8 0.954x (6 each),
    the check included (the values read twice; their transform writes 4 or 2.25 times as
    much). The entry goes with
    the weight array (a weak reference), or with a forward that wants a gradient
    (``drop_kept_transform``): it holds ``U`` and a copy of the weight."""
    key = (id(weight), scheme.a)
    with _kept_lock:
        entry = _kept.get(key)
    if entry is not None:
        ref, values, u = entry
        if ref() is weight and values.shape == weight.shape and values.dtype == weight.dtype \
                and xp.array_equal(_bits(xp, values), _bits(xp, weight)):
            return u
    u = weight_transform(xp, weight, scheme).copy()  # out of the scratch buffer: kept
    ref = weakref.ref(weight, lambda _, key=key: drop_kept_transform(key))
    with _kept_lock:
        _kept[key] = (ref, weight.copy(), u)
    return u


def drop_kept_transform(key):
    """Forget the kept transform under ``key = (id(weight), tile size)``, if any."""
    with _kept_lock:
        _kept.pop(key, None)


def _bits(xp, a):
    """``a``'s values as unsigned integers of their width: equal exactly when the values are bit
    for bit the same (NaN and signed zeros included). (Compared as bytes, a 512 -> 512 kernel
    took 3.6 ms; as 32-bit words 0.9 ms.)"""
    return xp.ascontiguousarray(a).reshape(-1).view(f"u{a.dtype.itemsize}")


def weight_transform_adjoint(xp, du):
    """``dW = G^T dU G`` per (o, c): (a, a, O, C) -> (O, C, 3, 3), split like the transform."""
    o, c = du.shape[2:]
    a = du.shape[0]
    ggt = _gg(xp, du.dtype, SCHEMES[a]).T
    dw = xp.empty((o, c, 3, 3), dtype=du.dtype)

    def part(lo, hi):
        dw9 = ggt @ du[:, :, lo:hi].reshape(a * a, (hi - lo) * c)  # (9, share of O*C)
        dw[lo:hi] = dw9.reshape(3, 3, hi - lo, c).transpose(2, 3, 0, 1)

    with one_blas_thread(xp):
        over_batch(xp, o, a * a * dw.size, part, size=-(-o // WEIGHT_CHUNKS))
    return dw


def _tiles(out_hw, m=2):
    """(tile rows, tile cols): m x m output tiles covering ``out_hw`` (the last may hang over)."""
    return tuple(-(-s // m) for s in out_hw)


def _band_tile_rows(xp, n, channels, tw, itemsize, a=4):
    budget = CPU_BAND_BYTES if xp.__name__ == "numpy" else GPU_BAND_BYTES
    return max(1, budget // (a * a * channels * n * tw * itemsize))


def _padded(xp, shape, padding, tiles, dtype, m=2):
    """A zeroed (n, C, m th + 2, m tw + 2) buffer and the view of it where the (n, C, H, W)
    images go, offset by the padding (the tiles cover at least H + 2 ph rows, so they fit).
    Only the interior is written afterwards: the border stays zero."""
    n, c, h, w = shape
    (ph, pw), (th, tw) = padding, tiles
    buf = xp.zeros((n, c, m * th + 2, m * tw + 2), dtype=dtype)
    return buf, buf[:, :, ph: ph + h, pw: pw + w]


class _Padding:
    """Where the transforms read a group of images zero-padded. The Numba kernels (NumPy arrays)
    read the images themselves and take the zeros as they go; the whole-plane transforms
    (``*_tiles_reference``, CuPy) read a zeroed ``shape`` buffer with the images copied in at
    ``offset``, made once per call (only the interior is written: the border stays zero).

    The padded copy was a serial step of every call that is one chunk (batch 1, 2):
    measured on one thread, a 64-channel 300x300 image's copy 8-11 ms, its F(4x4) input
    transform 15-22 ms with the copy's result and 0.2-0.5 ms more reading the image itself
    (512 channels on 38x38: copy 1.2 ms, +0.4 ms). SSD300 in one process, calls alternating
    between a padded copy and none, none / copy: batch-2 training step 0.945x (median of 8
    steps each; median of the pairs 0.923x), batch-1 ``predict`` 0.929x (16 calls each; pairs
    0.952x); the same bits."""

    def __init__(self, xp, shape, offset, dtype):
        self.offset = offset
        self.buf = None if _on_cpu(xp) else xp.zeros(shape, dtype=dtype)

    def __call__(self, images):
        """``(array, (ph, pw))``: what the transforms read, and the zero rows and columns to
        take before it."""
        if self.buf is None:
            return images, self.offset
        (ph, pw), (n, _, h, w) = self.offset, images.shape
        self.buf[:n, :, ph: ph + h, pw: pw + w] = images
        return self.buf[:n], (0, 0)


def _group_size(tiles_per_image):
    """Images per group: at least ``MIN_GEMM_COLUMNS`` tiles (one image when it has that many):
    small maps share their GEMMs, large ones keep a group's buffers to one image's size."""
    return max(1, -(-MIN_GEMM_COLUMNS // tiles_per_image))


def _groups(lo, hi, size):
    """The groups of ``size`` images in the chunk ``[lo, hi)`` (on the CPU the chunk is one
    group; on CuPy the whole batch)."""
    return [(i, min(hi, i + size)) for i in range(lo, hi, size)]


def _on_cpu(xp):
    """Whether the Numba tile kernels (``winograd_tiles.py``) take the transforms: NumPy arrays;
    CuPy arrays keep the whole-plane NumPy/CuPy transforms (``*_tiles_reference``)."""
    return xp.__name__ == "numpy"


def input_tiles(xp, src, t0, t1, tw, rbuf, v):
    """``input_tiles_reference``'s numbers (the same bits) from ``src = (images, padding)``
    (``_Padding``), by the Numba kernel on NumPy."""
    images, padding = src
    if not _on_cpu(xp):
        return input_tiles_reference(xp, images, t0, t1, tw, rbuf, v)  # padded: (0, 0)
    from . import winograd_tiles

    winograd_tiles.input_tiles_any(images, padding, t0, v, 0, v.shape[2])


def output_tiles(xp, m, out, t0, rbuf, bias=None):
    """``output_tiles_reference``'s numbers (the same bits), by the Numba kernel on NumPy; plus
    ``bias`` (O,) when given, the bits of adding it afterwards (the kernel adds it to each row
    it writes; on CuPy it goes onto the band's rows after the whole-plane transform)."""
    if not _on_cpu(xp):
        output_tiles_reference(xp, m, out, t0, rbuf)
        if bias is not None:
            mt = SCHEMES[m.shape[0]].m
            out[:, :, mt * t0: mt * (t0 + m.shape[4])] += bias[:, None, None]
        return
    from . import winograd_tiles

    winograd_tiles.output_tiles_any(m, out, t0, 0, m.shape[2], bias)


def grad_tiles(xp, src, t0, t1, rbuf, dm):
    """``grad_tiles_reference``'s numbers (the same bits) from ``src = (g, (0, 0))``
    (``_Padding``), by the Numba kernel on NumPy."""
    if not _on_cpu(xp):
        return grad_tiles_reference(xp, src[0], t0, t1, rbuf, dm)
    from . import winograd_tiles

    winograd_tiles.grad_tiles_any(src[0], t0, dm, 0, dm.shape[2])


def add_input_tiles(xp, dv, dxpad, t0, rbuf):
    """``add_input_tiles_reference``'s numbers (the same bits), by the Numba kernel on NumPy."""
    if not _on_cpu(xp):
        return add_input_tiles_reference(xp, dv, dxpad, t0, rbuf)
    from . import winograd_tiles

    winograd_tiles.add_input_tiles(dv, dxpad, t0, 0, dv.shape[2])


def input_tiles_reference(xp, xpad, t0, t1, tw, rbuf, v):
    """``V = B^T d B`` for tile rows [t0, t1): xpad (n, C, Hp, Wp) -> v (a, a, C, n, rows, tw),
    the a x a tiles starting every m pixels (F(2x2): a = 4, m = 2; F(4x4): 6 and 4, read off
    ``v``'s shape)."""
    n, c, _, wp = xpad.shape
    s = SCHEMES[v.shape[0]]
    a, m, rows = s.a, s.m, t1 - t0
    r = rbuf[: a * n * c * rows * wp].reshape(a, n, c, rows, wp)
    _combine(xp, s.bt, [xpad[:, :, m * t0 + u: m * t1 + u: m] for u in range(a)], r)
    for i in range(a):
        _combine(xp, s.bt, [r[i][..., u: u + m * tw: m].transpose(1, 0, 2, 3) for u in range(a)],
                 v[i])


def output_tiles_reference(xp, m, out, t0, rbuf):
    """``A^T M A``: m (a, a, O, n, rows, tw) -> out rows [mt t0, mt (t0 + rows)) (n, O, Ho, Wo)
    for output tiles of mt x mt, cropping the tiles that hang over the last row or column."""
    _, _, o, n, rows, tw = m.shape
    s = SCHEMES[m.shape[0]]
    ho, wo = out.shape[2:]
    r = rbuf[: s.m * s.a * m[0, 0].size].reshape(s.m, s.a, o, n, rows, tw)
    _combine(xp, s.at, m, r)
    for a in range(s.m):
        ys = range(s.m * t0 + a, min(s.m * (t0 + rows), ho), s.m)
        for b in range(s.m):
            xs = range(b, wo, s.m)
            dst = out[:, :, ys.start: ys.stop: s.m, b:: s.m].transpose(1, 0, 2, 3)
            _combine(xp, s.at[b: b + 1], [r[a, j][:, :, : len(ys), : len(xs)]
                                          for j in range(s.a)], [dst])


def grad_tiles_reference(xp, gpad, t0, t1, rbuf, dm):
    """``dM = A dY A^T`` (the adjoint of ``_output_tiles``): gpad (n, O, m th, m tw) -> dm
    (a, a, O, n, rows, tw)."""
    n, o, _, w2 = gpad.shape
    s = SCHEMES[dm.shape[0]]
    rows, m = t1 - t0, s.m
    q = rbuf[: s.a * n * o * rows * w2].reshape(s.a, n, o, rows, w2)
    a = _transpose(s.at)
    _combine(xp, a, [gpad[:, :, m * t0 + b: m * t1: m] for b in range(m)], q)
    for i in range(s.a):
        _combine(xp, a, [q[i][..., b::m].transpose(1, 0, 2, 3) for b in range(m)], dm[i])


def add_input_tiles_reference(xp, dv, dxpad, t0, rbuf):
    """``dd = B dV B^T`` added onto the overlapping input tiles (the adjoint of
    ``_input_tiles``): dv (4, 4, C, n, rows, tw) -> dxpad (n, C, Hp, Wp) += ..."""
    _, _, c, n, rows, tw = dv.shape
    wp = dxpad.shape[3]
    r = rbuf[: 4 * n * c * rows * wp].reshape(4, n, c, rows, wp)
    r.fill(0)
    b = _transpose(BT)
    for i in range(4):
        _combine(xp, b, dv[i], [r[i][..., u: u + 2 * tw: 2].transpose(1, 0, 2, 3)
                                for u in range(4)], accumulate=True)
    _combine(xp, b, r, [dxpad[:, :, 2 * t0 + u: 2 * (t0 + rows) + u: 2] for u in range(4)],
             accumulate=True)


def _buffers(xp, n, c, o, tw, rows, wp, dtype, scheme=F2):
    """Reused per-band buffers: transformed input, transformed output, and row-pass scratch."""
    cols, a = n * rows * tw, scheme.a
    v = xp.empty(a * a * c * cols, dtype=dtype)
    m = xp.empty(a * a * o * cols, dtype=dtype)
    scratch = xp.empty(a * n * max(c, o) * rows * max(wp, scheme.m * tw), dtype=dtype)
    return v, m, scratch


def _bands(th, rows):
    return [(t0, min(th, t0 + rows)) for t0 in range(0, th, rows)]


def forward_scheme(xp, out_hw, n):
    """The algorithm of a forward of ``n`` images: F(4x4, 3x3) on the CPU where both output sides
    reach ``MIN_F4_SIDE`` and the call has ``MIN_F4_TILES`` 4x4 tiles, else F(2x2, 3x3). The
    weight gradient is the adjoint of the same algorithm; the input gradient is computed as a
    forward (``input_grad_as_forward``) or as F(2x2, 3x3)'s adjoint."""
    th, tw = _tiles(out_hw, F4.m)
    return F4 if (_on_cpu(xp) and min(out_hw) >= MIN_F4_SIDE
                  and n * th * tw >= MIN_F4_TILES) else F2


def correlate(xp, x, weight, padding, out, bias=None, keep_transform=False):
    """Forward: x (N, C, H, W), weight (O, C, 3, 3), bias (O,) or None -> out (N, O, Ho, Wo).
    The output transform adds the bias to each band of output rows it writes (``output_tiles``).
    ``keep_transform``: the weight wants no gradient (inference); on the CPU its transform is
    kept for the next call (``kept_weight_transform``)."""
    scheme = forward_scheme(xp, out.shape[2:], x.shape[0])
    if keep_transform and _on_cpu(xp):
        u = kept_weight_transform(xp, weight, scheme)
    else:
        if _kept:
            drop_kept_transform((id(weight), scheme.a))  # training again: free its memory
        u = weight_transform(xp, weight, scheme)
    th, tw = _tiles(out.shape[2:], scheme.m)
    over_chunks(xp, x.shape[0], _macs(weight, out), lambda chunks: _correlate(
        xp, x, u, padding, out, chunks, bias), _group_size(th * tw))


def _macs(weight, out):
    return weight.size * out.shape[0] * out.shape[2] * out.shape[3]


def _correlate(xp, x, u, padding, out, chunks, bias):
    """The worker of ``correlate`` (see ``batch_threads.over_chunks``): each chunk of ``x`` into the
    same images of ``out``, group by group, plus ``bias`` (or None)."""
    n, c = x.shape[:2]
    o = u.shape[2]
    scheme = SCHEMES[u.shape[0]]
    a = scheme.a
    th, tw = _tiles(out.shape[2:], scheme.m)
    k = min(n, _group_size(th * tw))  # images per group
    padded = _Padding(xp, (k, c, scheme.m * th + 2, scheme.m * tw + 2), padding, x.dtype)
    rows = _band_tile_rows(xp, k, max(c, o), tw, x.dtype.itemsize, a)
    vbuf, mbuf, scratch = _buffers(xp, k, c, o, tw, min(rows, th), scheme.m * tw + 2, x.dtype,
                                   scheme)
    split = split_one_chunk(xp)
    for lo, hi in chunks:
        for i0, i1 in _groups(lo, hi, k):
            m_ = i1 - i0
            src = padded(x[i0:i1])
            for t0, t1 in _bands(th, rows):
                cols = m_ * (t1 - t0) * tw
                v = vbuf[: a * a * c * cols].reshape(a, a, c, m_, t1 - t0, tw)
                m = mbuf[: a * a * o * cols].reshape(a, a, o, m_, t1 - t0, tw)
                if split:
                    _band_split(xp, src, t0, u, v, m, out[i0:i1], bias)
                    continue
                input_tiles(xp, src, t0, t1, tw, scratch, v)
                _tile_gemms(xp, u, v, m, 0, a * a)
                output_tiles(xp, m, out[i0:i1], t0, scratch, bias)
        yield None


def _tile_gemms(xp, u, v, m, first, last):
    """``M[xi] = U[xi] @ V[xi]`` for the tile positions ``xi = a i + j`` in [first, last)."""
    c, o = v.shape[2], m.shape[2]
    cols = v[0, 0].size // c
    for xi in range(first, last):
        i, j = divmod(xi, u.shape[0])
        xp.matmul(u[i, j], v[i, j].reshape(c, cols), out=m[i, j].reshape(o, cols))


#: A split band's transforms go in this many shares of channels (any number gives the same bits:
#: they are elementwise; enough shares that a thread held up by another process holds up little).
TRANSFORM_SHARES = 8
#: What one transformed value costs, in the GEMM multiply-adds that ``batch_threads`` counts as
#: work: measured on one core, the Numba input transform takes 0.8 ns per value and a
#: (512, 512) @ (512, 228) GEMM 0.026 ns per multiply-add. Counted as one each, a 38x38 layer's
#: band (1.9M values) fell below ``MIN_PARALLEL_WORK`` and its transforms ran on one thread.
TRANSFORM_COST = 32


def _band_split(xp, src, t0, u, v, m, out, bias):
    """One band of a call's only chunk (``batch_threads.split_one_chunk``), its pieces spread over
    the batch threads: the input transform by shares of the input channels, the 16 GEMMs one per
    tile position, the output transform by shares of the output channels; one OpenBLAS thread
    throughout, so each GEMM's bits are those of one thread whichever thread runs it."""
    from . import winograd_tiles

    c, o = v.shape[2], m.shape[2]
    with one_blas_thread(xp):
        over_batch(xp, c, TRANSFORM_COST * v.size, lambda c0, c1: (
            winograd_tiles.input_tiles_any(*src, t0, v, c0, c1)), size=-(-c // TRANSFORM_SHARES))
        over_batch(xp, u.shape[0] * u.shape[1], u[0, 0].size * (v.size // c),
                   lambda first, last: _tile_gemms(xp, u, v, m, first, last))
        over_batch(xp, o, TRANSFORM_COST * m.size, lambda o0, o1: (
            winograd_tiles.output_tiles_any(m, out, t0, o0, o1, bias)),
                 size=-(-o // TRANSFORM_SHARES))


def flipped_weight(xp, weight):
    """(C, O, 3, 3): ``w'[c, o, u, v] = w[o, c, 2 - u, 2 - v]``, the kernel of the input gradient.

    For a stride-1 3x3 convolution with padding p, ``dx[c, i, j] = sum_{o, u, v} g[o, i + p - u,
    j + p - v] w[o, c, u, v]``: the correlation of g (padded by 2 - p) with ``w'``."""
    return xp.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def input_grad_as_forward(xp, in_hw, padding, n):
    """Whether ``backward`` computes ``dx`` as the forward correlation of g with
    ``flipped_weight`` (padding 2 - p, so p <= 2): where that forward takes F(4x4, 3x3). Measured
    at batch 2, 2 threads, dx and dW, F(2x2)'s adjoint -> dW by it plus dx by F(4x4): 64 -> 64
    on 300x300 223 -> 114 ms, 128 on 150x150 128 -> 92, 256 on 75x75 97 -> 80, 512 on 38x38
    92 -> 89."""
    return forward_scheme(xp, in_hw, n) is F4 and max(padding) <= 2


def backward(xp, x, g, weight, padding, need_input, need_weight):
    """``(dx, dW)`` (each None where not needed) from x (N, C, H, W), g = dL/dout (N, O, Ho, Wo)
    and weight (O, C, 3, 3); on the CPU the threads take the groups of images in turn, and the
    groups' ``dU`` are added in order. Where the forward of the input gradient would take
    F(4x4, 3x3) (``input_grad_as_forward``), ``dx`` is computed as that forward instead; ``dW``
    is the adjoint of ``forward_scheme``'s algorithm for g's size (F(2x2, 3x3) when ``dx`` is
    its adjoint too: they share the transforms)."""
    dx = None
    if need_input and input_grad_as_forward(xp, x.shape[2:], padding, x.shape[0]):
        dx = xp.empty(x.shape, dtype=g.dtype)
        correlate(xp, g, flipped_weight(xp, weight), tuple(2 - p for p in padding), dx)
        need_input = False
    if not (need_input or need_weight):
        return dx, None
    # dx by the adjoint: F(2x2)'s kernels; dW alone: the forward's algorithm for g's size
    scheme = F2 if need_input else forward_scheme(xp, g.shape[2:], x.shape[0])
    u = weight_transform(xp, weight) if need_input else None
    if need_input:  # dx by the adjoint: _backward writes it
        dx = xp.empty(x.shape, dtype=g.dtype)
    th, tw = _tiles(g.shape[2:], scheme.m)
    run = sum_over_chunks if need_weight else over_chunks
    du = run(xp, x.shape[0], 2 * _macs(weight, g), lambda chunks: _backward(
        xp, x, g, u, padding, dx if need_input else None, need_weight, chunks, scheme),
        _group_size(th * tw))
    if not need_weight:
        return dx, None
    if du is None:  # an empty batch
        du = xp.zeros((scheme.a, scheme.a, *weight.shape[:2]), dtype=g.dtype)
    return dx, weight_transform_adjoint(xp, du)


def _backward(xp, x, g, u, padding, dx, need_weight, chunks, scheme=F2):
    """The worker of ``backward``: for each chunk, its images of ``dx`` (if wanted: F(2x2, 3x3)
    only) and its share of ``dU`` (a fresh array; None if not wanted)."""
    n, c, h, w = x.shape
    o, (ho, wo) = g.shape[1], g.shape[2:]
    m, a = scheme.m, scheme.a
    th, tw = _tiles((ho, wo), m)
    k = min(n, _group_size(th * tw))
    gpadded = _Padding(xp, (k, o, m * th, m * tw), (0, 0), g.dtype)  # tiles hanging over: 0
    if need_weight:
        xpadded = _Padding(xp, (k, c, m * th + 2, m * tw + 2), padding, x.dtype)
        part = xp.empty((o, c), dtype=g.dtype)
    if dx is not None:
        dxpad, dinner = _padded(xp, (k, c, h, w), padding, (th, tw), g.dtype)
    rows = _band_tile_rows(xp, k, max(c, o), tw, g.dtype.itemsize, a)
    vbuf, mbuf, scratch = _buffers(xp, k, c, o, tw, min(rows, th), m * tw + 2, g.dtype, scheme)
    split = split_one_chunk(xp)
    for lo, hi in chunks:
        du = None
        if need_weight:  # a fresh array per chunk (summed later), a call's only one: scratch
            du = (workspace.scratch(xp, "winograd.dU", (a, a, o, c), g.dtype) if split
                  else xp.empty((a, a, o, c), dtype=g.dtype))
        first = True  # the chunk's first band writes du, the others add to it
        for i0, i1 in _groups(lo, hi, k):
            m_ = i1 - i0
            gsrc = gpadded(g[i0:i1])
            xsrc = xpadded(x[i0:i1]) if need_weight else None
            if dx is not None:
                dxpad.fill(0)
            for t0, t1 in _bands(th, rows):
                cols = m_ * (t1 - t0) * tw
                v = vbuf[: a * a * c * cols].reshape(a, a, c, m_, t1 - t0, tw)
                dm = mbuf[: a * a * o * cols].reshape(a, a, o, m_, t1 - t0, tw)
                if split:
                    _backward_band_split(xp, gsrc, xsrc, t0, u, v, dm, du, first,
                                         dxpad[:m_] if dx is not None else None)
                    first = first and not need_weight
                    continue
                grad_tiles(xp, gsrc, t0, t1, scratch, dm)
                if need_weight:
                    input_tiles(xp, xsrc, t0, t1, tw, scratch, v)
                    for i in range(a):
                        for j in range(a):
                            xp.matmul(dm[i, j].reshape(o, cols), v[i, j].reshape(c, cols).T,
                                      out=du[i, j] if first else part)
                            if not first:
                                du[i, j] += part
                    first = False
                if dx is not None:
                    for i in range(4):
                        for j in range(4):
                            xp.matmul(u[i, j].T, dm[i, j].reshape(o, cols),
                                      out=v[i, j].reshape(c, cols))
                    add_input_tiles(xp, v, dxpad[:m_], t0, scratch)
            if dx is not None:
                dx[i0:i1] = dinner[:m_]
        yield du


def _backward_band_split(xp, gsrc, xsrc, t0, u, v, dm, du, first, dxpad):
    """One band of ``_backward`` for a call's only chunk (``batch_threads.split_one_chunk``),
    spread over the batch threads like ``_band_split``: ``dM`` by shares of the output channels,
    ``V`` (for ``dU``) by shares of the input channels, then per tile position ``dU[xi]`` (added
    to the bands before, in band order) and ``dV[xi]`` (into ``v``: it reads ``v[xi]`` only after
    ``dU[xi]`` has), then ``dd`` back onto ``dxpad`` by shares of the input channels. ``xsrc`` /
    ``du`` are None when no weight gradient is wanted, ``dxpad`` when no input gradient is."""
    from . import winograd_tiles

    c, o = v.shape[2], dm.shape[2]
    cols = v[0, 0].size // c
    a = v.shape[0]

    def tile_gemms(first_xi, last_xi):
        for xi in range(first_xi, last_xi):
            i, j = divmod(xi, a)
            dmij = dm[i, j].reshape(o, cols)
            if du is not None:
                if first:
                    xp.matmul(dmij, v[i, j].reshape(c, cols).T, out=du[i, j])
                else:
                    du[i, j] += xp.matmul(dmij, v[i, j].reshape(c, cols).T)
            if dxpad is not None:
                xp.matmul(u[i, j].T, dmij, out=v[i, j].reshape(c, cols))

    with one_blas_thread(xp):
        over_batch(xp, o, TRANSFORM_COST * dm.size, lambda o0, o1: (
            winograd_tiles.grad_tiles_any(gsrc[0], t0, dm, o0, o1)), size=-(-o // TRANSFORM_SHARES))
        if du is not None:
            over_batch(xp, c, TRANSFORM_COST * v.size, lambda c0, c1: (
                winograd_tiles.input_tiles_any(*xsrc, t0, v, c0, c1)),
                size=-(-c // TRANSFORM_SHARES))
        over_batch(xp, a * a, 2 * o * c * cols, tile_gemms)
        if dxpad is not None:
            over_batch(xp, c, TRANSFORM_COST * v.size, lambda c0, c1: (
                winograd_tiles.add_input_tiles(v, dxpad, t0, c0, c1)),
                size=-(-c // TRANSFORM_SHARES))
