"""Numba CPU kernels for Winograd F(2x2, 3x3)'s tile transforms, forward and backward.

The fast twins of the NumPy transforms in ``winograd.py`` (``input_tiles_reference``,
``output_tiles_reference``, ``grad_tiles_reference``, ``add_input_tiles_reference``), which
make a row pass and then a column pass over whole strided planes, each a few NumPy calls with
a temporary: on a batch-1 SSD300 forward about a third of the time went there, on one core
(measured with cProfile: 196 of ~700 ms). Here each 4x4 tile is read once and its 16 values
written once, and a call can take a share of the channels (``c0, c1``) so that the batch
threads split one image's transforms between them.

**The same bits as the NumPy transforms** (``tests/kernels/test_winograd_tiles.py`` holds them
to it on drawn shapes, float32 and float64): the matrices ``B^T`` and ``A^T`` hold only 0 and
+-1, so every value is a chain of two or three additions, and each chain is written here in
the order ``_combine`` evaluates it, in the array's own precision, without ``fastmath``:

==========  ====================================================================
``B^T d``   ``d0 - d2``, ``d1 + d2``, ``d2 - d1``, ``d1 - d3``  (rows, then columns)
``A^T m``   ``(m0 + m1) + m2``, ``(m1 - m2) - m3``                (first index, then second)
``A dY``    ``y0``, ``y0 + y1``, ``y0 - y1``, ``-y1``             (adjoint of ``A^T``)
``B dV``    each input cell: ``0 + t1 + t2 ...`` in the reference's pass order
==========  ====================================================================

The backward's ``B dV B^T`` adds overlapping tiles onto the padded input gradient: a cell gets
the terms of the tiles that cover it in the order the reference's passes add them (column
offset ``u`` outer, the term inner; then the row offset likewise), so that the sums match too.

Layouts, as in ``winograd.py`` (``rows`` tile rows starting at ``t0``, ``tw`` tile columns)::

    images (n, C, H, W), padding -> v (4, 4, C, n, rows, tw) input_tiles
    m    (4, 4, O, n, rows, tw) -> out (n, O, Ho, Wo)       output_tiles (rows 2 t0 ..; + bias)
    g    (n, O, Ho, Wo)     ->  dm (4, 4, O, n, rows, tw)   grad_tiles
    dv   (4, 4, C, n, rows, tw) -> dxpad (n, C, Hp, Wp) +=  add_input_tiles

The NumPy transforms read a padded copy of the images (``xpad``, ``ph`` rows and ``pw`` columns
of zeros before them, zeros after them as far as the tiles reach; ``gpad``, g with zeros after
it); these kernels read the images themselves (``_row``: a padding row is a row of zeros; a padding
column gets the transform of zeros, computed once): no padded copy is made.

Nothing here compiles at import (``cache=True``: compiled once per dtype, then loaded).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _border_rows(images, img, c, y, d):
    """``d[u]`` = row ``y + u`` of ``images[img, c]``, or zeros where that row is outside the
    image (the padding): for the tile rows at the image's border. The others read the image's
    rows in place (a kernel that chose between a row and a row of zeros for every tile row ran
    1.3-1.6x slower)."""
    for u in range(d.shape[0]):
        if 0 <= y + u < images.shape[2]:
            d[u] = images[img, c, y + u]
        else:
            d[u] = 0


@njit(cache=True, nogil=True, inline="always")
def _bt2(d0, d1, d2, d3):
    """The four rows of ``B^T d`` for F(2x2), in ``_combine``'s order."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(cache=True, nogil=True, inline="always")
def _rows_bt2(d0, d1, d2, d3, r, lo, hi, zs):
    """The row pass of one tile row: ``r[:, lo + j]`` = ``B^T`` of the image rows' column ``j``,
    the padding's columns ``zs``."""
    for col in range(lo):
        r[0, col], r[1, col], r[2, col], r[3, col] = zs
    r0, r1, r2, r3 = r[0, lo:hi], r[1, lo:hi], r[2, lo:hi], r[3, lo:hi]
    for j in range(hi - lo):
        r0[j], r1[j], r2[j], r3[j] = _bt2(d0[j], d1[j], d2[j], d3[j])
    for col in range(max(lo, hi), r.shape[1]):
        r[0, col], r[1, col], r[2, col], r[3, col] = zs


@njit(cache=True, nogil=True, inline="always")
def _a2(y0, y1):
    """The four rows of ``A y`` (the adjoint of ``A^T``) for F(2x2)."""
    return y0 * 1, y0 + y1, y0 - y1, -y1


@njit(cache=True, nogil=True)
def input_tiles(images, ph, pw, t0, v, c0, c1):
    """``V = B^T d B`` for channels [c0, c1): ``v[i, j, c, k, t, x]`` from the 4x4 block of
    ``xpad[k, c]`` at rows ``2 (t0 + t) ..``, columns ``2 x ..``, where ``xpad`` is ``images``
    (C-contiguous) with ``ph`` rows and ``pw`` columns of zeros before them and zeros after them
    as far as the tiles reach. No ``xpad`` is made: the row pass reads the image rows (``_row``)
    and gives the padding's columns ``B^T`` of zeros."""
    n, h, w = images.shape[0], images.shape[2], images.shape[3]
    rows, tw = v.shape[4], v.shape[5]
    width = 2 * tw + 2
    lo, hi = min(pw, width), min(width, pw + w)  # xpad's columns that hold the image
    d = np.empty((4, w), dtype=images.dtype)  # a border tile row's rows, zeros outside
    z = np.zeros(1, dtype=images.dtype)[0]
    zs = _bt2(z, z, z, z)  # a padding column's B^T d
    r = np.empty((4, width), dtype=images.dtype)  # (B^T d)[i, column] of one tile row
    for c in range(c0, c1):
        for k in range(n):
            for t in range(rows):
                y = 2 * (t0 + t) - ph
                if 0 <= y and y + 3 < h:
                    _rows_bt2(images[k, c, y], images[k, c, y + 1], images[k, c, y + 2],
                              images[k, c, y + 3], r, lo, hi, zs)
                else:
                    _border_rows(images, k, c, y, d)
                    _rows_bt2(d[0], d[1], d[2], d[3], r, lo, hi, zs)
                for i in range(4):  # columns
                    ri = r[i]
                    for x in range(tw):
                        p = 2 * x
                        v[i, 0, c, k, t, x], v[i, 1, c, k, t, x], v[i, 2, c, k, t, x], \
                            v[i, 3, c, k, t, x] = _bt2(ri[p], ri[p + 1], ri[p + 2], ri[p + 3])


@njit(cache=True, nogil=True, inline="always")
def _add_bias(row, b):
    """``row += b``, on an output row just written (still in cache): the bits of adding the bias
    to the whole output afterwards (``out += bias[:, None, None]``), one rounding per value."""
    for x in range(row.shape[0]):
        row[x] += b


@njit(cache=True, nogil=True)
def output_tiles(m, out, t0, o0, o1, bias=None):
    """``A^T M A`` for output channels [o0, o1): each tile of ``m`` into the 2x2 block of
    ``out[k, o]`` at rows ``2 (t0 + t) ..``, columns ``2 x ..``, cropped to ``out``; plus
    ``bias[o]`` (``_add_bias``) when there is one."""
    n, rows, tw = m.shape[3], m.shape[4], m.shape[5]
    ho, wo = out.shape[2], out.shape[3]
    r = np.empty((2, 4, tw), dtype=m.dtype)  # (A^T m)[a, j] of one tile row
    for o in range(o0, o1):
        for k in range(n):
            for t in range(rows):
                y = 2 * (t0 + t)
                for j in range(4):  # first index
                    m0, m1, m2, m3 = m[0, j, o, k, t], m[1, j, o, k, t], m[2, j, o, k, t], \
                        m[3, j, o, k, t]
                    for x in range(tw):
                        r[0, j, x] = (m0[x] + m1[x]) + m2[x]
                        r[1, j, x] = (m1[x] - m2[x]) - m3[x]
                for a in range(min(2, ho - y)):  # second index, the last row cropped
                    ra, row = r[a], out[k, o, y + a]
                    for x in range(wo // 2):
                        row[2 * x] = (ra[0, x] + ra[1, x]) + ra[2, x]
                        row[2 * x + 1] = (ra[1, x] - ra[2, x]) - ra[3, x]
                    if wo % 2:  # the last column alone
                        x = wo // 2
                        row[2 * x] = (ra[0, x] + ra[1, x]) + ra[2, x]
                    if bias is not None:
                        _add_bias(row, bias[o])


@njit(cache=True, nogil=True, inline="always")
def _rows_a2(g0, g1, q, hi, zs):
    """The row pass of one tile row: ``q[:, col]`` = ``A`` of g's column ``col``, then ``zs``
    for the columns beyond g's."""
    for col in range(hi):
        q[0, col], q[1, col], q[2, col], q[3, col] = _a2(g0[col], g1[col])
    for col in range(hi, q.shape[1]):
        q[0, col], q[1, col], q[2, col], q[3, col] = zs


@njit(cache=True, nogil=True)
def grad_tiles(g, t0, dm, o0, o1):
    """``dM = A dY A^T`` for output channels [o0, o1): ``dm[i, j, o, k, t, x]`` from the 2x2
    block of ``gpad[k, o]`` at rows ``2 (t0 + t) ..``, columns ``2 x ..``, where ``gpad`` is
    ``g`` (C-contiguous) with zeros after it as far as the tiles reach, read as
    ``input_tiles`` reads its padding."""
    n, ho, wo = g.shape[0], g.shape[2], g.shape[3]
    rows, tw = dm.shape[4], dm.shape[5]
    width = 2 * tw
    hi = min(width, wo)
    d = np.empty((2, wo), dtype=g.dtype)  # a border tile row's rows, zeros outside
    z = np.zeros(1, dtype=g.dtype)[0]
    zs = _a2(z, z)  # a column beyond g's: A of zeros
    q = np.empty((4, width), dtype=g.dtype)  # (A dY)[i, column] of one tile row
    for o in range(o0, o1):
        for k in range(n):
            for t in range(rows):
                y = 2 * (t0 + t)
                if y + 1 < ho:
                    _rows_a2(g[k, o, y], g[k, o, y + 1], q, hi, zs)
                else:
                    _border_rows(g, k, o, y, d)
                    _rows_a2(d[0], d[1], q, hi, zs)
                for i in range(4):  # columns
                    qi = q[i]
                    for x in range(tw):
                        dm[i, 0, o, k, t, x], dm[i, 1, o, k, t, x], dm[i, 2, o, k, t, x], \
                            dm[i, 3, o, k, t, x] = _a2(qi[2 * x], qi[2 * x + 1])


@njit(cache=True, nogil=True)
def add_input_tiles(dv, dxpad, t0, c0, c1):
    """``dd = B dV B^T`` for channels [c0, c1), added onto ``dxpad`` where the tiles overlap:
    each cell gets its terms in the order of ``add_input_tiles_reference``'s passes."""
    n, rows, tw = dv.shape[3], dv.shape[4], dv.shape[5]
    width = 2 * tw + 2
    # (dV B^T) of the tile row being added and of the one before it, laid onto the columns
    r = np.zeros((2, 4, width), dtype=dv.dtype)
    for c in range(c0, c1):
        for k in range(n):
            for t in range(rows):
                cur, prev = r[t % 2], r[(t + 1) % 2]
                cur[:] = 0
                # columns: the reference's passes over the column offset u (B's rows: u=0: +v0;
                # u=1: +v1 -v2 +v3; u=2: -v0 +v1 +v2; u=3: -v3), each over all tiles x, so a
                # column shared by tiles x and x + 1 gets x + 1's u=0 (u=1) terms first
                for i in range(4):
                    for x in range(tw):
                        cur[i, 2 * x] += dv[i, 0, c, k, t, x]
                    for x in range(tw):
                        cur[i, 2 * x + 1] += dv[i, 1, c, k, t, x]
                        cur[i, 2 * x + 1] -= dv[i, 2, c, k, t, x]
                        cur[i, 2 * x + 1] += dv[i, 3, c, k, t, x]
                    for x in range(tw):
                        cur[i, 2 * x + 2] -= dv[i, 0, c, k, t, x]
                        cur[i, 2 * x + 2] += dv[i, 1, c, k, t, x]
                        cur[i, 2 * x + 2] += dv[i, 2, c, k, t, x]
                    for x in range(tw):
                        cur[i, 2 * x + 3] -= dv[i, 3, c, k, t, x]
                # rows, likewise: row y gets this tile row's u=0 terms, then the previous tile
                # row's u=2 terms; row y + 1 this one's u=1, then the previous one's u=3
                y = 2 * (t0 + t)
                for col in range(width):
                    dxpad[k, c, y, col] += cur[0, col]
                    if t > 0:
                        dxpad[k, c, y, col] -= prev[0, col]
                        dxpad[k, c, y, col] += prev[1, col]
                        dxpad[k, c, y, col] += prev[2, col]
                    dxpad[k, c, y + 1, col] += cur[1, col]
                    dxpad[k, c, y + 1, col] -= cur[2, col]
                    dxpad[k, c, y + 1, col] += cur[3, col]
                    if t > 0:
                        dxpad[k, c, y + 1, col] -= prev[3, col]
            # the band's last tile row: its u=2 and u=3 terms (the next band adds after them)
            last = r[(rows - 1) % 2]
            y = 2 * (t0 + rows)
            for col in range(width):
                dxpad[k, c, y, col] -= last[0, col]
                dxpad[k, c, y, col] += last[1, col]
                dxpad[k, c, y, col] += last[2, col]
                dxpad[k, c, y + 1, col] -= last[3, col]


# ------------------------------------------------ F(4x4, 3x3): forward and weight gradient
# The same rule: each value is the chain ``_combine`` evaluates for its row of B^T, A^T or A,
# term by term from the left; a coefficient other than +-1 multiplies its term first
# (``d2 * -5``), in the array's precision: the constants come in as an array of its dtype. Each
# matrix's rows are written once (``_bt4``, ``_at4``, ``_a4``) and serve both passes.


@njit(cache=True, nogil=True, inline="always")
def _bt4(d0, d1, d2, d3, d4, d5, k4, km5, km4, k2, km2):
    """The six rows of ``B^T d`` for F(4x4), in ``_combine``'s order; the constants 4, -5, -4,
    2, -2 in the data's dtype (scalars: an array would be reloaded after every store)."""
    return (((d0 * k4) + d2 * km5) + d4,
            (((d1 * km4) + d2 * km4) + d3) + d4,
            (((d1 * k4) + d2 * km4) - d3) + d4,
            (((d1 * km2) - d2) + d3 * k2) + d4,
            (((d1 * k2) - d2) + d3 * km2) + d4,
            ((d1 * k4) + d3 * km5) + d5)


@njit(cache=True, nogil=True, inline="always")
def _at4(m0, m1, m2, m3, m4, m5, k2, km2, k4, k8, km8):
    """The four rows of ``A^T m`` for F(4x4); the constants 2, -2, 4, 8, -8 in the data's
    dtype."""
    return ((((m0 + m1) + m2) + m3) + m4,
            ((m1 - m2) + m3 * k2) + m4 * km2,
            ((m1 + m2) + m3 * k4) + m4 * k4,
            (((m1 - m2) + m3 * k8) + m4 * km8) + m5)


@njit(cache=True, nogil=True, inline="always")
def _a4(y0, y1, y2, y3, k1, k2, k4, k8, km2, km8):
    """The six rows of ``A y`` (the adjoint of ``A^T``) for F(4x4); the constants 1, 2, 4, 8,
    -2, -8 in the data's dtype."""
    return (y0 * k1,
            ((y0 + y1) + y2) + y3,
            ((y0 - y1) + y2) - y3,
            (((y0 * k1) + y1 * k2) + y2 * k4) + y3 * k8,
            (((y0 * k1) + y1 * km2) + y2 * k4) + y3 * km8,
            y3 * k1)


@njit(cache=True, nogil=True, inline="always")
def _rows_bt4(d0, d1, d2, d3, d4, d5, r, lo, hi, zs, k):
    """F(4x4)'s row pass of one tile row: ``r[:, lo + j]`` = ``B^T`` of the image rows' column
    ``j``, the padding's columns ``zs``."""
    k4, km5, km4, k2, km2 = k[0], k[1], k[2], k[3], k[4]
    for col in range(lo):
        r[0, col], r[1, col], r[2, col], r[3, col], r[4, col], r[5, col] = zs
    r0, r1, r2, r3, r4, r5 = (r[0, lo:hi], r[1, lo:hi], r[2, lo:hi], r[3, lo:hi], r[4, lo:hi],
                              r[5, lo:hi])
    for j in range(hi - lo):
        r0[j], r1[j], r2[j], r3[j], r4[j], r5[j] = _bt4(
            d0[j], d1[j], d2[j], d3[j], d4[j], d5[j], k4, km5, km4, k2, km2)
    for col in range(max(lo, hi), r.shape[1]):
        r[0, col], r[1, col], r[2, col], r[3, col], r[4, col], r[5, col] = zs


@njit(cache=True, nogil=True)
def input_tiles_f4(images, ph, pw, t0, v, c0, c1, k):
    """F(4x4)'s ``V = B^T d B`` for channels [c0, c1): ``v[i, j, c, n, t, x]`` from the 6x6
    block of ``xpad[n, c]`` at rows ``4 (t0 + t) ..``, columns ``4 x ..`` (``xpad``: ``images``
    padded with zeros, read as ``input_tiles`` reads it; ``k``: ``_bt4``'s constants)."""
    n, h, w = images.shape[0], images.shape[2], images.shape[3]
    rows, tw = v.shape[4], v.shape[5]
    width = 4 * tw + 2
    lo, hi = min(pw, width), min(width, pw + w)  # the columns that hold the image
    k4, km5, km4, k2, km2 = k[0], k[1], k[2], k[3], k[4]
    d = np.empty((6, w), dtype=images.dtype)  # a border tile row's rows, zeros outside
    z = np.zeros(1, dtype=images.dtype)[0]
    zs = _bt4(z, z, z, z, z, z, k4, km5, km4, k2, km2)  # a padding column's B^T d
    r = np.empty((6, width), dtype=images.dtype)  # (B^T d)[i, column] of one tile row
    for c in range(c0, c1):
        for img in range(n):
            for t in range(rows):
                y = 4 * (t0 + t) - ph
                if 0 <= y and y + 5 < h:
                    _rows_bt4(images[img, c, y], images[img, c, y + 1], images[img, c, y + 2],
                              images[img, c, y + 3], images[img, c, y + 4],
                              images[img, c, y + 5], r, lo, hi, zs, k)
                else:
                    _border_rows(images, img, c, y, d)
                    _rows_bt4(d[0], d[1], d[2], d[3], d[4], d[5], r, lo, hi, zs, k)
                for i in range(6):  # columns
                    ri = r[i]
                    v0, v1, v2 = v[i, 0, c, img, t], v[i, 1, c, img, t], v[i, 2, c, img, t]
                    v3, v4, v5 = v[i, 3, c, img, t], v[i, 4, c, img, t], v[i, 5, c, img, t]
                    for x in range(tw):
                        p = 4 * x
                        v0[x], v1[x], v2[x], v3[x], v4[x], v5[x] = _bt4(
                            ri[p], ri[p + 1], ri[p + 2], ri[p + 3], ri[p + 4], ri[p + 5],
                            k4, km5, km4, k2, km2)


@njit(cache=True, nogil=True)
def output_tiles_f4(m, out, t0, o0, o1, k, bias=None):
    """F(4x4)'s ``A^T M A`` for output channels [o0, o1): each tile of ``m`` into the 4x4 block
    of ``out[n, o]`` at rows ``4 (t0 + t) ..``, columns ``4 x ..``, cropped to ``out`` (``k``:
    ``_at4``'s constants); plus ``bias[o]`` (``_add_bias``) when there is one."""
    n, rows, tw = m.shape[3], m.shape[4], m.shape[5]
    ho, wo = out.shape[2], out.shape[3]
    k2, km2, k4, k8, km8 = k[0], k[1], k[2], k[3], k[4]
    r = np.empty((4, 6, tw), dtype=m.dtype)  # (A^T m)[a, j] of one tile row
    for o in range(o0, o1):
        for img in range(n):
            for t in range(rows):
                y = 4 * (t0 + t)
                for j in range(6):  # first index
                    m0, m1, m2 = m[0, j, o, img, t], m[1, j, o, img, t], m[2, j, o, img, t]
                    m3, m4, m5 = m[3, j, o, img, t], m[4, j, o, img, t], m[5, j, o, img, t]
                    for x in range(tw):
                        r[0, j, x], r[1, j, x], r[2, j, x], r[3, j, x] = _at4(
                            m0[x], m1[x], m2[x], m3[x], m4[x], m5[x], k2, km2, k4, k8, km8)
                for a in range(min(4, ho - y)):  # second index, the last rows cropped
                    ra, row = r[a], out[img, o, y + a]
                    full = min(tw, wo // 4)  # tiles whose 4 columns all fit
                    for x in range(full):
                        row[4 * x], row[4 * x + 1], row[4 * x + 2], row[4 * x + 3] = _at4(
                            ra[0, x], ra[1, x], ra[2, x], ra[3, x], ra[4, x], ra[5, x],
                            k2, km2, k4, k8, km8)
                    if full < tw:  # the last tile, cropped to the columns that remain
                        last = _at4(ra[0, full], ra[1, full], ra[2, full], ra[3, full],
                                    ra[4, full], ra[5, full], k2, km2, k4, k8, km8)
                        for b in range(wo - 4 * full):
                            row[4 * full + b] = last[b]
                    if bias is not None:
                        _add_bias(row, bias[o])


@njit(cache=True, nogil=True, inline="always")
def _rows_a4(g0, g1, g2, g3, q, hi, zs, k):
    """F(4x4)'s row pass of one tile row: ``q[:, col]`` = ``A`` of g's column ``col``, then
    ``zs`` for the columns beyond g's."""
    k1, k2, k4, k8, km2, km8 = k[0], k[1], k[2], k[3], k[4], k[5]
    for col in range(hi):
        q[0, col], q[1, col], q[2, col], q[3, col], q[4, col], q[5, col] = _a4(
            g0[col], g1[col], g2[col], g3[col], k1, k2, k4, k8, km2, km8)
    for col in range(hi, q.shape[1]):
        q[0, col], q[1, col], q[2, col], q[3, col], q[4, col], q[5, col] = zs


@njit(cache=True, nogil=True)
def grad_tiles_f4(g, t0, dm, o0, o1, k):
    """F(4x4)'s ``dM = A dY A^T`` for output channels [o0, o1): ``dm[i, j, o, n, t, x]`` from the
    4x4 block of ``gpad[n, o]`` at rows ``4 (t0 + t) ..``, columns ``4 x ..`` (``gpad``: ``g``
    zero-extended, read as ``grad_tiles`` reads it; ``k``: ``_a4``'s constants)."""
    n, ho, wo = g.shape[0], g.shape[2], g.shape[3]
    rows, tw = dm.shape[4], dm.shape[5]
    width = 4 * tw
    hi = min(width, wo)
    k1, k2, k4, k8, km2, km8 = k[0], k[1], k[2], k[3], k[4], k[5]
    d = np.empty((4, wo), dtype=g.dtype)  # a border tile row's rows, zeros outside
    z = np.zeros(1, dtype=g.dtype)[0]
    zs = _a4(z, z, z, z, k1, k2, k4, k8, km2, km8)  # a column beyond g's: A of zeros
    q = np.empty((6, width), dtype=g.dtype)  # (A dY)[i, column] of one tile row
    for o in range(o0, o1):
        for img in range(n):
            for t in range(rows):
                y = 4 * (t0 + t)
                if y + 3 < ho:
                    _rows_a4(g[img, o, y], g[img, o, y + 1], g[img, o, y + 2],
                             g[img, o, y + 3], q, hi, zs, k)
                else:
                    _border_rows(g, img, o, y, d)
                    _rows_a4(d[0], d[1], d[2], d[3], q, hi, zs, k)
                for i in range(6):  # columns
                    qi = q[i]
                    d0, d1, d2 = dm[i, 0, o, img, t], dm[i, 1, o, img, t], dm[i, 2, o, img, t]
                    d3, d4, d5 = dm[i, 3, o, img, t], dm[i, 4, o, img, t], dm[i, 5, o, img, t]
                    for x in range(tw):
                        p = 4 * x
                        d0[x], d1[x], d2[x], d3[x], d4[x], d5[x] = _a4(
                            qi[p], qi[p + 1], qi[p + 2], qi[p + 3], k1, k2, k4, k8, km2, km8)


_F4_INPUT = (4, -5, -4, 2, -2)
_F4_OUTPUT = (2, -2, 4, 8, -8)
_F4_GRAD = (1, 2, 4, 8, -2, -8)


def input_tiles_any(images, padding, t0, v, c0, c1):
    """``input_tiles`` (F(2x2): ``v`` (4, 4, ...)) or ``input_tiles_f4`` (``v`` (6, 6, ...)) of
    ``images`` zero-padded by ``padding = (ph, pw)``."""
    ph, pw = padding
    if v.shape[0] == 4:
        input_tiles(images, ph, pw, t0, v, c0, c1)
    else:
        input_tiles_f4(images, ph, pw, t0, v, c0, c1, np.array(_F4_INPUT, dtype=v.dtype))


def output_tiles_any(m, out, t0, o0, o1, bias=None):
    """``output_tiles`` (F(2x2): ``m`` (4, 4, ...)) or ``output_tiles_f4`` (``m`` (6, 6, ...)),
    plus ``bias`` (O,) (the dtype of ``m``) when given."""
    if m.shape[0] == 4:
        output_tiles(m, out, t0, o0, o1, bias)
    else:
        output_tiles_f4(m, out, t0, o0, o1, np.array(_F4_OUTPUT, dtype=m.dtype), bias)


def grad_tiles_any(g, t0, dm, o0, o1):
    """``grad_tiles`` (F(2x2): ``dm`` (4, 4, ...)) or ``grad_tiles_f4`` (``dm`` (6, 6, ...))."""
    if dm.shape[0] == 4:
        grad_tiles(g, t0, dm, o0, o1)
    else:
        grad_tiles_f4(g, t0, dm, o0, o1, np.array(_F4_GRAD, dtype=dm.dtype))
