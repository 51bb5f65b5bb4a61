"""The weight gradient of a 1x1 stride-1 convolution as one matrix product,
``grad_w[k, c] = sum_p g[k, p] * x[c, p]`` over every image's positions ``p``, by
:func:`kernels.cpu._outer.outer_sums`: the input transposed a chunk of positions at a time
(channels as the lanes) and grad_out's rows read in place, each value one broadcast.

The dot products of whole rows (:func:`kernels.cpu.conv._weight_grad_rows`) load 7
vectors for 12 FMAs from rows that leave L1: a 64 -> 256 layer's at 56x56 ran at 44% of
the cores' peak, 7.9-10.4 ms, against 4.3 ms here. It is used on large planes (each
chunk's sums are read and written back after it, and a chunk is at most a plane); the
caller swaps the input and grad_out where grad_out is the smaller (the transposed copy is
the input's).
"""

from numba import njit

from ._outer import WC, WK, outer_sums, transpose_chunk
from ._parts import run_parts, span


@njit(cache=True, _nrt=False)
def _weight_grad_part(x, g, dubuf, vtbuf, gbuf, nt, part, parts):
    """This part's share of (image, chunk of ``nt`` positions) tasks, summed into its own
    ``dubuf[part]`` (``Kw x Cp``): the chunk's input transposed into ``vtbuf[part]``, then
    its sums with grad_out's rows in place, the last block of fewer than WK rows from a
    zero-padded copy in ``gbuf[part]``."""
    N, C = x.shape[0], x.shape[1]
    HW = x.shape[2] * x.shape[3]
    K = g.shape[1]
    Cp = (C + WC - 1) // WC * WC
    Kf = K // WK * WK  # the rows in whole blocks
    dU, VT, Gl = dubuf[part], vtbuf[part], gbuf[part]
    dU[:] = 0
    Gl[:] = 0
    xf, gf = x.reshape(x.size), g.reshape(g.size)
    nch = (HW + nt - 1) // nt
    lo, hi = span(N * nch, part, parts)
    for task in range(lo, hi):
        n, p0 = task // nch, task % nch * nt
        cnt = min(nt, HW - p0)
        transpose_chunk(xf[n * C * HW + p0:], VT, C, Cp, HW, cnt, 1)
        outer_sums(VT, gf[n * K * HW + p0:], dU, Cp, Kf, HW, cnt, 0, 1)
        if Kf < K:
            for k in range(Kf, K):
                a = (n * K + k) * HW + p0
                for j in range(cnt):  # (a slice copy needs reference counts)
                    Gl[(k - Kf) * nt + j] = gf[a + j]
            outer_sums(VT, Gl, dU, Cp, WK, nt, cnt, Kf, 1)


def weight_grad(x, g, dubuf, vtbuf, gbuf, nt):
    """Each part's sums ``dubuf[part]`` of grad_w for the input ``x`` (N, C, H, W) and
    grad_out ``g`` (N, K, H, W), in chunks of ``nt`` positions (a multiple of 16); the
    caller adds the parts."""
    run_parts(_weight_grad_part, dubuf.shape[0], x, g, dubuf, vtbuf, gbuf, nt)
