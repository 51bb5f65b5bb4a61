"""Depthwise conv2d kernels (one input channel a group: MobileNet's and EfficientNet's 3x3
and 5x5 layers) on a plane-by-plane source, in explicit vectors (:mod:`._simd`).

The source is the zero-padded input split into stride phases
(:func:`kernels.cpu.conv.pad_phases`): each (image, channel) plane is ``plane`` elements,
and output ``(oh, ow)`` of a plane is position ``a = oh*Wq + ow`` of the phase layout, so
tap ``t`` reads ``src[plane_base + a + off[t]]`` at any stride and dilation, and P
consecutive positions are one vector load. A plane's outputs are ``ntile`` tiles of P
positions; the ``Wq - OW`` positions past each row are computed and not stored. Tile k's
store map (``seg_off``, ``seg_mask``, ``nseg``; see :func:`kernels.conv._lane_map`) is the
same in every plane.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import U, parallel_and_serial
from ._simd import P, add_scalar, fma, load, load_masked, store, store_masked, total, zeros

ALL = (1 << P) - 1
DW_R = 4  # tiles a task computes together: 4 accumulators, 4 loads and a broadcast a tap


def _forward(src, w, b, y, plane, off, cog, ntile, seg_off, seg_mask, nseg):
    """y[n, co] (flat, ``y.shape = (N, Co, OH*OW)``) = b[co] + sum_t w[co, t] *
    src[(n*C + co // cog)*plane + a + off[t]] for the outputs a of the plane's tiles.

    Loop nest: prange (n, co) > runs of DW_R tiles > tap t > DW_R vector FMAs.

    Optimizations:
    - one task a plane: its source (a few KB) stays in L1 for every tap;
    - DW_R tiles share each tap's broadcast weight;
    - stores by segments (one masked vector store per output row a tile touches), no
      copy out of the phase layout;
    - the tiles past the last (a run is always DW_R) read the ``DW_R*P`` spare elements
      after ``src``'s last plane and store nothing."""
    N, Co, OHW = y.shape
    C = Co // cog
    T = off.shape[0]
    yf = y.reshape(N * Co * OHW)
    for task in prange(N * Co):
        n, co = task // Co, task % Co
        s0 = U((n * C + co // cog) * plane)
        y0 = task * OHW
        bias = b[co]
        for k0 in range(0, ntile, DW_R):
            a = s0 + U(k0 * P)
            v0 = v1 = v2 = v3 = zeros(yf)
            for t in range(T):
                wt = w[co, t]
                o = a + off[t]
                v0 = fma(v0, wt, load(src, o))
                v1 = fma(v1, wt, load(src, o + U(P)))
                v2 = fma(v2, wt, load(src, o + U(2 * P)))
                v3 = fma(v3, wt, load(src, o + U(3 * P)))
            for r in range(min(DW_R, ntile - k0)):
                v = add_scalar(v0 if r == 0 else v1 if r == 1 else v2 if r == 2 else v3, bias)
                k = k0 + r
                for s in range(nseg[k]):
                    m = seg_mask[k, s]
                    if m == ALL:
                        store(yf, U(y0 + seg_off[k, s]), v)
                    else:
                        store_masked(yf, U(y0 + seg_off[k, s]), v, m)


def _weight_grad(src, g, gw, plane, off, cog, ntile, seg_off, seg_mask, nseg):
    """gw[co, t] = sum over n and the plane's outputs a of g[n, co, a] * src[(n*C + co //
    cog)*plane + a + off[t]], in float64 (``g`` flat NCHW, ``g.shape = (N, Co, OH*OW)``).

    Loop nest: prange co > n > (the plane's grad_out into phase-layout lanes, zeros past
    each row) > tap t > tiles, 4 vector FMAs at a time.

    Optimizations:
    - grad_out is gathered into the phase layout once per plane (masked loads by the
      tiles' store maps), into a buffer of the task's own; every tap then sweeps it;
    - a task owns grad_w[co] (no shared +=); each plane's float32 sums are added into a
      float64 total."""
    N, Co, OHW = g.shape
    C = Co // cog
    T = off.shape[0]
    gf = g.reshape(N * Co * OHW)
    L = ntile * P
    for co in prange(Co):
        buf = np.empty(L + 3 * P, dtype=g.dtype)
        for i in range(L, L + 3 * P):
            buf[i] = 0
        acc = np.zeros(T, dtype=np.float64)
        for n in range(N):
            g0 = (n * Co + co) * OHW
            for k in range(ntile):
                v = zeros(buf)
                for s in range(nseg[k]):
                    v = load_masked(gf, U(g0 + seg_off[k, s]), seg_mask[k, s], v)
                store(buf, U(k * P), v)
            s0 = U((n * C + co // cog) * plane)
            for t in range(T):
                a = s0 + off[t]
                d0 = d1 = d2 = d3 = zeros(buf)
                for i in range(U(0), U(L), U(4 * P)):
                    d0 = fma(d0, load(buf, i), load(src, a + i))
                    d1 = fma(d1, load(buf, i + U(P)), load(src, a + i + U(P)))
                    d2 = fma(d2, load(buf, i + U(2 * P)), load(src, a + i + U(2 * P)))
                    d3 = fma(d3, load(buf, i + U(3 * P)), load(src, a + i + U(3 * P)))
                acc[t] += total(d0) + total(d1) + total(d2) + total(d3)
        for t in range(T):
            gw[co, t] = acc[t]


forward, forward_serial = parallel_and_serial(_forward)
weight_grad, weight_grad_serial = parallel_and_serial(_weight_grad)
