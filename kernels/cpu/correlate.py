"""Numba kernel for 1-D and 2-D cross-correlation (see ``kernels.reference.correlate``).

One kernel serves both: a 1-D correlation is a 2-D one with a single row, and every
mode is a window ``(row0, col0)`` of the full correlation, so the kernel takes the
window's origin and fills an output of the window's shape.
"""

from __future__ import annotations

from numba import prange

from ._jit import parallel_and_serial

# Output columns per parallel tile: a 512-wide image row is one tile; a long 1-D signal
# splits into many, so both cores have work in 1-D too.
TILE = 4096
# Below this many multiply-adds the serial build runs: at ~0.3 ms of work the fork-join
# costs a third of the time, and on a busy machine a descheduled worker turns the join
# into a ~20 ms wait (measured: 512x512 with 3x3, 0.17 ms parallel when idle, 20 ms at
# load 5; serial 0.3-0.4 ms in both).
PARALLEL_MIN_WORK = 1 << 22


def _correlate2d_window(a, v, row0, col0, out):
    """``out[r, c] = z[r + row0, c + col0]``, ``z`` the full correlation of ``a`` with ``v``.

    ``z[k, l] = sum_{p,q} a[k - (m2-1) + p, l - (n2-1) + q] * v[p, q]``, ``a`` zero outside.

    Loop nest (``out`` is ``H x W``; tiles are ``TILE`` output columns of one row)::

        for tile (r, c0:c1) in prange(H * ceil(W / TILE)):       # disjoint outputs
            out[r, c0:c1] = 0
            for p in range(m2):                                  # kernel rows
                i = r + row0 - (m2-1) + p;  skip unless 0 <= i < m1
                for q in range(n2):                              # kernel columns
                    d = col0 - (n2-1) + q                        # out column j reads a[i, j+d]
                    for j in range(max(c0, -d), min(c1, n1 - d)):
                        out[r, j] += v[p, q] * a[i, j + d]       # contiguous axpy

    Optimizations:
      * each thread owns whole output tiles, so there is no race and no reduction;
      * innermost loop over contiguous output columns: for each kernel element an
        ``axpy`` of a row of ``a`` into the output row, which LLVM vectorizes (a dot
        product per output pixel would not be, without fastmath reassociation);
      * the zero padding is never materialised: the in-bounds column range of each
        ``(r, p, q)`` is computed once, so the inner loop has no branch;
      * slices are taken before the inner loop, which then runs from 0: LLVM vectorizes
        it and Numba's negative-index wraparound goes away (9x over ``orow[j + d]``);
      * the output row tile stays in L1 across all ``m2 * n2`` kernel elements;
      * Tried and dropped: fusing 3-4 taps per pass (one load/store of the output row per
        3-4 multiply-adds) measured no faster, at ~15 GMAC/s per core either way.

    Every output adds its terms in ``(p, q)`` order and accumulates in the input dtype
    (float32 stays float32, as scipy's output does): sums of ``m2 * n2`` products, whose
    rounding the tests bound against a float64 scipy result.
    """
    m1, n1 = a.shape
    m2, n2 = v.shape
    h, w = out.shape
    tiles = (w + TILE - 1) // TILE
    for t in prange(h * tiles):
        r = t // tiles
        c0 = (t % tiles) * TILE
        c1 = min(w, c0 + TILE)
        orow = out[r]
        for j in range(c0, c1):
            orow[j] = 0  # an integer literal stores as the array dtype, no promotion
        for p in range(m2):
            i = r + row0 - (m2 - 1) + p
            if i < 0 or i >= m1:
                continue
            arow = a[i]
            for q in range(n2):
                d = col0 - (n2 - 1) + q
                j0 = max(c0, -d)
                j1 = min(c1, n1 - d)
                if j1 <= j0:
                    continue
                os = orow[j0:j1]
                xs = arow[j0 + d: j1 + d]
                wpq = v[p, q]
                for j in range(j1 - j0):
                    os[j] += wpq * xs[j]


correlate2d_window, correlate2d_window_serial = parallel_and_serial(_correlate2d_window,
                                                                    fastmath=False)
