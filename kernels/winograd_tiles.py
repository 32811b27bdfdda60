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

    xpad (n, C, Hp, Wp)   ->  v  (4, 4, C, n, rows, tw)     input_tiles
    m    (4, 4, O, n, rows, tw) -> out (n, O, Ho, Wo)       output_tiles (rows 2 t0 ..)
    gpad (n, O, 2 th, 2 tw) ->  dm (4, 4, O, n, rows, tw)   grad_tiles
    dv   (4, 4, C, n, rows, tw) -> dxpad (n, C, Hp, Wp) +=  add_input_tiles

Nothing here compiles at import (``cache=True``: compiled once per dtype, then loaded).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def input_tiles(xpad, t0, v, c0, c1):
    """``V = B^T d B`` for channels [c0, c1): ``v[i, j, c, k, t, x]`` from the 4x4 block of
    ``xpad[k, c]`` at rows ``2 (t0 + t) ..``, columns ``2 x ..``."""
    n, rows, tw = v.shape[3], v.shape[4], v.shape[5]
    width = 2 * tw + 2
    r = np.empty((4, width), dtype=xpad.dtype)  # (B^T d)[i, column] of one tile row
    for c in range(c0, c1):
        for k in range(n):
            for t in range(rows):
                y = 2 * (t0 + t)
                d0, d1, d2, d3 = xpad[k, c, y], xpad[k, c, y + 1], xpad[k, c, y + 2], \
                    xpad[k, c, y + 3]
                for col in range(width):  # rows
                    r[0, col] = d0[col] - d2[col]
                    r[1, col] = d1[col] + d2[col]
                    r[2, col] = d2[col] - d1[col]
                    r[3, col] = d1[col] - d3[col]
                for i in range(4):  # columns
                    ri = r[i]
                    for x in range(tw):
                        v[i, 0, c, k, t, x] = ri[2 * x] - ri[2 * x + 2]
                        v[i, 1, c, k, t, x] = ri[2 * x + 1] + ri[2 * x + 2]
                        v[i, 2, c, k, t, x] = ri[2 * x + 2] - ri[2 * x + 1]
                        v[i, 3, c, k, t, x] = ri[2 * x + 1] - ri[2 * x + 3]


@njit(cache=True, nogil=True)
def output_tiles(m, out, t0, o0, o1):
    """``A^T M A`` for output channels [o0, o1): each tile of ``m`` into the 2x2 block of
    ``out[k, o]`` at rows ``2 (t0 + t) ..``, columns ``2 x ..``, cropped to ``out``."""
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


@njit(cache=True, nogil=True)
def grad_tiles(gpad, t0, dm, o0, o1):
    """``dM = A dY A^T`` for output channels [o0, o1): ``dm[i, j, o, k, t, x]`` from the 2x2
    block of ``gpad[k, o]`` at rows ``2 (t0 + t) ..``, columns ``2 x ..``."""
    n, rows, tw = dm.shape[3], dm.shape[4], dm.shape[5]
    q = np.empty((4, 2 * tw), dtype=gpad.dtype)  # (A dY)[i, column] of one tile row
    for o in range(o0, o1):
        for k in range(n):
            for t in range(rows):
                y = 2 * (t0 + t)
                g0, g1 = gpad[k, o, y], gpad[k, o, y + 1]
                for col in range(2 * tw):  # rows
                    q[0, col] = g0[col] * 1
                    q[1, col] = g0[col] + g1[col]
                    q[2, col] = g0[col] - g1[col]
                    q[3, col] = -g1[col]
                for i in range(4):  # columns
                    qi = q[i]
                    for x in range(tw):
                        dm[i, 0, o, k, t, x] = qi[2 * x] * 1
                        dm[i, 1, o, k, t, x] = qi[2 * x] + qi[2 * x + 1]
                        dm[i, 2, o, k, t, x] = qi[2 * x] - qi[2 * x + 1]
                        dm[i, 3, o, k, t, x] = -qi[2 * x + 1]


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
