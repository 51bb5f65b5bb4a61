"""Numba kernel for 1-D and 2-D cross-correlation (see ``kernels.reference.correlate``).

One kernel serves both: a 1-D correlation is a 2-D one with a single row, and every
mode is a window ``(row0, col0)`` of the full correlation, so the kernel takes the
window's origin and fills an output of the window's shape.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._jit import parallel_and_serial

# Output columns per parallel tile: a 512-wide image row is one tile; a long 1-D signal
# splits into many, so both cores have work in 1-D too.
TILE = 4096
# Row blocks per column tile: prange splits them evenly over 2, 4, 8 or 16 threads, and
# each block copies only m2 - 1 input rows more than it needs (its ring's first fill).
ROW_BLOCKS = 16
# Below this many multiply-adds the serial build runs: at ~0.3 ms of work the fork-join
# costs a third of the time, and on a busy machine a descheduled worker turns the join
# into a ~20 ms wait (measured: 512x512 with 3x3, 0.17 ms parallel when idle, 20 ms at
# load 5; serial 0.3-0.4 ms in both).
PARALLEL_MIN_WORK = 1 << 22


@njit(cache=True)
def _fill(row, a, i, start):
    """``row[:] = a[i, start : start + len(row)]``, zero outside ``a``."""
    m1, n1 = a.shape
    if i < 0 or i >= m1:
        row[:] = 0
        return
    k0 = min(max(0, -start), row.shape[0])
    k1 = max(min(row.shape[0], n1 - start), k0)
    row[:k0] = 0
    row[k1:] = 0
    src = a[i, start + k0:start + k1]
    dst = row[k0:k1]
    for k in range(k1 - k0):
        dst[k] = src[k]


@njit(cache=True)
def _row(o, ring, i0, m1, v):
    """``o[j] = sum_{p,q} v[p, q] * ring[(i0 + p) % m2][j + q]`` over rows inside ``a``."""
    n = o.shape[0]
    m2, n2 = v.shape
    for j in range(n):
        o[j] = 0  # an integer literal stores as the array dtype, no promotion
    for p in range(m2):
        i = i0 + p
        if i < 0 or i >= m1:
            continue  # a zero row of the ring: nothing to add
        x = ring[i % m2]
        q = 0
        while q + 3 <= n2:
            x0, x1, x2 = x[q:q + n], x[q + 1:q + 1 + n], x[q + 2:q + 2 + n]
            w0, w1, w2 = v[p, q], v[p, q + 1], v[p, q + 2]
            for j in range(n):
                o[j] = o[j] + w0 * x0[j] + w1 * x1[j] + w2 * x2[j]
            q += 3
        while q < n2:
            x0 = x[q:q + n]
            w0 = v[p, q]
            for j in range(n):
                o[j] = o[j] + w0 * x0[j]
            q += 1


@njit(cache=True)
def _task(a, v, row0, col0, out, t, tiles, rows_per):
    """Task ``t`` of the kernel below: one block of ``rows_per`` output rows of one tile."""
    m1, n1 = a.shape
    m2, n2 = v.shape
    h, w = out.shape
    d0 = col0 - (n2 - 1)  # out column j reads a[i, j + d0 + q]
    c0 = (t % tiles) * TILE
    c1 = min(w, c0 + TILE)
    ra = (t // tiles) * rows_per
    rb = min(h, ra + rows_per)
    ring = np.empty((m2, c1 - c0 + n2 - 1), a.dtype)
    for r in range(ra, rb):
        i0 = r + row0 - (m2 - 1)
        for i in range(i0 if r == ra else i0 + m2 - 1, i0 + m2):
            _fill(ring[i % m2], a, i, c0 + d0)
        _row(out[r, c0:c1], ring, i0, m1, v)


def _correlate2d_window(a, v, row0, col0, out):
    """``out[r, c] = z[r + row0, c + col0]``, ``z`` the full correlation of ``a`` with ``v``.

    ``z[k, l] = sum_{p,q} a[k - (m2-1) + p, l - (n2-1) + q] * v[p, q]``, ``a`` zero outside.

    Loop nest (``out`` is ``H x W``; a task is a block of rows of one column tile
    ``c0:c1`` of ``TILE`` columns; ``d0 = col0 - (n2-1)``)::

        for task (rows ra:rb, columns c0:c1) in prange(...):     # disjoint outputs
            ring = m2 rows of n + n2 - 1                          # n = c1 - c0
            for r in range(ra, rb):
                i0 = r + row0 - (m2-1)
                copy the input rows i0 .. i0+m2-1 not yet in the ring, as
                    ring[i % m2] = a[i, c0+d0 : c1+d0+n2-1], zero outside a
                out[r, c0:c1] = sum over p, q of v[p, q] * ring[(i0+p) % m2][q : q+n]

    Optimizations:
      * each task owns whole output rows of its tile, so there is no race and no reduction;
      * the zero padding lives only in the ring: each input row is copied once per
        task, with the zeros that ``full`` and ``same`` read around it, so the loops
        over output columns have no bounds to check and no edge cases (and a strided
        input is read through a contiguous copy);
      * innermost loops over contiguous output columns, which LLVM vectorizes (a dot
        product per output pixel would not be, without fastmath reassociation), each
        pass adding 3 taps of a kernel row (the last one or two, one tap a pass): one
        load and store of the output row per 3 multiply-adds instead of per one;
      * slices are taken before the inner loops, which then run from 0: LLVM vectorizes
        them and Numba's negative-index wraparound goes away (9x over ``orow[j + d]``);
      * the loops live in small helpers (``_fill``, ``_row``, ``_task``), and the
        kernel is a ``prange`` over tasks: Numba links (and re-optimizes) a helper's
        code into each caller, so this keeps both builds' compile time in check.
        Tried: a 3x3 pass of all 9 taps (0.24 against 0.30 ms on 512x512 float64,
        serial), and 4-tap passes with 3-, 2- and 1-tap remainders; each made the cold
        compile about 1.5x longer again, for no gain on 15x15.

    Every output adds its terms in ``(p, q)`` order and accumulates in the input dtype
    (float32 stays float32, as scipy's output does): sums of ``m2 * n2`` products, whose
    rounding the tests bound against a float64 scipy result. Serial and parallel builds
    add in the same order, so they agree bit for bit.
    """
    h, w = out.shape
    tiles = (w + TILE - 1) // TILE
    blocks = min(h, ROW_BLOCKS)
    rows_per = (h + blocks - 1) // blocks
    for t in prange(blocks * tiles):
        _task(a, v, row0, col0, out, t, tiles, rows_per)


correlate2d_window, correlate2d_window_serial = parallel_and_serial(_correlate2d_window,
                                                                    fastmath=False)
