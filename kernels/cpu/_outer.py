"""Sums of outer products, ``dU[k][c] += sum_t G[k][t] * VT[t][c]``, for a weight
gradient: the sum over positions ``t`` of grad_out's values times the inputs'. Winograd's
weight gradient (:mod:`kernels.cpu.winograd`) runs one per transform position, over
tiles; a 1x1 convolution's (:mod:`kernels.cpu.pointwise`) one over the input's positions.
The inputs are transposed so that channels are the vector lanes (4 vectors, WC channels,
a position), and each of WK rows of ``G`` is one broadcast: 10 loads feed 24 FMAs.
"""

from numba import njit

from ._jit import U
from ._simd import P, add, fma, load, store, store_rows, transpose_rows, zeros

WK = 6  # rows of G (output channels) a block of the sums: WK x 4 accumulator vectors
WC = 4 * P  # and channels a block (4 vectors)


@njit(cache=True)
def transpose_chunk(V, VT, C, Cp, nt, tcount, nx):
    """``VT[xi][t][c] = V[xi][c][t]`` for each of the ``nx`` positions ``xi``, the first
    ``tcount`` columns ``t`` (``V``'s rows ``nt`` apart; nothing past them read) and ``c <
    Cp`` (zeros from C): :func:`outer_sums` takes 4 vectors of channels a column. 16 x 16
    blocks, transposed in registers (P == 16 only)."""
    vxs, txs = V.shape[0] // nx, VT.shape[0] // nx
    for xi in range(nx):
        for c0 in range(0, Cp, P):
            rows = max(0, min(P, C - c0))
            a = U(xi * vxs + c0 * nt) if rows > 0 else U(0)
            for t0 in range(0, tcount, P):
                m = min(P, tcount - t0)
                store_rows(VT, xi * txs + t0 * Cp + c0, Cp,
                           transpose_rows(V, a + U(t0), U(nt), m, rows), 16, m)


@njit(cache=True)
def outer_sums(VT, G, dU, Cp, Kw, nt, tcount, k0, nx):
    """``dU[xi][k0 + k][c] += sum_t G[xi][k][t] * VT[xi][t][c]`` for each of the ``nx``
    positions ``xi``, over the first ``tcount`` columns ``t`` (``G``'s rows ``nt`` apart),
    for ``k < Kw`` (blocks of WK) and ``c < Cp`` (blocks of WC).

    Loop nest: xi > block of WK rows > block of WC channels > column > 4 x WK vector FMAs:
    each column loads 4 vectors of channels and broadcasts WK values of ``G`` (10 loads a
    24 FMAs); the sums stay in registers for the whole chunk, then add into ``dU``."""
    vxs, gxs, uxs = VT.shape[0] // nx, G.shape[0] // nx, dU.shape[0] // nx
    for xi in range(nx):
        for kb in range(Kw // WK):
            gb = U(xi * gxs + kb * WK * nt)
            for cb in range(Cp // WC):
                vb = U(xi * vxs + cb * WC)
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = c0 = c1 = c2 = c3 = zeros(dU)
                d0 = d1 = d2 = d3 = e0 = e1 = e2 = e3 = f0 = f1 = f2 = f3 = zeros(dU)
                for t in range(tcount):
                    v = vb + U(t) * U(Cp)
                    x0 = load(VT, v)
                    x1 = load(VT, v + U(P))
                    x2 = load(VT, v + U(2 * P))
                    x3 = load(VT, v + U(3 * P))
                    q = gb + U(t)
                    w = G[q]
                    a0, a1, a2, a3 = fma(a0, w, x0), fma(a1, w, x1), fma(a2, w, x2), fma(a3, w, x3)
                    w = G[q + U(nt)]
                    b0, b1, b2, b3 = fma(b0, w, x0), fma(b1, w, x1), fma(b2, w, x2), fma(b3, w, x3)
                    w = G[q + U(2 * nt)]
                    c0, c1, c2, c3 = fma(c0, w, x0), fma(c1, w, x1), fma(c2, w, x2), fma(c3, w, x3)
                    w = G[q + U(3 * nt)]
                    d0, d1, d2, d3 = fma(d0, w, x0), fma(d1, w, x1), fma(d2, w, x2), fma(d3, w, x3)
                    w = G[q + U(4 * nt)]
                    e0, e1, e2, e3 = fma(e0, w, x0), fma(e1, w, x1), fma(e2, w, x2), fma(e3, w, x3)
                    w = G[q + U(5 * nt)]
                    f0, f1, f2, f3 = fma(f0, w, x0), fma(f1, w, x1), fma(f2, w, x2), fma(f3, w, x3)
                o = U(xi * uxs + (k0 + kb * WK) * Cp + cb * WC)
                for j in range(WK):
                    r = o + U(j * Cp)
                    s0 = (a0 if j == 0 else b0 if j == 1 else c0 if j == 2 else d0 if j == 3
                          else e0 if j == 4 else f0)
                    s1 = (a1 if j == 0 else b1 if j == 1 else c1 if j == 2 else d1 if j == 3
                          else e1 if j == 4 else f1)
                    s2 = (a2 if j == 0 else b2 if j == 1 else c2 if j == 2 else d2 if j == 3
                          else e2 if j == 4 else f2)
                    s3 = (a3 if j == 0 else b3 if j == 1 else c3 if j == 2 else d3 if j == 3
                          else e3 if j == 4 else f3)
                    store(dU, r, add(load(dU, r), s0))
                    store(dU, r + U(P), add(load(dU, r + U(P)), s1))
                    store(dU, r + U(2 * P), add(load(dU, r + U(2 * P)), s2))
                    store(dU, r + U(3 * P), add(load(dU, r + U(3 * P)), s3))
