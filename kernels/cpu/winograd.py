"""3x3 convolution by Winograd's minimal filtering, F(2x2, 3x3) (Lavin and Gray,
"Fast Algorithms for Convolutional Neural Networks", 2015): 2.25x fewer multiply-adds
than the direct sum at stride 1; at stride 2, 1.44x fewer in the forward
(:func:`_input_chunk2`) and the input gradient (:func:`input_grad2`), by F(2, 2) on the
even inputs and the odd ones direct, along each axis.

Each 2x2 block of outputs (a *tile*) reads a 4x4 patch ``d`` of the padded input, and

    y_tile = A^T [ sum_c (G w[k, c] G^T) * (B^T d[c] B) ] A

with ``*`` elementwise over the 16 positions ``xi`` of a 4x4 array, so the sum over input
channels is 16 independent matrix products ``M[xi] = U[xi] @ V[xi]`` (``U[xi]``: output
by input channels, ``V[xi]``: input channels by tiles), 16 multiply-adds a tile and
channel pair where the direct sum does 36. The transforms are additions and halvings
(G has entries of 1/2; B and A entries of 0 and +-1): float32 results differ from
torch's by about 1e-6 of the largest value (the forward's; 4e-6 for the weight gradient,
whose sums run over every tile).

The weight gradient is the same products transposed: ``dU[xi] = G[xi] @ V[xi]^T`` summed
over tiles, with ``G`` the output gradient's transform ``A g A^T``, and ``grad_w = G^T dU
G`` (the weight transform's transpose).

Layouts (flat arrays; ``ut`` shared by the threads, the rest each thread's own):
- ``ut``: ``U`` as ``[xi][block of KB output channels][input channel][KB]``, so a block's
  weights for one input channel are KB consecutive floats (broadcast operands);
- ``V``: ``[xi][input channel][tile]`` for a chunk of ``nt`` tiles, the tiles numbered
  image by image, row by row (tiles are the vector lanes);
- ``M``: ``[xi][output channel][tile]`` for the same chunk;
- for the weight gradient, ``VT``: ``[xi][tile][input channel]`` (channels are the lanes,
  in blocks of WC), ``G``: ``[xi][output channel][tile]``, and ``dU``: ``[xi][output
  channel][input channel]``.
Each array is 16 rows, one an ``xi``, of a *pitch* (:func:`pitch`) that keeps the 16
rows' stores off addresses 4 KiB apart: the weight transform stored its 16 values 4 KiB
apart (a multiple of 4 KiB for most channel counts) at 43 ns a weight, 10x its time
with the rows one cache line off.
A chunk's ``V`` and ``M`` are sized to stay in the core's L2 cache between the input
transform that writes ``V``, the products, and the output transform that reads ``M``.
"""

import numpy as np
from numba import njit

from ._jit import U
from ._outer import WC, WK, outer_sums, transpose_chunk
from ._parts import run_parts, span
from ._simd import (
    P,
    add,
    add_scalar,
    copy_even,
    copy_run,
    fma,
    gather_rows,
    interleave_high,
    interleave_low,
    load,
    load_even,
    load_first,
    store,
    store_masked,
    sub,
    zeros,
)


@njit(cache=True, inline="always")
def _store_lanes(arr, index, v, n):
    """``arr[index:index + n]`` = the first ``n`` lanes of ``v`` (``1 <= n <= P``), one
    masked store whether ``n`` is P or not: the transforms' many stores then compile
    once, not twice as :func:`kernels.cpu._simd.store_first`'s (the 3x3 input
    transform's compile time 1.4 -> 0.8 s; a full mask stores as fast as none)."""
    store_masked(arr, index, v, ((1 << P) - 1) >> (P - n))


def pitch(n: int) -> int:
    """The row pitch for rows of ``n`` floats (see the module docstring): a multiple of
    1024 floats and one cache line (16 floats), so the 16 rows fall on 16 different
    lines of every 4 KiB."""
    return (n + 1023) // 1024 * 1024 + 16


KB = 8  # output channels a block of the products: KB x 3 accumulator vectors
SET = 3 * P  # tiles a block of the products (3 vectors)


@njit(cache=True, _nrt=False)
def _weights(w, ut, flip, stride2, part, parts):
    """``ut`` = G w[k, c] G^T for every output channel ``k`` and input channel ``c``
    (layout above), of ``w`` as (K, C, 3, 3); with ``flip``, of the weights of ``w``'s input
    gradient, ``w'[k, c, a, b] = w[c, k, 2 - a, 2 - b]`` (``w`` then is (C, K, 3, 3)).
    With ``stride2``, the stride-2 transform's 16 distinct values (:func:`_input_chunk2`).
    The last block's padding channels (``k >= K``) get zeros.

    A task is a block of KB filters and P // KB input channels, one vector: each tap is
    one gather (:func:`kernels.cpu._simd.gather_rows`), and each of the 16 values one
    store of P consecutive floats (scalar, 9 ns a 3x3 kernel: 1.2 ms of a 512-channel
    layer's 9)."""
    K = w.shape[1] if flip else w.shape[0]
    C = w.shape[0] if flip else w.shape[1]
    h = np.float32(0.5)  # (a Python 0.5 would make float32 sums float64)
    cv = P // KB  # input channels a vector
    nkb, ncv = (K + KB - 1) // KB, (C + cv - 1) // cv
    s1, s2 = (9, K * 9) if flip else (C * 9, 9)  # a filter's step, an input channel's
    xs = U(ut.shape[0] // 16)  # from one xi to the next (see pitch)
    wf = w.reshape(w.size)
    z = zeros(ut)
    lo, hi = span(nkb * ncv, part, parts)
    for task in range(lo, hi):
        if flip:  # input channel major: consecutive tasks read consecutive memory
            kb, c = task % nkb, task // nkb * cv
            a = (c * K + kb * KB) * 9 + 8  # taps in reverse
        else:
            kb, c = task // ncv, task % ncv * cv
            a = (kb * KB * C + c) * 9
        nj, ni = min(KB, K - kb * KB), min(cv, C - c)
        d = -1 if flip else 1
        g00 = gather_rows(wf, a, s1, nj, s2, ni)
        g01 = gather_rows(wf, a + d, s1, nj, s2, ni)
        g02 = gather_rows(wf, a + 2 * d, s1, nj, s2, ni)
        g10 = gather_rows(wf, a + 3 * d, s1, nj, s2, ni)
        g11 = gather_rows(wf, a + 4 * d, s1, nj, s2, ni)
        g12 = gather_rows(wf, a + 5 * d, s1, nj, s2, ni)
        g20 = gather_rows(wf, a + 6 * d, s1, nj, s2, ni)
        g21 = gather_rows(wf, a + 7 * d, s1, nj, s2, ni)
        g22 = gather_rows(wf, a + 8 * d, s1, nj, s2, ni)
        # t = G g: rows 0 and 3 are g's, rows 1 and 2 half-sums; then t G^T row by row
        o = U((kb * C + c) * KB)
        n = ni * KB
        for r in range(4):
            if stride2:  # rows w0, w0 + w2, w2, w1, and each row (t0, t0 + t2, t2, t1)
                if r == 0 or r == 1:
                    t0, t1, t2 = g00, g01, g02
                    if r == 1:
                        t0, t1, t2 = add(t0, g20), add(t1, g21), add(t2, g22)
                elif r == 2:
                    t0, t1, t2 = g20, g21, g22
                else:
                    t0, t1, t2 = g10, g11, g12
                q = o + U(4 * r) * xs
                _store_lanes(ut, q, t0, n)
                _store_lanes(ut, q + xs, add(t0, t2), n)
                _store_lanes(ut, q + 2 * xs, t2, n)
                _store_lanes(ut, q + 3 * xs, t1, n)
                continue
            if r == 0:
                t0, t1, t2 = g00, g01, g02
            elif r == 3:
                t0, t1, t2 = g20, g21, g22
            elif r == 1:
                t0 = fma(z, h, add(add(g00, g10), g20))
                t1 = fma(z, h, add(add(g01, g11), g21))
                t2 = fma(z, h, add(add(g02, g12), g22))
            else:
                t0 = fma(z, h, add(sub(g00, g10), g20))
                t1 = fma(z, h, add(sub(g01, g11), g21))
                t2 = fma(z, h, add(sub(g02, g12), g22))
            q = o + U(4 * r) * xs
            _store_lanes(ut, q, t0, n)
            _store_lanes(ut, q + xs, fma(z, h, add(add(t0, t1), t2)), n)
            _store_lanes(ut, q + 2 * xs, fma(z, h, add(sub(t0, t1), t2)), n)
            _store_lanes(ut, q + 3 * xs, t2, n)


@njit(cache=True, inline="always")
def _zero_tail(V, nx, rows, nt, used):
    """Zero the lanes past ``used`` of a chunk's last set of tiles in ``V``'s ``rows`` rows
    of each of its ``nx`` positions: they are multiplied, never stored, and old values
    might be NaN."""
    end = (used + SET - 1) // SET * SET
    xs = V.shape[0] // nx
    for r in range(nx * rows):
        for q in range(used, end):
            V[(r // rows) * xs + (r % rows) * nt + q] = 0


@njit(cache=True, inline="always")
def _segment(p, p1, TH, TW):
    """``(n, ty, tx, e)``: tile ``p`` is image ``n``'s tile ``(ty, tx)``, and the next ``e``
    tiles up to ``p1`` are the rest of its tile row (tiles numbered image by image, row by
    row, ``TH x TW`` an image): the segment a chunk function handles at once."""
    n, r = p // (TH * TW), p % (TH * TW)
    ty, tx = r // TW, r % TW
    return n, ty, tx, min(p1 - p, TW - tx)


@njit(cache=True, inline="always")
def _patch_row(rb, a, n):
    """Row ``a`` of the 4x4 input patches of P tiles side by side: their columns 0 to 3,
    each the even elements of ``rb[a + j:][:n]`` (tiles start 2 columns apart)."""
    return (load_even(rb, a, n), load_even(rb, a + U(1), n), load_even(rb, a + U(2), n),
            load_even(rb, a + U(3), n))


@njit(cache=True, inline="always")
def _store_input_transform(V, o, xs, m, d00, d01, d02, d03, d10, d11, d12, d13, d20, d21,
                           d22, d23, d30, d31, d32, d33):
    """``V[o + xi*xs:][:m]`` = (B^T d B)[xi] for the 4x4 patches ``d`` (row by row, one
    vector a position; ``m`` lanes stored): B^T d, then each row times B. (Inlined, it
    keeps its vectors in registers.)"""
    e0, e1, e2, e3 = sub(d00, d20), sub(d01, d21), sub(d02, d22), sub(d03, d23)
    _store_lanes(V, o, sub(e0, e2), m)
    _store_lanes(V, o + xs, add(e1, e2), m)
    _store_lanes(V, o + 2 * xs, sub(e2, e1), m)
    _store_lanes(V, o + 3 * xs, sub(e1, e3), m)
    e0, e1, e2, e3 = add(d10, d20), add(d11, d21), add(d12, d22), add(d13, d23)
    _store_lanes(V, o + 4 * xs, sub(e0, e2), m)
    _store_lanes(V, o + 5 * xs, add(e1, e2), m)
    _store_lanes(V, o + 6 * xs, sub(e2, e1), m)
    _store_lanes(V, o + 7 * xs, sub(e1, e3), m)
    e0, e1, e2, e3 = sub(d20, d10), sub(d21, d11), sub(d22, d12), sub(d23, d13)
    _store_lanes(V, o + 8 * xs, sub(e0, e2), m)
    _store_lanes(V, o + 9 * xs, add(e1, e2), m)
    _store_lanes(V, o + 10 * xs, sub(e2, e1), m)
    _store_lanes(V, o + 11 * xs, sub(e1, e3), m)
    e0, e1, e2, e3 = sub(d10, d30), sub(d11, d31), sub(d12, d32), sub(d13, d33)
    _store_lanes(V, o + 12 * xs, sub(e0, e2), m)
    _store_lanes(V, o + 13 * xs, add(e1, e2), m)
    _store_lanes(V, o + 14 * xs, sub(e2, e1), m)
    _store_lanes(V, o + 15 * xs, sub(e1, e3), m)


@njit(cache=True, inline="always")
def _store_grad_row(G, o, xs, m, ha, hb):
    """``G[o + s*xs:][:m]`` for s = 0..3: one row ``(ha, hb)`` of ``A g`` times ``A^T``."""
    _store_lanes(G, o, ha, m)
    _store_lanes(G, o + xs, add(ha, hb), m)
    _store_lanes(G, o + 2 * xs, sub(ha, hb), m)
    _store_lanes(G, o + 3 * xs, sub(zeros(G), hb), m)


@njit(cache=True, _nrt=False)
def _input_chunk(xf, C, H, W, V, rb, pitch, p0, p1, nt, top, left, TH, TW):
    """``V[xi][c][p - p0]`` = (B^T d B)[xi] for tiles ``p0 <= p < p1`` and every channel,
    tile row by tile row: a tile row's four input rows are first copied into ``rb`` (rows
    of ``pitch``, zero padded left and right; a row outside the input is all zeros), then
    each group of P tiles of the row loads its 16 inputs at stride 2 (one vector each)
    and stores its 16 transformed values as 16 vectors.

    NOTE: on small maps a tile row fills few lanes (4 of 16 at 7x7). Packing several
    tile rows a vector took the 512-channel 7x7 transform from 1.02-1.21 to 0.83-0.88 ms
    on one thread (its forward 2-3% faster), but compiling it cost every first 3x3
    layer 2 s more, so it was dropped."""
    rb[:] = 0
    p = p0
    while p < p1:  # the chunk's tile rows (segments of one), then the channels
        n, ty, tx, e = _segment(p, p1, TH, TW)  # tiles of this row in the chunk
        for c in range(C):
            for i in range(4):
                row = 2 * ty + i - top
                if 0 <= row < H:
                    copy_run(xf, U(((n * C + c) * H + row) * W), rb, U(i * pitch + left), W)
                else:
                    for q in range(left, left + W):
                        rb[i * pitch + q] = 0
            for tx0 in range(tx, tx + e, P):
                m = min(P, tx + e - tx0)
                a, n2 = U(2 * tx0), 2 * m - 1
                d00, d01, d02, d03 = _patch_row(rb, a, n2)
                d10, d11, d12, d13 = _patch_row(rb, a + U(pitch), n2)
                d20, d21, d22, d23 = _patch_row(rb, a + U(2 * pitch), n2)
                d30, d31, d32, d33 = _patch_row(rb, a + U(3 * pitch), n2)
                _store_input_transform(V, U(c * nt + p - p0 + tx0 - tx), U(V.shape[0] // 16),
                                       m, d00, d01, d02, d03, d10, d11, d12, d13, d20, d21,
                                       d22, d23, d30, d31, d32, d33)
        p += e
    _zero_tail(V, 16, C, nt, p1 - p0)


@njit(cache=True, inline="always")
def _patch_row5(rb, a, half, n):
    """Row ``a`` of the 5x5 input patches of P stride-2 tiles side by side, transformed
    along the row: ``(d0 - d2, d2, d4 - d2, d1, d3)`` of its columns ``d0`` to ``d4``, the
    even ones from ``rb[a:]``, the odd from ``rb[a + half:]`` (see :func:`_input_chunk2`)."""
    e0, e1, e2 = load_even(rb, a, n), load_even(rb, a + U(1), n), load_even(rb, a + U(2), n)
    return (sub(e0, e1), e1, sub(e2, e1), load_even(rb, a + half, n),
            load_even(rb, a + half + U(1), n))


@njit(cache=True, inline="always")
def _store5(V, o, xs, m, t0, t1, t2, t3, t4):
    """``V[o + j*xs:][:m]`` = ``tj`` for j = 0..4: one row of a 5x5 transform."""
    _store_lanes(V, o, t0, m)
    _store_lanes(V, o + xs, t1, m)
    _store_lanes(V, o + 2 * xs, t2, m)
    _store_lanes(V, o + 3 * xs, t3, m)
    _store_lanes(V, o + 4 * xs, t4, m)


@njit(cache=True, _nrt=False)
def _input_chunk2(xf, C, H, W, V, rb, half, p0, p1, nt, top, left, TH, TW):
    """As :func:`_input_chunk`, for a 3x3 convolution at stride 2: ``V[xi][c][p - p0]`` for
    the 25 positions of ``T^T d T``, ``d`` the tile's 5x5 input patch (its outputs' 5x5
    receptive field; tiles start 4 inputs apart) and ``T^T d`` the rows ``(d0 - d2, d2,
    d4 - d2, d1, d3)``.

    Along each axis, the stride-2 filter's two outputs are the 2-tap filter ``(w0, w2)``
    on the even inputs ``d0, d2, d4``, by Winograd's F(2, 2) (3 products: ``(d0 - d2) w0``,
    ``d2 (w0 + w2)``, ``(d4 - d2) w2``), plus ``w1`` times the odd ones ``d1``, ``d3``: 5
    products where the direct sum has 6, 25 in 2-D where it has 36, all of integer
    transforms (exact but for the sums' rounding).

    A tile row's 5 input rows are copied into ``rb`` split by parity (a row's even padded
    columns, then at ``half`` its odd ones), so that each of the 25 values is one load
    at stride 2, as in :func:`_input_chunk`."""
    xs = U(V.shape[0] // 25)
    pitch = 2 * half
    c0 = left % 2  # the first input column at an even padded column
    ne, no = (W - c0 + 1) // 2, (W + c0) // 2  # the columns at even and odd ones
    rb[:] = 0
    p = p0
    while p < p1:  # the chunk's tile rows (segments of one), then the channels
        n, ty, tx, e = _segment(p, p1, TH, TW)
        for c in range(C):
            for i in range(5):
                row = 4 * ty + i - top
                re = i * pitch + (c0 + left) // 2
                ro = i * pitch + half + (left - c0) // 2
                if 0 <= row < H:
                    src = ((n * C + c) * H + row) * W
                    copy_even(xf, U(src + c0), rb, U(re), ne)
                    copy_even(xf, U(src + 1 - c0), rb, U(ro), no)
                else:
                    rb[re:re + ne] = 0
                    rb[ro:ro + no] = 0
            for tx0 in range(tx, tx + e, P):
                m = min(P, tx + e - tx0)
                a, n2, h = U(2 * tx0), 2 * m - 1, U(half)
                o = U(c * nt + p - p0 + tx0 - tx)
                s0, s1, s2, s3, s4 = _patch_row5(rb, a + U(2 * pitch), h, n2)
                _store5(V, o + 5 * xs, xs, m, s0, s1, s2, s3, s4)
                t0, t1, t2, t3, t4 = _patch_row5(rb, a, h, n2)
                _store5(V, o, xs, m, sub(t0, s0), sub(t1, s1), sub(t2, s2), sub(t3, s3),
                        sub(t4, s4))
                t0, t1, t2, t3, t4 = _patch_row5(rb, a + U(4 * pitch), h, n2)
                _store5(V, o + 10 * xs, xs, m, sub(t0, s0), sub(t1, s1), sub(t2, s2),
                        sub(t3, s3), sub(t4, s4))
                t0, t1, t2, t3, t4 = _patch_row5(rb, a + U(pitch), h, n2)
                _store5(V, o + 15 * xs, xs, m, t0, t1, t2, t3, t4)
                t0, t1, t2, t3, t4 = _patch_row5(rb, a + U(3 * pitch), h, n2)
                _store5(V, o + 20 * xs, xs, m, t0, t1, t2, t3, t4)
        p += e
    _zero_tail(V, 25, C, nt, p1 - p0)


@njit(cache=True, inline="always")
def _weight_row(xi, nx):
    """The row of ``ut`` that position ``xi`` of ``nx`` multiplies: itself, or in the
    stride-2 transform's 5x5 (:func:`_input_chunk2`) that of its row and column, each
    capped at 3 (rows and columns 3 and 4 of its weights are the same)."""
    if nx == 16:
        return xi
    return min(xi // 5, 3) * 4 + min(xi % 5, 3)


@njit(cache=True, _nrt=False)
def _products_two(V, ut, M, C, kb0, kb1, nt, s, nx):
    """:func:`_products` of set ``s`` with two vectors of tiles (KB x 2 accumulators):
    the chunk's last set, when it has 2*P tiles or fewer (a 7x7 map's 128 tiles at batch
    8 are two sets and two thirds: the third vector of the last would waste 11%)."""
    vxs, uxs, mxs = V.shape[0] // nx, ut.shape[0] // 16, M.shape[0] // nx
    for xi in range(nx):
        for kb in range(kb0, kb1):
            ub = U(_weight_row(xi, nx) * uxs + kb * C * KB)
            vb = U(xi * vxs + s * SET)
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zeros(M)
            b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = zeros(M)
            for c in range(C):
                v = vb + U(c) * U(nt)
                x0 = load(V, v)
                x1 = load(V, v + U(P))
                u = ub + U(c) * U(KB)
                w = ut[u]
                a0, b0 = fma(a0, w, x0), fma(b0, w, x1)
                w = ut[u + U(1)]
                a1, b1 = fma(a1, w, x0), fma(b1, w, x1)
                w = ut[u + U(2)]
                a2, b2 = fma(a2, w, x0), fma(b2, w, x1)
                w = ut[u + U(3)]
                a3, b3 = fma(a3, w, x0), fma(b3, w, x1)
                w = ut[u + U(4)]
                a4, b4 = fma(a4, w, x0), fma(b4, w, x1)
                w = ut[u + U(5)]
                a5, b5 = fma(a5, w, x0), fma(b5, w, x1)
                w = ut[u + U(6)]
                a6, b6 = fma(a6, w, x0), fma(b6, w, x1)
                w = ut[u + U(7)]
                a7, b7 = fma(a7, w, x0), fma(b7, w, x1)
            o = U(xi * mxs + (kb - kb0) * KB * nt + s * SET)
            r = U(nt)
            store(M, o, a0), store(M, o + U(P), b0)
            store(M, o + r, a1), store(M, o + r + U(P), b1)
            store(M, o + 2 * r, a2), store(M, o + 2 * r + U(P), b2)
            store(M, o + 3 * r, a3), store(M, o + 3 * r + U(P), b3)
            store(M, o + 4 * r, a4), store(M, o + 4 * r + U(P), b4)
            store(M, o + 5 * r, a5), store(M, o + 5 * r + U(P), b5)
            store(M, o + 6 * r, a6), store(M, o + 6 * r + U(P), b6)
            store(M, o + 7 * r, a7), store(M, o + 7 * r + U(P), b7)


@njit(cache=True, _nrt=False)
def _products(V, ut, M, C, kb0, kb1, nt, tiles, nx):
    """``M[xi][k - kb0*KB][t] = sum_c ut[xi][k][c] * V[xi][c][t]`` for the ``nx`` positions
    ``xi`` (16, or the stride-2 transform's 25, :func:`_weight_row`), the blocks
    ``kb0 <= kb < kb1`` of KB output channels and the chunk's first ``tiles`` tiles, in
    sets of SET (the last, if 2*P tiles or fewer, by :func:`_products_two`).

    Loop nest: xi > block > set of tiles > input channel > 3 x KB vector FMAs: a block's
    weights (C x KB) stay in L1 for every set, the chunk's V (C x nt) in L2 for every
    block, and each input channel's 3 vectors feed 24 FMAs with KB broadcast weights (11
    loads a 24 FMAs)."""
    vxs, uxs, mxs = V.shape[0] // nx, ut.shape[0] // 16, M.shape[0] // nx
    nset = (tiles + SET - 1) // SET
    if tiles - (nset - 1) * SET <= 2 * P:
        nset -= 1
        _products_two(V, ut, M, C, kb0, kb1, nt, nset, nx)
    for xi in range(nx):
        for kb in range(kb0, kb1):
            ub = U(_weight_row(xi, nx) * uxs + kb * C * KB)
            for s in range(nset):
                vb = U(xi * vxs + s * SET)
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zeros(M)
                b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = zeros(M)
                c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = zeros(M)
                for c in range(C):
                    v = vb + U(c) * U(nt)
                    x0 = load(V, v)
                    x1 = load(V, v + U(P))
                    x2 = load(V, v + U(2 * P))
                    u = ub + U(c) * U(KB)
                    w = ut[u]
                    a0, b0, c0 = fma(a0, w, x0), fma(b0, w, x1), fma(c0, w, x2)
                    w = ut[u + U(1)]
                    a1, b1, c1 = fma(a1, w, x0), fma(b1, w, x1), fma(c1, w, x2)
                    w = ut[u + U(2)]
                    a2, b2, c2 = fma(a2, w, x0), fma(b2, w, x1), fma(c2, w, x2)
                    w = ut[u + U(3)]
                    a3, b3, c3 = fma(a3, w, x0), fma(b3, w, x1), fma(c3, w, x2)
                    w = ut[u + U(4)]
                    a4, b4, c4 = fma(a4, w, x0), fma(b4, w, x1), fma(c4, w, x2)
                    w = ut[u + U(5)]
                    a5, b5, c5 = fma(a5, w, x0), fma(b5, w, x1), fma(c5, w, x2)
                    w = ut[u + U(6)]
                    a6, b6, c6 = fma(a6, w, x0), fma(b6, w, x1), fma(c6, w, x2)
                    w = ut[u + U(7)]
                    a7, b7, c7 = fma(a7, w, x0), fma(b7, w, x1), fma(c7, w, x2)
                o = U(xi * mxs + (kb - kb0) * KB * nt + s * SET)
                r = U(nt)
                store(M, o, a0), store(M, o + U(P), b0), store(M, o + U(2 * P), c0)
                o += r
                store(M, o, a1), store(M, o + U(P), b1), store(M, o + U(2 * P), c1)
                o += r
                store(M, o, a2), store(M, o + U(P), b2), store(M, o + U(2 * P), c2)
                o += r
                store(M, o, a3), store(M, o + U(P), b3), store(M, o + U(2 * P), c3)
                o += r
                store(M, o, a4), store(M, o + U(P), b4), store(M, o + U(2 * P), c4)
                o += r
                store(M, o, a5), store(M, o + U(P), b5), store(M, o + U(2 * P), c5)
                o += r
                store(M, o, a6), store(M, o + U(P), b6), store(M, o + U(2 * P), c6)
                o += r
                store(M, o, a7), store(M, o + U(P), b7), store(M, o + U(2 * P), c7)


@njit(cache=True, _nrt=False)
def _output_chunk(M, b, yf, K, OH, OW, p0, p1, nt, k0, k1, TH, TW):
    """``y[n, k, 2ty:2ty+2, 2tx:2tx+2]`` = (A^T M A) + b[k] for tiles ``p0 <= p < p1`` and
    channels ``k0 <= k < k1`` (``M`` holds rows from ``k0``), cropped to the output: each
    group of P tiles of a row loads its 16 sums as vectors, and its two output rows are
    stored as interleaved pairs of vectors."""
    xs = U(M.shape[0] // 16)
    p = p0
    while p < p1:
        n, ty, tx, e = _segment(p, p1, TH, TW)
        for k in range(k0, k1):
            bias = b[k]
            row = U(((n * K + k) * OH + 2 * ty) * OW)
            for tx0 in range(tx, tx + e, P):
                m = min(P, tx + e - tx0)
                q = U((k - k0) * nt + p - p0 + tx0 - tx)
                m0 = load_first(M, q, m)
                m1 = load_first(M, q + xs, m)
                m2 = load_first(M, q + 2 * xs, m)
                m3 = load_first(M, q + 3 * xs, m)
                m4 = load_first(M, q + 4 * xs, m)
                m5 = load_first(M, q + 5 * xs, m)
                m6 = load_first(M, q + 6 * xs, m)
                m7 = load_first(M, q + 7 * xs, m)
                m8 = load_first(M, q + 8 * xs, m)
                m9 = load_first(M, q + 9 * xs, m)
                m10 = load_first(M, q + 10 * xs, m)
                m11 = load_first(M, q + 11 * xs, m)
                m12 = load_first(M, q + 12 * xs, m)
                m13 = load_first(M, q + 13 * xs, m)
                m14 = load_first(M, q + 14 * xs, m)
                m15 = load_first(M, q + 15 * xs, m)
                # A^T M: row 0 = M0 + M1 + M2, row 1 = M1 - M2 - M3 (rows of 4)
                f0, f1 = add(add(m0, m4), m8), add(add(m1, m5), m9)
                f2, f3 = add(add(m2, m6), m10), add(add(m3, m7), m11)
                g0, g1 = sub(sub(m4, m8), m12), sub(sub(m5, m9), m13)
                g2, g3 = sub(sub(m6, m10), m14), sub(sub(m7, m11), m15)
                y00 = add_scalar(add(add(f0, f1), f2), bias)
                y01 = add_scalar(sub(sub(f1, f2), f3), bias)
                y10 = add_scalar(add(add(g0, g1), g2), bias)
                y11 = add_scalar(sub(sub(g1, g2), g3), bias)
                _store_tiles(yf, row, OW, 2 * ty + 1 < OH, 2 * tx0, m, y00, y01, y10, y11)
        p += e


@njit(cache=True, inline="always")
def _store_tiles(yf, row, OW, two, col, m, y00, y01, y10, y11):
    """The 2x2 outputs of ``m`` tiles side by side, from column ``col`` of output row
    ``row`` (and the next, if ``two``), cropped to the output: pairs of vectors
    interleaved."""
    cnt = min(2 * m, OW - col)  # outputs of the row in this group
    o = row + U(col)
    _store_lanes(yf, o, interleave_low(y00, y01), min(P, cnt))
    if cnt > P:
        _store_lanes(yf, o + U(P), interleave_high(y00, y01), cnt - P)
    if two:
        o += U(OW)
        _store_lanes(yf, o, interleave_low(y10, y11), min(P, cnt))
        if cnt > P:
            _store_lanes(yf, o + U(P), interleave_high(y10, y11), cnt - P)


@njit(cache=True, _nrt=False)
def _forward_part(x, ut, b, y, vbuf, mbuf, rbuf, top, left, TH, TW, nt, Tc, pset, kset,
                  part, parts):
    """The part ``(ip, ic) = divmod(part, Tc)``: tiles ``pset[ip]:pset[ip + 1]`` for the
    blocks ``kset[ic]:kset[ic + 1]`` of KB output channels, in chunks of ``nt`` tiles, each
    transformed, multiplied and transformed back in this thread's own buffers."""
    N, C, H, W = x.shape
    K, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    ip, ic = part // Tc, part % Tc
    kb0, kb1 = kset[ic], kset[ic + 1]
    V, M, rb = vbuf[part], mbuf[part], rbuf[part]
    xf, yf = x.reshape(x.size), y.reshape(y.size)
    pitch = 2 * TW + 2  # a row of rb: a tile row's inputs, zero padded
    for p0 in range(pset[ip], pset[ip + 1], nt):
        p1 = min(p0 + nt, pset[ip + 1])
        _input_chunk(xf, C, H, W, V, rb, pitch, p0, p1, nt, top, left, TH, TW)
        _products(V, ut, M, C, kb0, kb1, nt, p1 - p0, 16)
        _output_chunk(M, b, yf, K, OH, OW, p0, p1, nt, kb0 * KB, min(kb1 * KB, K), TH, TW)


@njit(cache=True, inline="always")
def _output_column(M, q, xs, m, j):
    """Column ``j`` of ``A^T M`` for the stride-2 transform's 5x5 sums: rows 0 + 1 + 3 and
    1 + 2 + 4 (:func:`_output_chunk2`)."""
    m1 = load_first(M, q + U(5 + j) * xs, m)
    return (add(add(load_first(M, q + U(j) * xs, m), m1), load_first(M, q + U(15 + j) * xs, m)),
            add(add(m1, load_first(M, q + U(10 + j) * xs, m)),
                load_first(M, q + U(20 + j) * xs, m)))


@njit(cache=True, _nrt=False)
def _output_chunk2(M, b, yf, K, OH, OW, p0, p1, nt, k0, k1, TH, TW):
    """As :func:`_output_chunk`, for the stride-2 transform's 25 sums a tile: ``y`` =
    ``A^T M A`` + b[k], ``A^T = [[1, 1, 0, 1, 0], [0, 1, 1, 0, 1]]`` (output 0 takes the
    F(2, 2) products 0 and 1 and the odd input's 3, output 1 the products 1, 2 and 4)."""
    xs = U(M.shape[0] // 25)
    p = p0
    while p < p1:
        n, ty, tx, e = _segment(p, p1, TH, TW)
        for k in range(k0, k1):
            bias = b[k]
            row = U(((n * K + k) * OH + 2 * ty) * OW)
            for tx0 in range(tx, tx + e, P):
                m = min(P, tx + e - tx0)
                q = U((k - k0) * nt + p - p0 + tx0 - tx)
                f0, g0 = _output_column(M, q, xs, m, 0)
                f1, g1 = _output_column(M, q, xs, m, 1)
                f2, g2 = _output_column(M, q, xs, m, 2)
                f3, g3 = _output_column(M, q, xs, m, 3)
                f4, g4 = _output_column(M, q, xs, m, 4)
                y00 = add_scalar(add(add(f0, f1), f3), bias)
                y01 = add_scalar(add(add(f1, f2), f4), bias)
                y10 = add_scalar(add(add(g0, g1), g3), bias)
                y11 = add_scalar(add(add(g1, g2), g4), bias)
                _store_tiles(yf, row, OW, 2 * ty + 1 < OH, 2 * tx0, m, y00, y01, y10, y11)
        p += e


@njit(cache=True, _nrt=False)
def _forward_part2(x, ut, b, y, vbuf, mbuf, rbuf, top, left, TH, TW, half, nt, Tc, pset,
                   kset, part, parts):
    """:func:`_forward_part` at stride 2: the 25 positions of :func:`_input_chunk2`, its row
    buffer's halves ``half`` apart (:func:`row_half`)."""
    N, C, H, W = x.shape
    K, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    ip, ic = part // Tc, part % Tc
    kb0, kb1 = kset[ic], kset[ic + 1]
    V, M, rb = vbuf[part], mbuf[part], rbuf[part]
    xf, yf = x.reshape(x.size), y.reshape(y.size)
    for p0 in range(pset[ip], pset[ip + 1], nt):
        p1 = min(p0 + nt, pset[ip + 1])
        _input_chunk2(xf, C, H, W, V, rb, half, p0, p1, nt, top, left, TH, TW)
        _products(V, ut, M, C, kb0, kb1, nt, p1 - p0, 25)
        _output_chunk2(M, b, yf, K, OH, OW, p0, p1, nt, kb0 * KB, min(kb1 * KB, K), TH, TW)


def row_half(W: int, left: int, TW: int) -> int:
    """The stride-2 row buffer's half (:func:`_input_chunk2`): room for the even padded
    columns the tiles read (2 TW + 1) and those of the input, and the same for the odd."""
    return max(2 * TW + 1, (W + left + 2) // 2)


def forward(x, w, b, y, flip, ut, vbuf, mbuf, rbuf, top, left, nt, Tc, pset, kset,
            stride=1):
    """y = conv3x3(x, w) + b at stride 1 with ``top``/``left`` zero padding (the bottom and
    right padding follow from ``y``'s shape), by F(2x2, 3x3); with ``flip``, ``w`` is the
    weights whose input gradient this is (see :func:`_weights`). The buffers are the
    plan's (:class:`kernels.conv._Winograd`): ``ut`` shared, the rest one per part. At
    ``stride`` 2 (not flipped), by the transform of :func:`_input_chunk2`."""
    TH, TW = (y.shape[2] + 1) // 2, (y.shape[3] + 1) // 2
    parts = vbuf.shape[0]
    run_parts(_weights, parts, w, ut, flip, stride == 2)
    if stride == 2:
        run_parts(_forward_part2, parts, x, ut, b, y, vbuf, mbuf, rbuf, top, left, TH, TW,
                  row_half(x.shape[3], left, TW), nt, Tc, pset, kset)
    else:
        run_parts(_forward_part, parts, x, ut, b, y, vbuf, mbuf, rbuf, top, left, TH, TW, nt,
                  Tc, pset, kset)


@njit(cache=True, inline="always")
def _grad_patch_row(rb, a, n, podd):
    """Row ``a`` of the 3x3 grad_out patches of P tiles side by side (tiles start 2 apart)
    transformed along the row for the stride-2 input gradient (:func:`input_grad2`):
    ``(e0 - e1, e1, e2 - e1)`` then the two the odd outputs take, ``(e0, e1)`` where the
    tile starts at an odd padded position (``podd``), else ``(e1, e2)``."""
    e0, e1, e2 = load_even(rb, a, n), load_even(rb, a + U(1), n), load_even(rb, a + U(2), n)
    if podd:
        return sub(e0, e1), e1, sub(e2, e1), e0, e1
    return sub(e0, e1), e1, sub(e2, e1), e1, e2


@njit(cache=True, _nrt=False)
def _grad_input_chunk(gf, K, OH, OW, V, rb, pitch, p0, p1, nt, ofs, ofsw, podd, poddw, TH,
                      TW):
    """``V[xi][k][p - p0]`` for the stride-2 input gradient's tiles ``p0 <= p < p1``: the
    25 values of each output channel's 3x3 grad_out patch, rows ``2 ty + ofs`` on and
    columns ``2 tx + ofsw`` on (zeros outside grad_out), transformed along both axes by
    :func:`_grad_patch_row`. As :func:`_input_chunk`, a tile row's 3 rows are first copied
    into ``rb`` (rows of ``pitch``; column ``q`` is grad_out's ``q + ofsw``)."""
    xs = U(V.shape[0] // 25)
    c0 = max(0, ofsw)  # the first column copied
    rb[:] = 0
    p = p0
    while p < p1:
        n, ty, tx, e = _segment(p, p1, TH, TW)
        for k in range(K):
            for i in range(3):
                row = 2 * ty + ofs + i
                at = i * pitch + c0 - ofsw
                if 0 <= row < OH:
                    copy_run(gf, U(((n * K + k) * OH + row) * OW + c0), rb, U(at), OW - c0)
                else:
                    rb[at:at + OW - c0] = 0
            for tx0 in range(tx, tx + e, P):
                m = min(P, tx + e - tx0)
                a, n2 = U(2 * tx0), 2 * m - 1
                o = U(k * nt + p - p0 + tx0 - tx)
                s0, s1, s2, s3, s4 = _grad_patch_row(rb, a + U(pitch), n2, poddw)
                _store5(V, o + 5 * xs, xs, m, s0, s1, s2, s3, s4)
                t0, t1, t2, t3, t4 = _grad_patch_row(rb, a, n2, poddw)
                _store5(V, o, xs, m, sub(t0, s0), sub(t1, s1), sub(t2, s2), sub(t3, s3),
                        sub(t4, s4))
                u0, u1, u2, u3, u4 = _grad_patch_row(rb, a + U(2 * pitch), n2, poddw)
                _store5(V, o + 10 * xs, xs, m, sub(u0, s0), sub(u1, s1), sub(u2, s2),
                        sub(u3, s3), sub(u4, s4))
                if not podd:  # the odd outputs' rows: (row 0, row 1) or (row 1, row 2)
                    t0, t1, t2, t3, t4, s0, s1, s2, s3, s4 = s0, s1, s2, s3, s4, u0, u1, u2, u3, u4
                _store5(V, o + 15 * xs, xs, m, t0, t1, t2, t3, t4)
                _store5(V, o + 20 * xs, xs, m, s0, s1, s2, s3, s4)
        p += e
    _zero_tail(V, 25, K, nt, p1 - p0)


@njit(cache=True, inline="always")
def _sum_rows(M, q, xs, m, r, two):
    """The 5 sums of row ``r`` of the 5x5 positions of P tiles (plus row ``r + 1`` if
    ``two``): one row of the stride-2 input gradient's ``A^T M``."""
    v0 = load_first(M, q + U(5 * r) * xs, m)
    v1 = load_first(M, q + U(5 * r + 1) * xs, m)
    v2 = load_first(M, q + U(5 * r + 2) * xs, m)
    v3 = load_first(M, q + U(5 * r + 3) * xs, m)
    v4 = load_first(M, q + U(5 * r + 4) * xs, m)
    if two:
        v0 = add(v0, load_first(M, q + U(5 * r + 5) * xs, m))
        v1 = add(v1, load_first(M, q + U(5 * r + 6) * xs, m))
        v2 = add(v2, load_first(M, q + U(5 * r + 7) * xs, m))
        v3 = add(v3, load_first(M, q + U(5 * r + 8) * xs, m))
        v4 = add(v4, load_first(M, q + U(5 * r + 9) * xs, m))
    return v0, v1, v2, v3, v4


@njit(cache=True, inline="always")
def _store_quads(yf, o, cnt, podd, v0, v1, v2, v3, v4):
    """A row of the 4x4 output blocks of P tiles side by side, from the row ``v`` of
    ``A^T M``: the even outputs ``v0 + v1`` and ``v1 + v2``, the odd ``v3`` and ``v4``, in
    the order odd, even, odd, even where ``podd``; 4-way interleaved, the first ``cnt``
    stored at ``yf[o:]``."""
    e0, e1 = add(v0, v1), add(v1, v2)
    y0, y1, y2, y3 = (v3, e0, v4, e1) if podd else (e0, v3, e1, v4)
    a, b = interleave_low(y0, y2), interleave_low(y1, y3)
    _store_lanes(yf, o, interleave_low(a, b), min(P, cnt))
    if cnt > P:
        _store_lanes(yf, o + U(P), interleave_high(a, b), min(P, cnt - P))
    if cnt > 2 * P:
        a, b = interleave_high(y0, y2), interleave_high(y1, y3)
        _store_lanes(yf, o + U(2 * P), interleave_low(a, b), min(P, cnt - 2 * P))
        if cnt > 3 * P:
            _store_lanes(yf, o + U(3 * P), interleave_high(a, b), cnt - 3 * P)


@njit(cache=True, _nrt=False)
def _grad_output_chunk(M, yf, C, H, W, p0, p1, nt, c0, c1, TH, TW, podd, poddw):
    """``grad_x[n, c, 4ty:4ty+4, 4tx:4tx+4]`` = the 4x4 block ``A^T M A`` of tiles
    ``p0 <= p < p1``, channels ``c0 <= c < c1``, cropped to grad_x: along each axis, the
    even padded positions take the F(2, 2) sums ``m0 + m1`` and ``m1 + m2``, the odd ones
    ``m3`` and ``m4`` (:func:`input_grad2`)."""
    xs = U(M.shape[0] // 25)
    p = p0
    while p < p1:
        n, ty, tx, e = _segment(p, p1, TH, TW)
        rows = min(4, H - 4 * ty)
        for c in range(c0, c1):
            row = U(((n * C + c) * H + 4 * ty) * W)
            for tx0 in range(tx, tx + e, P):
                m = min(P, tx + e - tx0)
                q = U((c - c0) * nt + p - p0 + tx0 - tx)
                o, cnt = row + U(4 * tx0), min(4 * m, W - 4 * tx0)
                for rr in range(rows):  # (odd, even, odd, even) where podd
                    j = (rr ^ 1) if podd else rr  # rows 0 + 1, 3, 1 + 2, 4 of M
                    v0, v1, v2, v3, v4 = _sum_rows(M, q, xs, m, (j >> 1) + 3 * (j & 1),
                                                   j & 1 == 0)
                    _store_quads(yf, o + U(rr * W), cnt, poddw, v0, v1, v2, v3, v4)
        p += e


@njit(cache=True, _nrt=False)
def _input_grad_part2(g, ut, gx, vbuf, mbuf, rbuf, pitch, top, left, TH, TW, nt, Tc, pset,
                      kset, part, parts):
    """:func:`_forward_part` for :func:`input_grad2`."""
    N, K, OH, OW = g.shape
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    ip, ic = part // Tc, part % Tc
    kb0, kb1 = kset[ic], kset[ic + 1]
    V, M, rb = vbuf[part], mbuf[part], rbuf[part]
    gf, yf = g.reshape(g.size), gx.reshape(gx.size)
    ofs, ofsw = (top + 1) // 2 - 1, (left + 1) // 2 - 1  # (see grad_offsets)
    podd, poddw = top % 2 == 1, left % 2 == 1  # tiles start at odd padded positions
    for p0 in range(pset[ip], pset[ip + 1], nt):
        p1 = min(p0 + nt, pset[ip + 1])
        _grad_input_chunk(gf, K, OH, OW, V, rb, pitch, p0, p1, nt, ofs, ofsw, podd, poddw,
                          TH, TW)
        _products(V, ut, M, K, kb0, kb1, nt, p1 - p0, 25)
        _grad_output_chunk(M, yf, C, H, W, p0, p1, nt, kb0 * KB, min(kb1 * KB, C), TH, TW,
                           podd, poddw)


def grad_row_pitch(OW: int, left: int, TW: int) -> int:
    """The floats of a row of :func:`_grad_input_chunk`'s row buffer: the columns the
    tiles read (2 TW + 1) and those copied. Tile 0's patch starts at grad_out's column
    ``ofsw = (left + 1) // 2 - 1``: its block's first padded position, ``left``, is
    ``2u`` (taking ``g[u - 1]``) or ``2u + 1`` (taking ``g[u]`` first)."""
    return max(2 * TW + 1, OW - ((left + 1) // 2 - 1))


def input_grad2(g, w, gx, ut, vbuf, mbuf, rbuf, top, left, nt, Tc, pset, kset):
    """``gx`` = the input gradient of a 3x3 convolution at stride 2 with ``top``/``left``
    padding, of weights ``w`` (K, C, 3, 3), for the upstream gradient ``g``, in 4x4 blocks
    of grad_x (tiles; 2x2 of grad_out's positions each) by the transpose of
    :func:`_input_chunk2`'s transform.

    Along an axis, a padded input position ``2u`` gets ``w0 g[u] + w2 g[u - 1]`` and
    ``2u + 1`` gets ``w1 g[u]``: a tile's two even positions are the 2-tap filter
    ``(w2, w0)`` on three consecutive values of g, by F(2, 2) (3 products), its two odd
    ones ``w1`` times two of them: 5 products where the direct sum has 6, 25 in 2-D
    where it has 36. The weights' transform is :func:`_weights`' stride-2 one of the
    flipped weights ``(w2, w2 + w0, w0, w1)``; the products are the forward's."""
    TH, TW = (gx.shape[2] + 3) // 4, (gx.shape[3] + 3) // 4
    parts = vbuf.shape[0]
    run_parts(_weights, parts, w, ut, True, True)
    run_parts(_input_grad_part2, parts, g, ut, gx, vbuf, mbuf, rbuf,
              grad_row_pitch(g.shape[3], left, TW), top, left, TH, TW, nt, Tc, pset, kset)


@njit(cache=True, _nrt=False)
def _grad_chunk(gf, K, OH, OW, G, p0, p1, nt, TH, TW, k0, k1):
    """``G[xi][k - k0][p - p0]`` = (A g A^T)[xi] for tiles ``p0 <= p < p1`` and output
    channels ``k0 <= k < k1``: each tile's 2x2 block of grad_out (zeros past the output)
    spread over the 16 sums it came from (the output transform's transpose). Lanes past
    ``p1`` of the chunk's last set are zeroed, as :func:`_input_chunk` does."""
    xs = U(G.shape[0] // 16)
    p = p0
    while p < p1:
        n, ty, tx, e = _segment(p, p1, TH, TW)
        for k in range(k0, k1):
            row = U(((n * K + k) * OH + 2 * ty) * OW)
            two = 2 * ty + 1 < OH  # the tile's second row is in the output
            for tx0 in range(tx, tx + e, P):
                m = min(P, tx + e - tx0)
                col = 2 * tx0
                cnt = min(2 * m, OW - col)  # the row's outputs in this group
                a0 = load_even(gf, row + U(col), cnt)  # even columns of the tile's row 0
                b0 = load_even(gf, row + U(col + 1), cnt - 1)  # odd ones
                a1 = b1 = zeros(gf)
                if two:
                    a1 = load_even(gf, row + U(OW + col), cnt)
                    b1 = load_even(gf, row + U(OW + col + 1), cnt - 1)
                # A g: rows g0, g0 + g1, g0 - g1, -g1; then (A g) A^T row by row
                o = U((k - k0) * nt + p - p0 + tx0 - tx)
                z = zeros(gf)
                _store_grad_row(G, o, xs, m, a0, b0)
                _store_grad_row(G, o + 4 * xs, xs, m, add(a0, a1), add(b0, b1))
                _store_grad_row(G, o + 8 * xs, xs, m, sub(a0, a1), sub(b0, b1))
                _store_grad_row(G, o + 12 * xs, xs, m, sub(z, a1), sub(z, b1))
        p += e
    _zero_tail(G, 16, k1 - k0, nt, p1 - p0)


@njit(cache=True, _nrt=False)
def _weight_grad_part(x, g, dubuf, vbuf, vtbuf, gbuf, rbuf, top, left, TH, TW, nt, Tc, pset,
                      kset, part, parts):
    """The part ``(ip, ic) = divmod(part, Tc)``: the sums ``dU`` of its tiles
    ``pset[ip]:pset[ip + 1]`` for the output channels ``kset[ic]:kset[ic + 1]`` (whole
    blocks of WK), into ``dubuf[ip]`` (each split of the tiles sums its own ``dU``; the
    splits of the channels share one), in chunks of ``nt`` tiles: the input transform
    (as the forward's), its transpose, the gradient's transform, and the products."""
    N, C, H, W = x.shape
    K, OH, OW = g.shape[1], g.shape[2], g.shape[3]
    ip, ic = part // Tc, part % Tc
    k0, k1 = kset[ic], min(kset[ic + 1], K)
    V, VT, G, dU, rb = vbuf[part], vtbuf[part], gbuf[part], dubuf[ip], rbuf[part]
    Cp = (C + WC - 1) // WC * WC
    Kw = (kset[ic + 1] - k0 + WK - 1) // WK * WK  # this part's rows, whole blocks
    uxs, gxs = dU.shape[0] // 16, G.shape[0] // 16
    for xi in range(16):  # this part's rows of dU; G's padding rows of its last block
        dU[xi * uxs + k0 * Cp:xi * uxs + (k0 + Kw) * Cp] = 0
        for q in range(max(k1 - k0, 0) * nt, Kw * nt):
            G[xi * gxs + q] = 0
    if k1 <= k0:
        return
    xf, gf = x.reshape(x.size), g.reshape(g.size)
    pitch = 2 * TW + 2
    for p0 in range(pset[ip], pset[ip + 1], nt):
        p1 = min(p0 + nt, pset[ip + 1])
        tcount = (p1 - p0 + P - 1) // P * P
        _input_chunk(xf, C, H, W, V, rb, pitch, p0, p1, nt, top, left, TH, TW)
        transpose_chunk(V, VT, C, Cp, nt, tcount, 16)
        _grad_chunk(gf, K, OH, OW, G, p0, p1, nt, TH, TW, k0, k1)
        outer_sums(VT, G, dU, Cp, Kw, nt, tcount, k0, 16)


@njit(cache=True)
def _weight_grad_out(dubuf, gw, part, parts):
    """``gw[k, c] = G^T (sum over parts of dU[k][c]) G``, the 16 sums of each 3x3 kernel
    folded back onto its 9 weights (the weight transform's transpose)."""
    K, C = gw.shape[0], gw.shape[1]
    Cp = (C + WC - 1) // WC * WC
    xs = dubuf.shape[1] // 16
    h = np.float32(0.5)
    gwf = gw.reshape(gw.size)
    # (not gw[0, 0, 0, 0] * 0: gw is uninitialized, and NaN * 0 made every sum NaN)
    zero = np.zeros(1, dtype=gw.dtype)[0]
    lo, hi = span(K * C, part, parts)
    for task in range(lo, hi):
        k, c = task // C, task % C
        o = U(k * Cp + c)
        s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
        s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = s00
        for q in range(dubuf.shape[0]):
            d = dubuf[q]
            s00 += d[o]
            s01 += d[o + U(xs)]
            s02 += d[o + U(2 * xs)]
            s03 += d[o + U(3 * xs)]
            s10 += d[o + U(4 * xs)]
            s11 += d[o + U(5 * xs)]
            s12 += d[o + U(6 * xs)]
            s13 += d[o + U(7 * xs)]
            s20 += d[o + U(8 * xs)]
            s21 += d[o + U(9 * xs)]
            s22 += d[o + U(10 * xs)]
            s23 += d[o + U(11 * xs)]
            s30 += d[o + U(12 * xs)]
            s31 += d[o + U(13 * xs)]
            s32 += d[o + U(14 * xs)]
            s33 += d[o + U(15 * xs)]
        # G^T X: rows X0 + (X1 + X2)/2, (X1 - X2)/2, (X1 + X2)/2 + X3; then each row times G
        t00, t01 = s00 + (s10 + s20) * h, s01 + (s11 + s21) * h
        t02, t03 = s02 + (s12 + s22) * h, s03 + (s13 + s23) * h
        t10, t11 = (s10 - s20) * h, (s11 - s21) * h
        t12, t13 = (s12 - s22) * h, (s13 - s23) * h
        t20, t21 = (s10 + s20) * h + s30, (s11 + s21) * h + s31
        t22, t23 = (s12 + s22) * h + s32, (s13 + s23) * h + s33
        a = U((k * C + c) * 9)
        gwf[a] = t00 + (t01 + t02) * h
        gwf[a + U(1)] = (t01 - t02) * h
        gwf[a + U(2)] = (t01 + t02) * h + t03
        gwf[a + U(3)] = t10 + (t11 + t12) * h
        gwf[a + U(4)] = (t11 - t12) * h
        gwf[a + U(5)] = (t11 + t12) * h + t13
        gwf[a + U(6)] = t20 + (t21 + t22) * h
        gwf[a + U(7)] = (t21 - t22) * h
        gwf[a + U(8)] = (t21 + t22) * h + t23


def weight_grad(x, g, gw, dubuf, vbuf, vtbuf, gbuf, rbuf, top, left, nt, Tc, pset, kset):
    """``gw`` = the weight gradient of conv3x3(x, w) at stride 1 with ``top``/``left``
    padding for the upstream gradient ``g``, by F(2x2, 3x3): per xi, ``dU = G @ V^T``
    summed over tiles (16 multiply-adds a tile and channel pair, as the forward), then
    folded back (:func:`_weight_grad_out`). Parts split the tiles (each summing its own
    ``dU``) or the output channels (sharing one), see :func:`_weight_grad_part`."""
    TH, TW = (g.shape[2] + 1) // 2, (g.shape[3] + 1) // 2
    parts = vbuf.shape[0]
    run_parts(_weight_grad_part, parts, x, g, dubuf, vbuf, vtbuf, gbuf, rbuf, top, left, TH,
              TW, nt, Tc, pset, kset)
    run_parts(_weight_grad_out, parts, dubuf, gw)
