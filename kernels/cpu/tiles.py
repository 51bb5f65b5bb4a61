"""The register-blocked convolution kernel over a flat source array ``src`` (see
:mod:`kernels.conv` for the layouts and the plan that feeds it).

Output ``tile`` covers P consecutive source elements starting at ``bases[tile]``; tap
``t`` adds ``off[t]``; block ``blk`` of FWD_COB output channels adds ``cbase[blk]`` (its
group's first input channel). The accumulators are explicit vectors
(:mod:`kernels.cpu._simd`): one per output channel of the block, P lanes each.
"""

import numpy as np
from numba import njit

from ._jit import U
from ._layout import ONE_PHASE, pad_channels, tap_major_blocks
from ._parts import parallel_and_serial_parts, run_parts, span
from ._simd import (
    P,
    add_scalar,
    fma,
    load,
    load_first,
    store,
    store_masked,
    store_rows,
    transpose_rows_plus,
    zeros,
)

FWD_COB = 8  # output channels per block: 8 accumulators + 1 source vector in registers


ALL = (1 << P) - 1  # a store mask with every lane


def _forward1(src, wt, tap, off, cbase, bases, tile_sets, tile_class, class_start, chan, b, y,
              ybase, seg_off, seg_mask, nseg, ystride_c, part, parts):
    """y[ybase[tile] + c*ystride_c + seg_off[k, s] + p] = b[c] + sum_t wt[blk, tap[t], co % B]
    * src[cbase[co // FWD_COB] + bases[tile] + off[t] + p] for the real channel
    c = chan[co] (-1: a padding row, not stored) and the lanes p in the segments
    s < nseg[k] of the tile's store map k = tile % len(nseg) (the maps repeat: per image,
    or for every tile): a segment is the lanes (bits of ``seg_mask[k, s]``) whose outputs
    are ``seg_off[k, s]`` after their lane, such as the lanes of one output row. The sum
    runs over the taps t of the tile's class, class_start[k] <= t < class_start[k + 1] for
    k = tile_class[tile] (the taps that do not read padding). ``tile_sets[g]`` lists the
    FWD_R tiles computed together (of one class; a set short of FWD_R repeats a tile,
    which then stores the same values twice).

    Loop nest: parts of (tile set, block of FWD_COB channels) > tap t > FWD_R * FWD_COB
    vector FMAs. This body is FWD_R = 1 (16 vector registers: AVX2); :func:`_forward3`
    is the same with three tiles.

    Optimizations:
    - FWD_COB x P accumulators stay in vector registers for all taps: each tap loads
      P source values once (one vector load) and does FWD_COB broadcast FMAs;
    - ``wt`` is block-major, then tap-major (:func:`kernels.cpu.conv.tap_major`), so a
      block's weights are one contiguous run; each class's taps are listed in ``tap``
      (not a copy of the weights per class);
    - consecutive tasks share a tile, so its source stays in cache for all blocks;
    - taps that would read only zero padding are skipped (a tile's class lists the
      rest): half the work of an input gradient computed as a full correlation;
    - unsigned indices (``tap`` and ``off`` are uint64, ``wt`` flat): Numba emits no
      negative-index wraparound code for them;
    - results go straight to ``y`` (NCHW) with the bias, one vector store a segment
      (masked unless it has every lane); lanes past a row or the batch are not stored;
    - the stores are spelled out in the kernel: a helper function taking arrays costs
      atomic reference-count updates and spills every accumulator at each call (1x1
      layers, few taps a tile, lost a third of their time to it)."""
    nblk = chan.shape[0] // FWD_COB
    T = U(wt.shape[0] // chan.shape[0])  # taps of a row (wt is blocks x taps x FWD_COB)
    nk = nseg.shape[0]
    lo, hi = span(nblk * tile_sets.shape[0], part, parts)
    for task in range(lo, hi):
        tile = tile_sets[task // nblk, 0]
        blk = task % nblk
        co0 = blk * FWD_COB
        a0 = U(cbase[blk] + bases[tile])
        wb0 = U(blk) * T * U(FWD_COB)
        cls = tile_class[tile]
        v0 = v1 = v2 = v3 = v4 = v5 = v6 = v7 = zeros(y)
        for t in range(U(class_start[cls]), U(class_start[cls + 1])):
            x = load(src, a0 + off[t])
            wb = wb0 + tap[t] * U(FWD_COB)
            v0 = fma(v0, wt[wb], x)
            v1 = fma(v1, wt[wb + U(1)], x)
            v2 = fma(v2, wt[wb + U(2)], x)
            v3 = fma(v3, wt[wb + U(3)], x)
            v4 = fma(v4, wt[wb + U(4)], x)
            v5 = fma(v5, wt[wb + U(5)], x)
            v6 = fma(v6, wt[wb + U(6)], x)
            v7 = fma(v7, wt[wb + U(7)], x)
        k = tile % nk
        for s in range(nseg[k]):
            o, m = ybase[tile] + seg_off[k, s], seg_mask[k, s]
            for j in range(FWD_COB):
                c = chan[co0 + j]
                if c < 0:
                    continue
                v = (v0 if j == 0 else v1 if j == 1 else v2 if j == 2 else v3 if j == 3 else
                     v4 if j == 4 else v5 if j == 5 else v6 if j == 6 else v7)
                v = add_scalar(v, b[c])
                if m == ALL:
                    store(y, U(o + c * ystride_c), v)
                else:
                    store_masked(y, U(o + c * ystride_c), v, m)


def _forward3(src, wt, tap, off, cbase, bases, tile_sets, tile_class, class_start, chan, b, y,
              ybase, seg_off, seg_mask, nseg, ystride_c, part, parts):
    """:func:`_forward1` with FWD_R = 3 tiles a set (32 vector registers: AVX-512): 24
    accumulators, and each tap's 8 weights, broadcast once, feed 3 tiles' FMAs (11 loads
    for 24 FMAs, where one tile takes 9 for 8)."""
    nblk = chan.shape[0] // FWD_COB
    T = U(wt.shape[0] // chan.shape[0])
    nk = nseg.shape[0]
    lo, hi = span(nblk * tile_sets.shape[0], part, parts)
    for task in range(lo, hi):
        g = task // nblk
        blk = task % nblk
        co0 = blk * FWD_COB
        t0, t1, t2 = tile_sets[g, 0], tile_sets[g, 1], tile_sets[g, 2]
        a0 = U(cbase[blk] + bases[t0])
        a1 = U(cbase[blk] + bases[t1])
        a2 = U(cbase[blk] + bases[t2])
        wb0 = U(blk) * T * U(FWD_COB)
        cls = tile_class[t0]
        c00 = c01 = c02 = c03 = c04 = c05 = c06 = c07 = zeros(y)
        c10 = c11 = c12 = c13 = c14 = c15 = c16 = c17 = zeros(y)
        c20 = c21 = c22 = c23 = c24 = c25 = c26 = c27 = zeros(y)
        for t in range(U(class_start[cls]), U(class_start[cls + 1])):
            o = off[t]
            x0, x1, x2 = load(src, a0 + o), load(src, a1 + o), load(src, a2 + o)
            wb = wb0 + tap[t] * U(FWD_COB)
            w = wt[wb]
            c00, c10, c20 = fma(c00, w, x0), fma(c10, w, x1), fma(c20, w, x2)
            w = wt[wb + U(1)]
            c01, c11, c21 = fma(c01, w, x0), fma(c11, w, x1), fma(c21, w, x2)
            w = wt[wb + U(2)]
            c02, c12, c22 = fma(c02, w, x0), fma(c12, w, x1), fma(c22, w, x2)
            w = wt[wb + U(3)]
            c03, c13, c23 = fma(c03, w, x0), fma(c13, w, x1), fma(c23, w, x2)
            w = wt[wb + U(4)]
            c04, c14, c24 = fma(c04, w, x0), fma(c14, w, x1), fma(c24, w, x2)
            w = wt[wb + U(5)]
            c05, c15, c25 = fma(c05, w, x0), fma(c15, w, x1), fma(c25, w, x2)
            w = wt[wb + U(6)]
            c06, c16, c26 = fma(c06, w, x0), fma(c16, w, x1), fma(c26, w, x2)
            w = wt[wb + U(7)]
            c07, c17, c27 = fma(c07, w, x0), fma(c17, w, x1), fma(c27, w, x2)
        for r in range(3):
            tile = tile_sets[g, r]
            if r == 0:
                v0, v1, v2, v3, v4, v5, v6, v7 = c00, c01, c02, c03, c04, c05, c06, c07
            elif r == 1:
                v0, v1, v2, v3, v4, v5, v6, v7 = c10, c11, c12, c13, c14, c15, c16, c17
            else:
                v0, v1, v2, v3, v4, v5, v6, v7 = c20, c21, c22, c23, c24, c25, c26, c27
            k = tile % nk
            for s in range(nseg[k]):
                o, m = ybase[tile] + seg_off[k, s], seg_mask[k, s]
                for j in range(FWD_COB):
                    c = chan[co0 + j]
                    if c < 0:
                        continue
                    v = (v0 if j == 0 else v1 if j == 1 else v2 if j == 2 else v3 if j == 3
                         else v4 if j == 4 else v5 if j == 5 else v6 if j == 6 else v7)
                    v = add_scalar(v, b[c])
                    if m == ALL:
                        store(y, U(o + c * ystride_c), v)
                    else:
                        store_masked(y, U(o + c * ystride_c), v, m)


FEW_COB, FEW_R = 4, 6  # :func:`_forward6x4`'s block of output channels, and tiles


def _forward6x4(src, wt, tap, off, cbase, bases, tile_sets, tile_class, class_start, chan, b,
                y, ybase, seg_off, seg_mask, nseg, ystride_c, part, parts):
    """:func:`_forward3` for at most FEW_COB output channels a group, in blocks of
    FEW_COB (``wt`` blocks x taps x FEW_COB), FEW_R tiles a set: 24 accumulators,
    and each tap's 6 source vectors and 4 broadcast weights feed 24 FMAs: for an RGB
    output layer and an RGB stem's input gradient, whose 3 channels :func:`_forward3`
    pads to 8 (5 of 8 FMAs wasted); see :func:`kernels.conv._few`."""
    nblk = chan.shape[0] // FEW_COB
    T = U(wt.shape[0] // chan.shape[0])
    nk = nseg.shape[0]
    lo, hi = span(nblk * tile_sets.shape[0], part, parts)
    for task in range(lo, hi):
        g = task // nblk
        blk = task % nblk
        co0 = blk * FEW_COB
        cb = cbase[blk]
        a0, a1 = U(cb + bases[tile_sets[g, 0]]), U(cb + bases[tile_sets[g, 1]])
        a2, a3 = U(cb + bases[tile_sets[g, 2]]), U(cb + bases[tile_sets[g, 3]])
        a4, a5 = U(cb + bases[tile_sets[g, 4]]), U(cb + bases[tile_sets[g, 5]])
        wb0 = U(blk) * T * U(FEW_COB)
        cls = tile_class[tile_sets[g, 0]]
        c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = zeros(y)
        c30 = c31 = c32 = c33 = c40 = c41 = c42 = c43 = c50 = c51 = c52 = c53 = zeros(y)
        for t in range(U(class_start[cls]), U(class_start[cls + 1])):
            o = off[t]
            x0, x1, x2 = load(src, a0 + o), load(src, a1 + o), load(src, a2 + o)
            x3, x4, x5 = load(src, a3 + o), load(src, a4 + o), load(src, a5 + o)
            wb = wb0 + tap[t] * U(FEW_COB)
            w = wt[wb]
            c00, c10, c20 = fma(c00, w, x0), fma(c10, w, x1), fma(c20, w, x2)
            c30, c40, c50 = fma(c30, w, x3), fma(c40, w, x4), fma(c50, w, x5)
            w = wt[wb + U(1)]
            c01, c11, c21 = fma(c01, w, x0), fma(c11, w, x1), fma(c21, w, x2)
            c31, c41, c51 = fma(c31, w, x3), fma(c41, w, x4), fma(c51, w, x5)
            w = wt[wb + U(2)]
            c02, c12, c22 = fma(c02, w, x0), fma(c12, w, x1), fma(c22, w, x2)
            c32, c42, c52 = fma(c32, w, x3), fma(c42, w, x4), fma(c52, w, x5)
            w = wt[wb + U(3)]
            c03, c13, c23 = fma(c03, w, x0), fma(c13, w, x1), fma(c23, w, x2)
            c33, c43, c53 = fma(c33, w, x3), fma(c43, w, x4), fma(c53, w, x5)
        for r in range(FEW_R):
            if r == 0:
                v0, v1, v2, v3 = c00, c01, c02, c03
            elif r == 1:
                v0, v1, v2, v3 = c10, c11, c12, c13
            elif r == 2:
                v0, v1, v2, v3 = c20, c21, c22, c23
            elif r == 3:
                v0, v1, v2, v3 = c30, c31, c32, c33
            elif r == 4:
                v0, v1, v2, v3 = c40, c41, c42, c43
            else:
                v0, v1, v2, v3 = c50, c51, c52, c53
            tile = tile_sets[g, r]
            k = tile % nk
            for s in range(nseg[k]):
                o, m = ybase[tile] + seg_off[k, s], seg_mask[k, s]
                for j in range(FEW_COB):
                    c = chan[co0 + j]
                    if c < 0:
                        continue
                    v = add_scalar(v0 if j == 0 else v1 if j == 1 else v2 if j == 2 else v3,
                                   b[c])
                    if m == ALL:
                        store(y, U(o + c * ystride_c), v)
                    else:
                        store_masked(y, U(o + c * ystride_c), v, m)


CL_C, CL_X = 4, 6  # channel vectors x output positions of the channels-as-lanes kernel
CLN_X = 12  # output positions of its narrow variant (one vector of P channels)
CLE_X = 8  # output positions of its exact variant (one position of 8 images)


def _channels_copy(x, srcs, top, left, Hq, Wq, Tc, pset, part, parts):
    """Part ``part``'s images of ``x`` (see :func:`_channels_share`) zero-padded into
    planes of ``Hq x Wq`` in ``srcs[part]``: a kernel of its own, launched just before
    the sums with the same parts, so that a layer that reads ``x`` itself does not compile
    it (2 s of LeNet's first call)."""
    N, C, H, W = x.shape
    Tp = pset.shape[0] - 1
    ip = part // Tc
    pad_channels(x.reshape(x.size), H, W, ip * N // Tp * C, (ip + 1) * N // Tp * C,
                 srcs[part], ONE_PHASE, top, left, 1, 1, Hq, Wq)


@njit(cache=True)
def _channels_share(x, srcs, Tc, copy, pset, ncb, part):
    """``(ip, cb0, cb1, n0, n1, sp)``: part ``part``'s share of the batch (its sets
    ``pset[ip]:pset[ip + 1]``, images ``n0:n1``), its blocks ``cb0:cb1``, and its source:
    its images padded and split into stride phases in ``srcs[part]``
    (:func:`_channels_copy`, with ``copy``), or ``x`` itself, flat."""
    N = x.shape[0]
    Tp = pset.shape[0] - 1
    ip, ic = part // Tc, part % Tc
    sp = srcs[part] if copy else x.reshape(x.size)
    return ip, ic * ncb // Tc, (ic + 1) * ncb // Tc, ip * N // Tp, (ip + 1) * N // Tp, sp


@njit(cache=True, _nrt=False)
def _channels_store(wp, out, y, yf, b, cb, nbg, B, X, groups, n0, n1, s0, pset_hi, pixy,
                    by_position):
    """Block ``cb``'s sums (``wp[out:]``, position-major: slot q's B channels at
    ``out + q*B``) into ``y`` plus the bias, P channels (a line of sums) at a time: 16
    positions x 16 channels transposed in registers (stored straight to ``y``, a plane
    apart a lane, a set's 384 lines were gone from cache by the time the next position's
    set came back to them: a fifth of a 7x7 layer's time; then a scalar store each:
    0.7-2.3 ms a call). Slot q of image ``n0 + n``'s output position p is ``n*qs_n +
    p*qs_p`` from the part's first (by image, or ``by_position``)."""
    Co = y.shape[1]
    OHW = y.shape[2] * y.shape[3]
    cog = Co // groups
    g = cb // nbg
    qs_n, qs_p = (1, n1 - n0) if by_position else (OHW, 1)
    for c0 in range(0, B, P):
        r0 = cb % nbg * B + c0  # the first of these channels' rows in the group
        c1 = g * cog + r0  # their first channel
        nc = min(P, cog - r0)  # the real ones (the rest pad the group's last block)
        if nc <= 0:
            continue
        if P == 16:
            bias = load_first(b, U(c1), nc)
            for n in range(n1 - n0):
                yn = (n0 + n) * Co + c1
                for p0 in range(0, OHW, 16):
                    m = min(16, OHW - p0)
                    v = transpose_rows_plus(wp, out + U((n * qs_n + p0 * qs_p) * B + c0),
                                            U(qs_p * B), 16, m, bias)
                    store_rows(yf, yn * OHW + p0, OHW, v, m, nc)
            continue
        for q in range(U(s0 * X), U(pset_hi * X)):
            at = out + (q - U(s0 * X)) * U(B) + U(c0)
            yq = U(pixy[q] + c1 * OHW)
            for j in range(nc):
                yf[yq + U(j * OHW)] = wp[at + U(j)] + b[c1 + j]


@njit(cache=True, _nrt=False)
def _sums_wide(sp, wp, gb, pixsrc, slot, exact, s0, s1, set_class, tap, off, class_start,
               out):
    """Sets ``s0:s1`` of CL_X positions for a block of CL_C*P channels: each tap, CL_C
    vector loads of weights (``wp``, tap-major), CL_X broadcast source values, CL_C*CL_X
    vector FMAs (10 loads for 24 FMAs); the sums to ``wp[out:]``, position-major (with
    ``exact``, slot ``q``'s to slot ``slot[q]``: see :func:`_sums_exact`)."""
    B = CL_C * P
    for s in range(s0, s1):
        q = U(s * CL_X)
        b0, b1, b2 = gb + U(pixsrc[q]), gb + U(pixsrc[q + 1]), gb + U(pixsrc[q + 2])
        b3, b4, b5 = gb + U(pixsrc[q + 3]), gb + U(pixsrc[q + 4]), gb + U(pixsrc[q + 5])
        a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zeros(wp)
        a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zeros(wp)
        a40 = a41 = a42 = a43 = a50 = a51 = a52 = a53 = zeros(wp)
        cls = set_class[s]
        for t in range(U(class_start[cls]), U(class_start[cls + 1])):
            o = off[t]
            wt = tap[t] * U(B)
            w0, w1 = load(wp, wt), load(wp, wt + U(P))
            w2, w3 = load(wp, wt + U(2 * P)), load(wp, wt + U(3 * P))
            v = sp[b0 + o]
            a00, a01, a02, a03 = fma(a00, v, w0), fma(a01, v, w1), fma(a02, v, w2), \
                fma(a03, v, w3)
            v = sp[b1 + o]
            a10, a11, a12, a13 = fma(a10, v, w0), fma(a11, v, w1), fma(a12, v, w2), \
                fma(a13, v, w3)
            v = sp[b2 + o]
            a20, a21, a22, a23 = fma(a20, v, w0), fma(a21, v, w1), fma(a22, v, w2), \
                fma(a23, v, w3)
            v = sp[b3 + o]
            a30, a31, a32, a33 = fma(a30, v, w0), fma(a31, v, w1), fma(a32, v, w2), \
                fma(a33, v, w3)
            v = sp[b4 + o]
            a40, a41, a42, a43 = fma(a40, v, w0), fma(a41, v, w1), fma(a42, v, w2), \
                fma(a43, v, w3)
            v = sp[b5 + o]
            a50, a51, a52, a53 = fma(a50, v, w0), fma(a51, v, w1), fma(a52, v, w2), \
                fma(a53, v, w3)
        for k in range(CL_X):
            v0, v1, v2, v3 = ((a00, a01, a02, a03) if k == 0 else (a10, a11, a12, a13)
                              if k == 1 else (a20, a21, a22, a23) if k == 2 else
                              (a30, a31, a32, a33) if k == 3 else (a40, a41, a42, a43)
                              if k == 4 else (a50, a51, a52, a53))
            at = out + U((slot[q + k] if exact else (s - s0) * CL_X + k) * B)
            store(wp, at, v0)
            store(wp, at + U(P), v1)
            store(wp, at + U(2 * P), v2)
            store(wp, at + U(3 * P), v3)


@njit(cache=True, _nrt=False)
def _sums_narrow(sp, wp, gb, pixsrc, s0, s1, set_class, tap, off, class_start, out):
    """:func:`_sums_wide` for a block of P channels: sets of CLN_X positions, each tap one
    vector load of weights and CLN_X broadcast source values for CLN_X vector FMAs
    (LeNet's 16-channel conv2 wastes no lane: 0.15 ms a forward at b64, where batch
    lanes and their two copies took 0.21)."""
    for s in range(s0, s1):
        q = U(s * CLN_X)
        b0, b1, b2 = gb + U(pixsrc[q]), gb + U(pixsrc[q + 1]), gb + U(pixsrc[q + 2])
        b3, b4, b5 = gb + U(pixsrc[q + 3]), gb + U(pixsrc[q + 4]), gb + U(pixsrc[q + 5])
        b6, b7, b8 = gb + U(pixsrc[q + 6]), gb + U(pixsrc[q + 7]), gb + U(pixsrc[q + 8])
        b9, b10, b11 = gb + U(pixsrc[q + 9]), gb + U(pixsrc[q + 10]), gb + U(pixsrc[q + 11])
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = zeros(wp)
        cls = set_class[s]
        for t in range(U(class_start[cls]), U(class_start[cls + 1])):
            o = off[t]
            w = load(wp, tap[t] * U(P))
            a0, a1, a2 = fma(a0, sp[b0 + o], w), fma(a1, sp[b1 + o], w), fma(a2, sp[b2 + o], w)
            a3, a4, a5 = fma(a3, sp[b3 + o], w), fma(a4, sp[b4 + o], w), fma(a5, sp[b5 + o], w)
            a6, a7, a8 = fma(a6, sp[b6 + o], w), fma(a7, sp[b7 + o], w), fma(a8, sp[b8 + o], w)
            a9, a10 = fma(a9, sp[b9 + o], w), fma(a10, sp[b10 + o], w)
            a11 = fma(a11, sp[b11 + o], w)
        at = out + U((s - s0) * CLN_X * P)
        store(wp, at, a0)
        store(wp, at + U(P), a1)
        store(wp, at + U(2 * P), a2)
        store(wp, at + U(3 * P), a3)
        store(wp, at + U(4 * P), a4)
        store(wp, at + U(5 * P), a5)
        store(wp, at + U(6 * P), a6)
        store(wp, at + U(7 * P), a7)
        store(wp, at + U(8 * P), a8)
        store(wp, at + U(9 * P), a9)
        store(wp, at + U(10 * P), a10)
        store(wp, at + U(11 * P), a11)


@njit(cache=True, _nrt=False)
def _sums_exact(sp, wp, gb, pixsrc, slot, s0, s1, set_class, tap, off, class_start, out):
    """:func:`_sums_narrow` for sets of CLE_X positions of one class (the plan sorts them
    by class), so each set computes exactly the taps that read its images and the sums
    read ``x`` itself (``pixsrc`` and ``off`` in its coordinates; a position's first
    element may lie before its plane, the sum never does): no padded copy. Slot ``q``'s
    sums go to ``out + slot[q]*P``, position-major by image."""
    for s in range(s0, s1):
        q = U(s * CLE_X)
        b0, b1, b2 = gb + U(pixsrc[q]), gb + U(pixsrc[q + 1]), gb + U(pixsrc[q + 2])
        b3, b4, b5 = gb + U(pixsrc[q + 3]), gb + U(pixsrc[q + 4]), gb + U(pixsrc[q + 5])
        b6, b7 = gb + U(pixsrc[q + 6]), gb + U(pixsrc[q + 7])
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zeros(wp)
        cls = set_class[s]
        for t in range(U(class_start[cls]), U(class_start[cls + 1])):
            o = off[t]
            w = load(wp, tap[t] * U(P))
            a0, a1 = fma(a0, sp[b0 + o], w), fma(a1, sp[b1 + o], w)
            a2, a3 = fma(a2, sp[b2 + o], w), fma(a3, sp[b3 + o], w)
            a4, a5 = fma(a4, sp[b4 + o], w), fma(a5, sp[b5 + o], w)
            a6, a7 = fma(a6, sp[b6 + o], w), fma(a7, sp[b7 + o], w)
        store(wp, out + U(slot[q] * P), a0)
        store(wp, out + U(slot[q + 1] * P), a1)
        store(wp, out + U(slot[q + 2] * P), a2)
        store(wp, out + U(slot[q + 3] * P), a3)
        store(wp, out + U(slot[q + 4] * P), a4)
        store(wp, out + U(slot[q + 5] * P), a5)
        store(wp, out + U(slot[q + 6] * P), a6)
        store(wp, out + U(slot[q + 7] * P), a7)


@njit(cache=True, _nrt=False)
def _forward_channels_part(x, w, b, y, srcs, wts, Hq, Wq, groups, Tc, copy, pixsrc, pixy, pset,
                           set_class, tap, off, class_start, flip, by_position, exact, part,
                           parts):
    """Part ``part`` of :func:`forward_channels` (of ``parts``, which the schedule fixes:
    ``(pset.size - 1) * Tc``), blocks of CL_C*P channels; with ``exact``, in exact sets
    of CL_X on ``x`` itself, ``pixy`` holding the slots."""
    Co, T = y.shape[1], w.size // y.shape[1]
    B, C = CL_C * P, x.shape[1]
    nbg = (Co // groups + B - 1) // B  # blocks a group
    plane = x.shape[2] * x.shape[3] if exact else Hq * Wq
    ip, cb0, cb1, n0, n1, sp = _channels_share(x, srcs, Tc, copy, pset, groups * nbg, part)
    wp, s0, s1 = wts[part], pset[ip], pset[ip + 1]
    out = U(T * B)  # a block's sums, position-major, past its weights
    # (views made once: a view a block cost two atomic reference-count updates, on
    # counts the other thread's views of the same arrays share)
    wf, yf = w.reshape(w.size), y.reshape(y.size)
    for cb in range(cb0, cb1):
        # the block's weights, tap-major, over the last block's: copied just before its
        # sums read them (all of a part's blocks first: 4% slower on one thread)
        tap_major_blocks(wf, T, Co // groups, nbg * B, cb, cb + 1, B, wp, flip,
                         w.shape[2] * w.shape[3])
        _sums_wide(sp, wp, U(cb // nbg * (C // groups) * plane), pixsrc, pixy, exact, s0, s1,
                   set_class, tap, off, class_start, out)
        _channels_store(wp, out, y, yf, b, cb, nbg, B, CL_X, groups, n0, n1, s0, s1, pixy,
                        by_position)


@njit(cache=True, _nrt=False)
def _forward_channels_narrow_part(x, w, b, y, srcs, wts, Hq, Wq, groups, Tc, copy, pixsrc,
                                  pixy, pset, set_class, tap, off, class_start, flip,
                                  by_position, exact, part, parts):
    """:func:`_forward_channels_part` with blocks of P channels (:func:`_sums_narrow`)."""
    Co, T = y.shape[1], w.size // y.shape[1]
    C = x.shape[1]
    nbg = (Co // groups + P - 1) // P
    plane = Hq * Wq
    ip, cb0, cb1, n0, n1, sp = _channels_share(x, srcs, Tc, copy, pset, groups * nbg, part)
    wp, s0, s1 = wts[part], pset[ip], pset[ip + 1]
    out = U(T * P)
    wf, yf = w.reshape(w.size), y.reshape(y.size)
    for cb in range(cb0, cb1):
        tap_major_blocks(wf, T, Co // groups, nbg * P, cb, cb + 1, P, wp, flip,
                         w.shape[2] * w.shape[3])
        _sums_narrow(sp, wp, U(cb // nbg * (C // groups) * plane), pixsrc, s0, s1, set_class,
                     tap, off, class_start, out)
        _channels_store(wp, out, y, yf, b, cb, nbg, P, CLN_X, groups, n0, n1, s0, s1, pixy,
                        by_position)


@njit(cache=True, _nrt=False)
def _forward_channels_exact_part(x, w, b, y, srcs, wts, Hq, Wq, groups, Tc, copy, pixsrc,
                                 pixy, pset, set_class, tap, off, class_start, flip,
                                 by_position, exact, part, parts):
    """:func:`_forward_channels_narrow_part` by :func:`_sums_exact`, on ``x`` itself;
    ``pixy`` holds the slots. A kernel of its own (the wide blocks' orders share one): in
    the narrow part, the second sums body would compile into LeNet's conv2 too."""
    Co, T = y.shape[1], w.size // y.shape[1]
    C = x.shape[1]
    nbg = (Co // groups + P - 1) // P
    ip, cb0, cb1, n0, n1, sp = _channels_share(x, srcs, Tc, False, pset, groups * nbg, part)
    plane = x.shape[2] * x.shape[3]
    wp, s0, s1 = wts[part], pset[ip], pset[ip + 1]
    out = U(T * P)
    wf, yf = w.reshape(w.size), y.reshape(y.size)
    for cb in range(cb0, cb1):
        tap_major_blocks(wf, T, Co // groups, nbg * P, cb, cb + 1, P, wp, flip,
                         w.shape[2] * w.shape[3])
        _sums_exact(sp, wp, U(cb // nbg * (C // groups) * plane), pixsrc, pixy, s0, s1,
                    set_class, tap, off, class_start, out)
        _channels_store(wp, out, y, yf, b, cb, nbg, P, CLE_X, groups, n0, n1, s0, s1, pixy,
                        by_position)


def forward_channels(x, w, b, y, srcs, wts, top, left, Hq, Wq, groups, Tc, copy, pixsrc, pixy,
                     pset, set_class, tap, off, class_start, flip, by_position, narrow,
                     exact=False):
    """y = conv(x, w) + b with the output channels as the lanes, for small feature maps: a
    7x7 map in tiles of P positions at its padded row pitch wastes 15 of 64 lanes, its
    channels none. ``w`` is ``(Co, Cg, KH, KW)``, or with ``flip`` the weights whose
    input gradient this is (see :func:`kernels.cpu._layout.flipped_tap_major_block`).
    The source is ``x`` zero-padded by ``top``/``left`` into planes of ``Hq x Wq``
    (:func:`kernels.cpu._layout.pad_plane_runs`; not split into stride phases: each lane
    broadcasts one element, so a stride is only in ``pixsrc`` and ``off``).

    The output positions come in sets of X (CL_X, or CLN_X when ``narrow``): slot ``k``
    of set ``s`` reads the source from ``pixsrc[s*X + k]`` (plus its group's first
    channel) and is stored at ``pixy[s*X + k]`` (plus its channel's plane); a set
    computes the taps of its class, ``tap[t]`` (an index into a row of ``w``) at source
    offset ``off[t]`` for ``class_start[c] <= t < class_start[c + 1]``, ``c =
    set_class[s]``: the taps that read padding for every position of the set are skipped
    (at 7x7 a set of one position's eight images skips 18% of the work).

    Work is split into parts, one a thread: part ``(ip, ic)`` computes sets
    ``pset[ip]:pset[ip + 1]`` (its share of the batch) for blocks ``ic``/Tc of B output
    channels (CL_C*P, or P when ``narrow``; each group's padded to whole blocks). Each
    part makes the copies it reads: (``copy``) its images' source in ``srcs[part]``
    (:func:`_channels_copy`, a launch with the same parts just before, so on the same
    threads; ``pixsrc`` counts from its first image; without ``copy`` the source is ``x``
    itself, at stride 1 without padding), then each of its blocks' weights, tap-major in
    ``wts[part]``, just before the block's sums. No thread then overwrites what another
    core has read: on a VM whose cores share no cache, a shared copy made by one thread
    and read by the other took longer than the 1x1 1024->256 layer's sums at 14x14.

    Loop nest: part (a thread, :func:`kernels.cpu._parts.run_parts`) > block > set >
    tap t > vector FMAs (:func:`_sums_wide`, :func:`_sums_narrow`); consecutive sets
    share a block's weights, in cache. A block's sums are stored position-major after its
    weights, then copied to ``y`` with the bias (:func:`_channels_store`); a part's last
    set repeats its last position. The two block widths are two kernels, so that a
    network compiles only those its layers use.

    With ``exact`` (no ``copy``) each set is CLE_X (CL_X for a wide block) (image,
    position) pairs of one class, ``pixy`` their slots, and the sums read ``x`` itself
    (:func:`_sums_exact`, :func:`_sums_wide` with ``exact``): no padding tap, no copy. ResNeXt's
    32-channel groups at 7x7 (batch 8, two threads): 0.94-0.99 ms a forward, against
    1.29-1.35 by the narrow sets of 12 (which computed
    13% more taps than their positions read, each set's 12 addresses more than the
    registers held, and copied the source first); its 16-channel groups at 14x14:
    1.03-1.08 against 1.31-1.42."""
    parts = (pset.shape[0] - 1) * Tc
    if copy:
        copy_parts(parts, x, srcs, top, left, Hq, Wq, Tc, pset)
    kernel = ((_forward_channels_exact_part if exact else _forward_channels_narrow_part)
              if narrow else _forward_channels_part)
    run_parts(kernel, parts, x, w, b, y, srcs, wts, Hq, Wq, groups, Tc, copy, pixsrc, pixy,
              pset, set_class, tap, off, class_start, flip, by_position, exact)




_copy_kernel = njit(cache=True, _nrt=False)(_channels_copy)


def copy_parts(parts, *args):
    """:func:`_channels_copy` of every part (one, on this thread)."""
    run_parts(_copy_kernel, parts, *args)


FWD_R = 3 if P == 16 else 1  # tiles a group: as many as the vector registers hold
forward, forward_serial = parallel_and_serial_parts(_forward3 if FWD_R == 3 else _forward1)
forward_few, forward_few_serial = parallel_and_serial_parts(_forward6x4)
_FORWARD = forward.kernel


def _forward_groups(x, wt, tap, off, bases, tile_sets, tile_class, class_start, chan, b, y,
                    ybase, seg_off, seg_mask, nseg, ystride_c, groups, used, top, left, sh, sw,
                    Hq, Wq, bufs, cbase, part, parts):
    """The wide-tile forward (:func:`_forward3`) of a grouped layer, a group of an image a
    task: the task pads the group's input channels of the image and splits them into
    stride phases (:func:`pad_channels`) in a buffer of its own, which stays in L2, and
    computes the group's blocks of output channels from it. Copied whole, a 32-group
    256-channel layer's 25.7 MB of phases went out to memory and back: half its time.

    ``bases`` are the tiles' offsets in an image's copy; ``tile_sets`` an image's sets,
    then the next image's; ``bufs[part]`` is the part's copy (its last P elements zero:
    the last tile's lanes read past its plane); ``cbase`` a group's blocks' offsets in
    it (zeros)."""
    N, C, H, W = x.shape
    Cg = C // groups
    T = wt.shape[0] // chan.shape[0]
    rows = chan.shape[0] // groups  # a group's output channel rows (whole blocks)
    sets = tile_sets.shape[0] // N
    xf, buf = x.reshape(x.size), bufs[part]
    lo, hi = span(N * groups, part, parts)
    for task in range(lo, hi):
        n, g = task // groups, task % groups
        pad_channels(xf, H, W, n * C + g * Cg, n * C + (g + 1) * Cg, buf, used, top, left,
                     sh, sw, Hq, Wq)
        _FORWARD(buf, wt[g * rows * T:(g + 1) * rows * T], tap, off, cbase, bases,
                 tile_sets[n * sets:(n + 1) * sets], tile_class, class_start,
                 chan[g * rows:(g + 1) * rows], b, y, ybase, seg_off, seg_mask, nseg, ystride_c,
                 0, 1)


forward_groups, forward_groups_serial = parallel_and_serial_parts(_forward_groups)


def tile_sets_of(tile_class, ntile: int, in_order: bool, r: int = FWD_R):
    """``tile_sets`` for the kernel: the tiles of each class (stably sorted by class), or
    each run of consecutive tiles of one class (``in_order``), cut into sets of ``r``; a
    class's or run's last set, if short, repeats its last tile. Sorting wastes no set on
    the few tiles of an edge row's class (runs of 1, 12 and 1 tiles an image wasted 29% of
    a 14x14 layer); keeping the order keeps a strided input gradient's phases, one class
    each, on the same source while it is in cache (sorted, the 7x7 stem's took 95 ms for
    81)."""
    if r == 1:
        return np.arange(ntile, dtype=np.int64)[:, None]
    order = (np.arange(ntile, dtype=np.int64) if in_order
             else np.argsort(tile_class, kind="stable").astype(np.int64))
    cls = tile_class[order]
    starts = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
    ends = np.r_[starts[1:], ntile]
    parts = []
    for a, e in zip(starts, ends):
        run = order[a:e]
        parts.append(np.concatenate([run, np.repeat(run[-1:], -run.size % r)]))
    return np.concatenate(parts).reshape(-1, r)
