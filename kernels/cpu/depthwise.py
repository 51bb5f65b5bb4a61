"""Depthwise conv2d kernels (one input channel a group: MobileNet's and EfficientNet's 3x3
and 5x5 layers, and a grayscale input) plane by plane, in explicit vectors (:mod:`._simd`).

Each task copies its input plane into its part's buffer (the caller's: the kernels
allocate nothing, see :data:`kernels.cpu._jit.WITH_NRT`), zero-padded and split into
stride phases as :func:`kernels.cpu.conv.pad_phases` lays it out (``plane`` elements,
phases of ``Hq x Wq``). Output ``(oh, ow)`` is position ``a = oh*Wq + ow`` of that layout,
so tap ``t`` reads ``buf[a + off[t]]`` at any stride and dilation, and P consecutive
outputs are one vector load. A plane's outputs are ``ntile`` tiles of P positions; the
``Wq - OW`` positions past each row are computed and not stored. Tile k's store map
(``seg_off``, ``seg_mask``, ``nseg``; see :func:`kernels.conv._lane_map`) is the same in
every plane. The buffer stays in L1 or L2: a separate padding pass over the whole input
took 60% of a layer's time (the layers are memory-bound). Small planes at stride 1 that
keep their width are read straight from ``x`` by masked loads (:func:`_forward_masked`).
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit

from ._jit import WITH_NRT, U, empty_lines, renamed_copy
from ._parts import parallel_and_serial_parts, span
from ._simd import (
    P,
    add,
    add_scalar,
    copy_even,
    copy_run,
    deinterleave_run,
    fma,
    interleave_high,
    interleave_low,
    load,
    load_first,
    load_masked,
    store,
    store_columns,
    store_first,
    store_masked,
    store_rows,
    total,
    transpose_rows,
    zeros,
)

ALL = (1 << P) - 1
DW_R = 4  # tiles computed together: 4 accumulators, 4 loads and a broadcast a tap
DW_MASKED_V = 4  # vectors of a small plane computed together (:func:`_forward_masked`)
DW_MASKED_FLUSH = 8  # images whose float32 sums the masked weight gradient adds at once


@njit(cache=True, _nrt=False)
def _fill_plane(xp, buf, top, left, sh, sw, Hq, Wq):
    """buf[phase, i, j] = xp[i*sh + ph - top, j*sw + pw - left] for every input element
    (the padding positions of ``buf`` are left as they are: zeros, written once).
    NOTE: each phase's column range is worked out once a plane, not once a row: the
    floor divisions took most of a 7x7 plane's time."""
    H, W = xp.shape
    plane1 = Hq * Wq
    if sh == 1 and sw == 1:
        for h in range(H):
            copy_run(xp[h], 0, buf, (h + top) * Wq + left, W)
        return
    if sw == 2:  # both column phases of a row at once
        for h in range(H):
            hp = h + top
            base = U((hp % sh) * sw * plane1 + (hp // sh) * Wq)
            deinterleave_run(xp[h], 0, buf, base + U(left % 2 * plane1 + left // 2),
                             base + U((left + 1) % 2 * plane1 + (left + 1) // 2), W)
        return
    for pw in range(sw):
        # the columns j of phase pw that hold input columns j*sw + pw - left in [0, W)
        j0 = max(0, -((pw - left) // sw))
        j1 = min(Wq, -((pw - left - W) // sw))
        c0 = j0 * sw + pw - left
        for h in range(H):
            hp = h + top
            base = U((hp % sh) * sw * plane1 + (hp // sh) * Wq + pw * plane1)
            xr = xp[h]
            if sw == 2:
                copy_even(xr, c0, buf, base + U(j0), j1 - j0)
            else:
                for j in range(j0, j1):
                    buf[base + U(j)] = xr[U(c0 + (j - j0) * sw)]


def _forward(x, w, b, y, ystride, yoff, top, left, sh, sw, Hq, Wq, off, wtap, group_start,
             group_stride, cog, ntile, seg_off, seg_mask, nseg, nchunk, bufs, part, parts):
    """Plane (n, co) of ``y`` (flat: it starts at ``(n*Co + co)*ystride + yoff``) =
    b[co] + sum_t w[co, wtap[t]] * the plane of ``x[n, co // cog]`` padded and
    phase-split, at ``a + off[t]``, for the outputs a of the plane's tiles, once for
    each group of taps ``group_start[j] <= t < group_start[j + 1]``, group j's outputs
    ``group_stride`` further on (a forward is one group; a strided input gradient one a
    stride phase, the taps that land on it: an empty group stores b[co]).

    Loop nest: parts of chunk of (n, co) > (n, co) > group > runs of DW_R tiles > tap t >
    DW_R vector FMAs.

    Optimizations:
    - a chunk of planes a task, one buffer a chunk, zeroed once: each plane then writes
      only its input elements, once for all its tap groups (and not again for the next
      of its ``cog`` output channels);
    - DW_R tiles share each tap's broadcast weight;
    - stores by segments (one masked vector store per output row a tile touches), with
      no copy out of the phase layout;
    - the tiles past the last (a run is always DW_R) read the buffer's DW_R*P spare
      zeros and store nothing."""
    N, Co = x.shape[0], w.shape[0]
    per = -(-(N * Co) // nchunk)
    lo, hi = span(nchunk, part, parts)
    for chunk in range(lo, hi):
        buf = bufs[part]  # (sh*sw*Hq*Wq + DW_R*P at least)
        buf[:] = 0
        last = -1
        for task in range(chunk * per, min(N * Co, (chunk + 1) * per)):
            n, co = task // Co, task % Co
            if n * Co + co // cog != last:
                _fill_plane(x[n, co // cog], buf, top, left, sh, sw, Hq, Wq)
                last = n * Co + co // cog
            bias = b[co]
            for j in range(group_start.shape[0] - 1):
                y0 = task * ystride + yoff + j * group_stride
                for k0 in range(0, ntile, DW_R):
                    a = U(k0 * P)
                    v0 = v1 = v2 = v3 = zeros(y)
                    for t in range(group_start[j], group_start[j + 1]):
                        wt = w[co, wtap[t]]
                        o = a + off[t]
                        v0 = fma(v0, wt, load(buf, o))
                        v1 = fma(v1, wt, load(buf, o + U(P)))
                        v2 = fma(v2, wt, load(buf, o + U(2 * P)))
                        v3 = fma(v3, wt, load(buf, o + U(3 * P)))
                    for r in range(min(DW_R, ntile - k0)):
                        v = add_scalar(v0 if r == 0 else v1 if r == 1 else v2 if r == 2
                                       else v3, bias)
                        k = k0 + r
                        for s in range(nseg[k]):
                            m = seg_mask[k, s]
                            if m == ALL:
                                store(y, U(y0 + seg_off[k, s]), v)
                            else:
                                store_masked(y, U(y0 + seg_off[k, s]), v, m)


DW_ROWS = 4  # output rows a band of :func:`_forward_rows`: 4 accumulators a tile
# The kernel size and stride of a copy of :func:`_forward_rows` made for them (a
# :func:`kernels.cpu._jit.renamed_copy`); (0, 0, 0) in the general one, which takes them
# as they come.
ROWS_KERNEL = (0, 0, 0)


def _forward_rows(x, w, b, y, top, left, Hq, Wq, KH, KW, S, cog, nchunk, bufs, part, parts):
    """Plane (n, co) of ``y`` = b[co] + the undilated correlation at stride ``S`` (1, or 2
    in both directions) of the plane of ``x[n, co // cog]`` (padded and split into
    stride phases of ``Hq x Wq``, as :func:`_fill_plane` lays it out) with ``w[co]``
    (``KH*KW`` taps), in bands of DW_ROWS output rows and chunks of P columns.

    Tap (kh, kw) of output row r reads row ``r + kh // S`` of phase ``(kh % S, kw % S)``,
    at column offset ``kw // S``. So each row of a phase in a band's window feeds every
    output row of the band that it is in the window of: one vector load a tap column,
    each feeding up to DW_ROWS FMAs (a 5x5 layer's band loads 40 vectors for 100 FMAs at
    stride 1, 55 at stride 2, where :func:`_forward`, a load a tap a tile, loads 100 and
    25 weights for 100).

    Two tiles (a band's chunk of columns) at a time, the plane's last maybe twice: each
    tap's weight feeds both, and 8 accumulators hide the FMA latency (a 5x5 layer at
    28x28: 1.6 -> 1.4 ms on one thread; a 3x3 one at 56x56 went from 3.3 ms by
    :func:`_forward`'s tiles to 2.9).

    The 3x3 and 5x5 layers run copies with the kernel size and stride constants
    (:func:`kernels.cpu._jit.renamed_copy`): with them only known at run time, each
    load's four row tests and weight indices stayed in the loop (on one thread, 3x3 at
    56x56: 2.6-2.7 -> 1.8-1.9 ms; 5x5, 240 channels at 28x28: 1.27-1.28 -> 1.05-1.08).

    Loop nest: parts of chunk of (n, co) > (n, co) > pair of tiles > row phase > phase row
    > tap column > the band's output rows that use it."""
    N, Co = x.shape[0], w.shape[0]
    if ROWS_KERNEL[0]:
        KH, KW, S = ROWS_KERNEL  # constants: the tap loops unroll, their branches fold
    OH, OW = y.shape[2], y.shape[3]
    yf = y.reshape(y.size)
    per = -(-(N * Co) // nchunk)
    ncol = -(-OW // P)
    ntile = -(-OH // DW_ROWS) * ncol  # bands of DW_ROWS output rows x chunks of P columns
    lo, hi = span(nchunk, part, parts)
    for chunk in range(lo, hi):
        # rows past the last phase, read by the last band's unstored rows, and a chunk's
        # lanes past the last row (the unstored rows of another phase read its rows)
        buf = bufs[part]  # (rows_buffer() at least)
        buf[:] = 0
        last = -1
        for task in range(chunk * per, min(N * Co, (chunk + 1) * per)):
            n, co = task // Co, task % Co
            if n * Co + co // cog != last:
                _fill_plane(x[n, co // cog], buf, top, left, S, S, Hq, Wq)
                last = n * Co + co // cog
            wr, bias = w[co], b[co]
            y0 = U(task * OH * OW)
            for k in range(0, ntile, 2):  # two tiles at a time, the last maybe twice
                k1 = min(k + 1, ntile - 1)
                oh0, c0 = k // ncol * DW_ROWS, k % ncol * P
                oh1, c1 = k1 // ncol * DW_ROWS, k1 % ncol * P
                a0, a1 = U(oh0 * Wq + c0), U(oh1 * Wq + c1)
                v0 = v1 = v2 = v3 = u0 = u1 = u2 = u3 = zeros(yf)
                for ph in range(S):
                    J = (KH - 1 - ph) // S  # kernel rows kh = S*j + ph, j <= J
                    for i in range(DW_ROWS + J):  # phase row i: output row r's j = i - r
                        for kw in range(KW):
                            o = U(((ph * S + kw % S) * Hq + i) * Wq + kw // S)
                            v, u = load(buf, a0 + o), load(buf, a1 + o)
                            if i <= J:
                                wt = wr[U((S * i + ph) * KW + kw)]
                                v0, u0 = fma(v0, wt, v), fma(u0, wt, u)
                            if 1 <= i <= J + 1:
                                wt = wr[U((S * (i - 1) + ph) * KW + kw)]
                                v1, u1 = fma(v1, wt, v), fma(u1, wt, u)
                            if 2 <= i <= J + 2:
                                wt = wr[U((S * (i - 2) + ph) * KW + kw)]
                                v2, u2 = fma(v2, wt, v), fma(u2, wt, u)
                            if 3 <= i <= J + 3:
                                wt = wr[U((S * (i - 3) + ph) * KW + kw)]
                                v3, u3 = fma(v3, wt, v), fma(u3, wt, u)
                m0, m1 = min(P, OW - c0), min(P, OW - c1)
                for r in range(min(DW_ROWS, OH - oh0)):
                    v = add_scalar(v0 if r == 0 else v1 if r == 1 else v2 if r == 2 else v3,
                                   bias)
                    store_first(yf, y0 + U((oh0 + r) * OW + c0), v, m0)
                for r in range(min(DW_ROWS, OH - oh1)):
                    u = add_scalar(u0 if r == 0 else u1 if r == 1 else u2 if r == 2 else u3,
                                   bias)
                    store_first(yf, y0 + U((oh1 + r) * OW + c1), u, m1)


def _input_grad2(g, w, gx, top, left, Rt, Rl, Gh, Gq, nchunk, bufs, part, parts):
    """grad_x of a depthwise layer at stride 2 (one output channel a group, undilated),
    row by row of grad_x, each row as its even and odd columns.

    Column ``j = 2u + q`` of grad_x row ``i`` takes the taps ``kh = i + top (mod 2)`` and
    ``kw = q + left (mod 2)``, grad_out at ``((i + top - kh) / 2, u + (q + left - kw) / 2)``:
    for P consecutive ``u`` each tap is one vector load of grad_out's row and one FMA,
    and the even and odd sums, interleaved, are 2*P contiguous columns of grad_x. grad_out's
    plane is copied into a zero-padded buffer (``Gh x Gq``, its first row and column at
    ``(Rt, Rl)``) so that no tap tests its bounds.

    The stride phases' way (:class:`kernels.conv._DepthwiseInputGrad`: a depthwise forward
    a phase into a buffer, then the phases gathered into grad_x) read and wrote grad_x's
    size twice more: 2.7-3.0 ms of a 3x3 layer's 4.2-4.5 ms backward, 144 channels at
    56x56 (8M multiply-adds).

    Loop nest: parts of chunk of (n, c) > (n, c) > row i > two chunks of P u's > tap row >
    column parity > tap column."""
    N, C, OH, OW = g.shape
    H, W = gx.shape[2], gx.shape[3]
    KH, KW = w.shape[1], w.shape[2]
    per = -(-(N * C) // nchunk)
    nu = (W + 1) // 2
    lo, hi = span(nchunk, part, parts)
    for chunk in range(lo, hi):
        buf = bufs[part]  # (Gh*Gq + 2*P at least)
        buf[:] = 0
        for task in range(chunk * per, min(N * C, (chunk + 1) * per)):
            n, c = task // C, task % C
            for oh in range(OH):
                copy_run(g[n, c, oh], 0, buf, (oh + Rt) * Gq + Rl, OW)
            wc = w[c]
            gxr = gx[n, c]
            for i in range(H):
                kh0 = (i + top) % 2
                for u0 in range(0, nu, 2 * P):
                    e0 = o0 = e1 = o1 = zeros(buf)
                    for kh in range(kh0, KH, 2):
                        rb = (i + top - kh) // 2 + Rt
                        for q in range(2):
                            for kw in range((q + left) % 2, KW, 2):
                                a = U(rb * Gq + Rl + u0 + (q + left - kw) // 2)
                                wt = wc[kh, kw]
                                if q == 0:
                                    e0 = fma(e0, wt, load(buf, a))
                                    e1 = fma(e1, wt, load(buf, a + U(P)))
                                else:
                                    o0 = fma(o0, wt, load(buf, a))
                                    o1 = fma(o1, wt, load(buf, a + U(P)))
                    j0 = 2 * u0
                    row = gxr[i]
                    store_first(row, U(j0), interleave_low(e0, o0), min(P, W - j0))
                    if W - j0 > P:
                        store_first(row, U(j0 + P), interleave_high(e0, o0),
                                    min(P, W - j0 - P))
                    if W - j0 > 2 * P:
                        store_first(row, U(j0 + 2 * P), interleave_low(e1, o1),
                                    min(P, W - j0 - 2 * P))
                    if W - j0 > 3 * P:
                        store_first(row, U(j0 + 3 * P), interleave_high(e1, o1),
                                    min(P, W - j0 - 3 * P))


@njit(cache=True, inline="always")
def _input_places(H, W, top, left, Hp, Wp):
    """Each input position's place in a padded plane of 16-channel vectors (``Hp x Wp``),
    for :func:`kernels.cpu._simd.store_columns`: worked out once, not with two divisions
    a position a task (a tenth of a 7x7 depthwise layer's time). The rows and columns that
    no tap reads, and 16 places past the plane (a last, partial transpose's), go to a
    spare vector past the plane's end."""
    spare = Hp * Wp * 16
    xpos = np.full(H * W + 16, spare, dtype=np.int64)
    for q in range(H * W):
        hp, wp = q // W + top, q % W + left
        if hp < Hp and wp < Wp:
            xpos[q] = (hp * Wp + wp) * 16
    return xpos


@njit(cache=True, inline="always")
def _tap_offsets(KH, KW, dh, dw, Wp):
    """Each tap's offset in a channels-as-lanes buffer of row pitch ``Wp``: one loop over
    the taps, reading these, where two nested loops over a 5x5 kernel's rows and columns
    ran 4 columns unrolled, then 1 (the sums of a 7x7 plane: 0.34 against 0.74 ms)."""
    offs = np.empty(KH * KW, dtype=np.uint64)
    for k in range(KH * KW):
        offs[k] = U((k // KW * dh * Wp + k % KW * dw) * 16)
    return offs


@njit(cache=True, inline="always")
def _position_groups(OH, OW, KH, KW, H, top, sh, dh):
    """``(gq, gk)``: the groups of 8 output positions that :func:`_forward_channels_chunk`
    sums, group ``g`` from position ``gq[g]`` over the taps ``gk[g, 0] <= k < gk[g, 1]``:
    the kernel rows that read the input for some row of the group (the others read only
    padding). A group an output row (from ``ow``, 8 at a time) where that computes
    fewer lanes times taps than groups of 8 straight through the plane (a 5x5 kernel at
    7x7: 29 of 35 rows of taps, against 31 of 35 for the plane's groups, whose last is 1
    position and 7 repeats). A group's lanes past its row compute the next row's first
    positions with this row's taps, which that row's group then overwrites."""
    OHW = OH * OW
    lo = np.empty(OH, dtype=np.int64)
    hi = np.empty(OH, dtype=np.int64)
    for oh in range(OH):
        lo[oh], hi[oh] = KH, 0
        for kh in range(KH):
            if 0 <= oh * sh + kh * dh - top < H:
                lo[oh], hi[oh] = min(lo[oh], kh), kh + 1
        if hi[oh] <= lo[oh]:
            lo[oh], hi[oh] = 0, 0
    per_row, flat = 0, 0
    for oh in range(OH):
        per_row += (OW + 7) // 8 * 8 * (hi[oh] - lo[oh])
    for q0 in range(0, OHW, 8):
        a, e = q0 // OW, min(q0 + 7, OHW - 1) // OW
        flat += 8 * (max(hi[a:e + 1]) - min(lo[a:e + 1]))
    rows = per_row < flat
    n = OH * ((OW + 7) // 8) if rows else (OHW + 7) // 8
    gq = np.empty(n, dtype=np.int64)
    gk = np.empty((n, 2), dtype=np.int64)
    for g in range(n):
        if rows:
            oh = g // ((OW + 7) // 8)
            gq[g] = oh * OW + g % ((OW + 7) // 8) * 8
            a = e = oh
        else:
            gq[g] = 8 * g
            a, e = 8 * g // OW, min(8 * g + 7, OHW - 1) // OW
        gk[g, 0], gk[g, 1] = min(lo[a:e + 1]) * KW, max(hi[a:e + 1]) * KW
        if gk[g, 1] <= gk[g, 0]:
            gk[g, 0], gk[g, 1] = 0, 0
    return gq, gk


@njit(cache=True)
def _forward_channels_chunk(x, w, b, y, top, left, sh, sw, dh, dw, nchunk, chunk):
    """One chunk of tasks of :func:`_forward_channels`: a function of its own, so that the
    parallel loop's body is one call (with the body inlined, the parfor passes took 8 s
    to compile it)."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    KH, KW = w.shape[1], w.shape[2]
    T, OHW = KH * KW, OH * OW
    Hp, Wp = (OH - 1) * sh + (KH - 1) * dh + 1, (OW - 1) * sw + (KW - 1) * dw + 1
    xf, wf, yf = x.reshape(x.size), w.reshape(w.size), y.reshape(y.size)
    ncb = (C + 15) // 16
    per = -(-(N * ncb) // nchunk)
    xb = empty_lines(Hp * Wp * 16 + 16, y)  # (and a spare vector: _input_places)
    ob = empty_lines((OHW + 8) * 16, y)
    wl = empty_lines((T + 16) * 16, y)
    pos = np.empty(OHW + 8, dtype=np.uint64)  # each output's first tap in xb
    for q in range(OHW + 8):
        r = min(q, OHW - 1)
        pos[q] = (r // OW * sh * Wp + r % OW * sw) * 16
    xpos = _input_places(H, W, top, left, Hp, Wp)
    offs = _tap_offsets(KH, KW, dh, dw, Wp)
    gq, gk = _position_groups(OH, OW, KH, KW, H, top, sh, dh)
    for i in range(U(0), U(Hp * Wp * 16), U(16)):  # the padding, once: tasks write the rest
        store(xb, i, zeros(xb))
    for task in range(chunk * per, min(N * ncb, (chunk + 1) * per)):
        cb, n = task // N, task % N  # block-major: a block's images share its weights
        c0 = cb * 16
        nc = min(16, C - c0)  # the block's channels (the rest: zero lanes)
        for p0 in range(0, H * W, 16):  # the planes in, 16 positions at a time
            t = transpose_rows(xf, U((n * C + c0) * H * W + p0), U(H * W),
                               min(16, H * W - p0), nc)
            store_columns(xb, xpos, p0, t)
        if task == chunk * per or n == 0:
            for t0 in range(0, T, 16):  # the weights, a tap's 16 channels a vector
                m = min(16, T - t0)
                store_rows(wl, t0 * 16, 16, transpose_rows(wf, U(c0 * T + t0), U(T), m, nc),
                           16, m)
            bias = load_first(b, U(c0), nc)
        for grp in range(gq.shape[0]):  # the sums, 8 output positions at a time
            q0 = gq[grp]
            e0, e1, e2, e3 = pos[q0], pos[q0 + 1], pos[q0 + 2], pos[q0 + 3]
            e4, e5, e6, e7 = pos[q0 + 4], pos[q0 + 5], pos[q0 + 6], pos[q0 + 7]
            v0 = v1 = v2 = v3 = v4 = v5 = v6 = v7 = bias
            for k in range(gk[grp, 0], gk[grp, 1]):
                wv, o = load(wl, U(k * 16)), offs[k]
                v0 = fma(v0, wv, load(xb, e0 + o))
                v1 = fma(v1, wv, load(xb, e1 + o))
                v2 = fma(v2, wv, load(xb, e2 + o))
                v3 = fma(v3, wv, load(xb, e3 + o))
                v4 = fma(v4, wv, load(xb, e4 + o))
                v5 = fma(v5, wv, load(xb, e5 + o))
                v6 = fma(v6, wv, load(xb, e6 + o))
                v7 = fma(v7, wv, load(xb, e7 + o))
            store(ob, U(q0 * 16), v0)
            store(ob, U(q0 * 16 + 16), v1)
            store(ob, U(q0 * 16 + 32), v2)
            store(ob, U(q0 * 16 + 48), v3)
            store(ob, U(q0 * 16 + 64), v4)
            store(ob, U(q0 * 16 + 80), v5)
            store(ob, U(q0 * 16 + 96), v6)
            store(ob, U(q0 * 16 + 112), v7)
        for p0 in range(0, OHW, 16):  # the planes out
            m = min(16, OHW - p0)
            store_rows(yf, (n * C + c0) * OHW + p0, OHW,
                       transpose_rows(ob, U(p0 * 16), U(16), 16, m), m, nc)


def _forward_channels(x, w, b, y, top, left, sh, sw, dh, dw, nchunk, part, parts):
    """y = b + the depthwise correlation of ``x`` with ``w`` (``(C, KH, KW)``, one output
    channel a group), with 16 channels as the lanes (P == 16): for small planes, whose
    plane-by-plane tiles are mostly setup (a 7x7 plane's copy, 4 tiles of 9 taps and 10
    masked stores took about 300 cycles).

    A task is an image's block of 16 channels, the tasks block by block (a block's images
    share its weights, transposed once). It transposes the 16 planes into a buffer of
    its own whose padding a chunk zeroes once (:func:`kernels.cpu._simd.transpose_rows`,
    16 positions at a time), a position's 16 channels one vector; sums each output
    position's taps as vectors from the bias, 8 positions sharing each tap's weights,
    one loop over a table of the taps' offsets (the kernel rows that read the input for
    the group, :func:`_position_groups`: EfficientNet's 5x5 at 7x7 0.232-0.236 ms
    against 0.249-0.260 over every row), into a second buffer; and transposes that back
    into the block's planes of ``y``.

    Loop nest: parts of chunk of (block, n) > task > (in: positions by 16) > (sums: 8
    positions > tap) > (out: positions by 16)."""
    lo, hi = span(nchunk, part, parts)
    for chunk in range(lo, hi):
        _forward_channels_chunk(x, w, b, y, top, left, sh, sw, dh, dw, nchunk,
                                np.int64(chunk))


@njit(cache=True)
def _weight_grad_channels_cb(x, g, gw, top, left, sh, sw, dh, dw, cb):
    """Block ``cb`` of 16 channels of :func:`_weight_grad_channels`: a function of its own,
    so that the parallel loop's body is one call (with the body inlined, the parfor
    passes took 7 s to compile it)."""
    N, C, H, W = x.shape
    OH, OW = g.shape[2], g.shape[3]
    KH, KW = gw.shape[1], gw.shape[2]
    T, OHW = KH * KW, OH * OW
    Hp, Wp = (OH - 1) * sh + (KH - 1) * dh + 1, (OW - 1) * sw + (KW - 1) * dw + 1
    xf, gf = x.reshape(x.size), g.reshape(g.size)
    c0 = cb * 16
    nc = min(16, C - c0)
    xb = empty_lines(Hp * Wp * 16 + 16, x)  # (and a spare vector: _input_places)
    gb = empty_lines((OHW + 4) * 16, x)
    gb[:] = 0  # (zeros past the last position)
    sums = np.empty(16, dtype=x.dtype)
    total_ = np.zeros((T, 16), dtype=np.float64)
    pos = np.empty(OHW + 4, dtype=np.uint64)  # each output's first tap in xb
    for q in range(OHW + 4):
        r = min(q, OHW - 1)
        pos[q] = (r // OW * sh * Wp + r % OW * sw) * 16
    xpos = _input_places(H, W, top, left, Hp, Wp)
    offs = _tap_offsets(KH, KW, dh, dw, Wp)
    for i in range(U(0), U(Hp * Wp * 16), U(16)):  # the padding, once: images write the rest
        store(xb, i, zeros(xb))
    for n in range(N):
        for p0 in range(0, H * W, 16):
            t = transpose_rows(xf, U((n * C + c0) * H * W + p0), U(H * W),
                               min(16, H * W - p0), nc)
            store_columns(xb, xpos, p0, t)
        for p0 in range(0, OHW, 16):
            m = min(16, OHW - p0)
            store_rows(gb, p0 * 16, 16, transpose_rows(gf, U((n * C + c0) * OHW + p0), U(OHW),
                                                       m, nc), 16, m)
        for k in range(T):
            o = offs[k]
            d0 = d1 = d2 = d3 = zeros(xb)
            for q0 in range(0, OHW, 4):  # past the last position, g is zero
                d0 = fma(d0, load(gb, U(q0 * 16)), load(xb, pos[q0] + o))
                d1 = fma(d1, load(gb, U(q0 * 16 + 16)), load(xb, pos[q0 + 1] + o))
                d2 = fma(d2, load(gb, U(q0 * 16 + 32)), load(xb, pos[q0 + 2] + o))
                d3 = fma(d3, load(gb, U(q0 * 16 + 48)), load(xb, pos[q0 + 3] + o))
            store(sums, U(0), add(add(d0, d1), add(d2, d3)))
            for j in range(16):
                total_[k, j] += sums[j]
    for j in range(nc):
        for kh in range(KH):
            for kw in range(KW):
                gw[c0 + j, kh, kw] = total_[kh * KW + kw, j]


def _weight_grad_channels(x, g, gw, top, left, sh, sw, dh, dw, part, parts):
    """gw[c, kh, kw] = sum over n and the output positions of g[n, c, oh, ow] *
    x[n, c, oh*sh + kh*dh - top, ow*sw + kw*dw - left] (zero outside x), in float64, with
    16 channels as the lanes (P == 16): the weight gradient of :func:`_forward_channels`'
    small planes.

    A task is a block of 16 channels, for every image: the image's planes of ``x`` and
    of ``g`` transposed into buffers of its own (a position's 16 channels one vector), then
    each tap's 16 sums over the positions as vectors, 4 positions at a time; each image's
    float32 sums are added into a float64 total.

    Loop nest: parts of block > image > (in: positions by 16) > tap > 4 positions."""
    ncb = (x.shape[1] + 15) // 16
    lo, hi = span(ncb, part, parts)
    for cb in range(lo, hi):
        _weight_grad_channels_cb(x, g, gw, top, left, sh, sw, dh, dw, np.int64(cb))


def _forward_masked(x, w, b, y, off, masks, cog, part, parts):
    """Plane (n, co) of ``y`` = b[co] + sum_t w[co, t] * plane (n, co // cog) of ``x``
    read ``off[t]`` positions on, in the lanes of ``masks[v, t]``: the stride-1
    correlation of a small plane whose output rows have the input's pitch (OW == W),
    straight from ``x`` into ``y``, without a padded copy. Output position
    ``a = oh*W + ow`` reads ``x[a + off[t]]`` for tap t; a lane whose tap falls in the
    padding is masked off (nothing is read for it). A 7x7 plane is 4 vectors a tap, each
    one masked load and one FMA.

    ``masks`` has a row a vector of the plane's outputs, rounded up to a multiple of
    DW_MASKED_V (the rows past the plane, zero, read nothing).

    Loop nest: parts of planes (n, co) > DW_MASKED_V vectors > tap > the vectors."""
    C, HW = x.shape[1], x.shape[2] * x.shape[3]
    Co, OHW = y.shape[1], y.shape[2] * y.shape[3]
    xf, yf = x.reshape(x.size), y.reshape(y.size)
    z = zeros(yf)
    lo, hi = span(x.shape[0] * Co, part, parts)
    for task in range(lo, hi):
        co = task % Co
        xb = (task // Co * C + co // cog) * HW
        yb = U(task * OHW)
        for v0 in range(U(0), U(masks.shape[0]), U(DW_MASKED_V)):
            a0 = a1 = a2 = a3 = zeros(yf)
            q = xb + np.int64(v0 * U(P))
            for t in range(off.shape[0]):
                wv, o = w[co, t], q + off[t]
                a0 = fma(a0, wv, load_masked(xf, o, masks[v0, t], z))
                a1 = fma(a1, wv, load_masked(xf, o + P, masks[v0 + U(1), t], z))
                a2 = fma(a2, wv, load_masked(xf, o + 2 * P, masks[v0 + U(2), t], z))
                a3 = fma(a3, wv, load_masked(xf, o + 3 * P, masks[v0 + U(3), t], z))
            for j in range(DW_MASKED_V):
                a = np.int64(v0) * P + j * P
                if a >= OHW:
                    break
                v = a0 if j == 0 else a1 if j == 1 else a2 if j == 2 else a3
                store_first(yf, yb + U(a), add_scalar(v, b[co]), min(P, OHW - a))


def _weight_grad_masked(x, g, gw, off, masks, cog, accs, part, parts):
    """gw[co, t] = sum over n and the plane's outputs a of g[n, co, a] * x[n, co // cog,
    a + off[t]] in the lanes of ``masks`` (see :func:`_forward_masked`), in float64: the
    weight gradient of the forward's small planes. Each tap's products add up in a
    float32 vector of its own over DW_MASKED_FLUSH images, then into the float64 total.

    Loop nest: parts of co > images > DW_MASKED_V vectors of g > tap > the vectors."""
    C, HW = x.shape[1], x.shape[2] * x.shape[3]
    N, Co, OHW = g.shape[0], g.shape[1], g.shape[2] * g.shape[3]
    T = off.shape[0]
    xf, gf = x.reshape(x.size), g.reshape(g.size)
    z = zeros(xf)
    acc = accs[part]  # (T*P at least)
    lo, hi = span(Co, part, parts)
    for co in range(lo, hi):
        for t in range(T):
            gw[co, t] = 0.0
        for n0 in range(0, N, DW_MASKED_FLUSH):
            for i in range(U(0), U(T * P), U(P)):
                store(acc, i, z)
            for n in range(n0, min(N, n0 + DW_MASKED_FLUSH)):
                xb = (n * C + co // cog) * HW
                gb = (n * Co + co) * OHW
                for v0 in range(U(0), U(masks.shape[0]), U(DW_MASKED_V)):
                    a = np.int64(v0) * P
                    g0 = load_first(gf, U(gb + a), max(0, min(P, OHW - a)))
                    g1 = load_first(gf, U(gb + a + P), max(0, min(P, OHW - a - P)))
                    g2 = load_first(gf, U(gb + a + 2 * P), max(0, min(P, OHW - a - 2 * P)))
                    g3 = load_first(gf, U(gb + a + 3 * P), max(0, min(P, OHW - a - 3 * P)))
                    q = xb + a
                    for t in range(T):
                        o = q + off[t]
                        d = load(acc, U(t * P))
                        d = fma(d, g0, load_masked(xf, o, masks[v0, t], z))
                        d = fma(d, g1, load_masked(xf, o + P, masks[v0 + U(1), t], z))
                        d = fma(d, g2, load_masked(xf, o + 2 * P, masks[v0 + U(2), t], z))
                        d = fma(d, g3, load_masked(xf, o + 3 * P, masks[v0 + U(3), t], z))
                        store(acc, U(t * P), d)
            for t in range(T):
                gw[co, t] += total(load(acc, U(t * P)))


def _weight_grad(x, g, gw, top, left, sh, sw, Hq, Wq, off, cog, ntile, seg_off, seg_mask,
                 nseg, bufs, gls, accs, part, parts):
    """gw[co, t] = sum over n and the plane's outputs a of g[n, co, a] * the padded,
    phase-split plane of ``x[n, co // cog]`` at ``a + off[t]``, in float64
    (``g.shape = (N, Co, OH*OW)``).

    Loop nest: parts of co > n > (the plane, and grad_out in phase-layout lanes) > tap t >
    tiles, 4 vector FMAs at a time.

    Optimizations:
    - grad_out is gathered into the phase layout once per plane (masked loads by the
      tiles' store maps, zeros past each row), and every tap sweeps it from L1;
    - a task owns grad_w[co] (no shared +=); each plane's float32 sums are added into a
      float64 total."""
    N, Co, OHW = g.shape
    T = off.shape[0]
    gf = g.reshape(N * Co * OHW)
    L = ntile * P
    lo, hi = span(Co, part, parts)
    for co in range(lo, hi):
        buf, gl, acc = bufs[part], gls[part], accs[part]  # (as _forward's, L + 3*P, T)
        buf[:] = 0
        gl[:] = 0
        acc[:] = 0
        for n in range(N):
            _fill_plane(x[n, co // cog], buf, top, left, sh, sw, Hq, Wq)
            g0 = (n * Co + co) * OHW
            for k in range(ntile):
                v = zeros(gl)
                for s in range(nseg[k]):
                    v = load_masked(gf, U(g0 + seg_off[k, s]), seg_mask[k, s], v)
                store(gl, U(k * P), v)
            for t in range(T):
                a = off[t]
                d0 = d1 = d2 = d3 = zeros(gl)
                for i in range(U(0), U(L), U(4 * P)):
                    d0 = fma(d0, load(gl, i), load(buf, a + i))
                    d1 = fma(d1, load(gl, i + U(P)), load(buf, a + i + U(P)))
                    d2 = fma(d2, load(gl, i + U(2 * P)), load(buf, a + i + U(2 * P)))
                    d3 = fma(d3, load(gl, i + U(3 * P)), load(buf, a + i + U(3 * P)))
                acc[t] += total(d0) + total(d1) + total(d2) + total(d3)
        for t in range(T):
            gw[co, t] = acc[t]


def chunks(parallel: bool) -> int:
    """Chunks of the depthwise forward kernels' tasks: one a thread. The parts take
    contiguous runs of chunks (:func:`kernels.cpu._parts.span`), so more chunks balance
    nothing; each only zeroed a buffer of its own."""
    return get_num_threads() if parallel else 1


# the copies of :func:`_forward_rows`, by (KH, KW, stride); the general one runs stride 1
ROWS_COPIES = ((3, 3, 1), (5, 5, 1), (3, 3, 2), (5, 5, 2))
_ROWS = {key: parallel_and_serial_parts(renamed_copy(_forward_rows, "_{}x{}_s{}".format(*key),
                                                     ROWS_KERNEL=key))
         for key in ROWS_COPIES}
_ROWS_ANY = parallel_and_serial_parts(_forward_rows)


def rows_buffer(Hq, Wq, KH, S) -> int:
    """Elements of :func:`_forward_rows`' buffer: the phases, the rows past the last phase
    that the last band's unstored rows read, and a chunk's lanes past the last row."""
    return (S * S * Hq + DW_ROWS + KH) * Wq + 2 * P


def forward_rows(x, w, b, y, top, left, Hq, Wq, KH, KW, S, cog, nchunk, bufs):
    """:func:`_forward_rows` on every thread: the copy for the kernel size and stride, or
    the general one (stride 1 only)."""
    _ROWS.get((KH, KW, S), _ROWS_ANY)[0](x, w, b, y, top, left, Hq, Wq, KH, KW, S, cog, nchunk,
                                         bufs)


def forward_rows_serial(x, w, b, y, top, left, Hq, Wq, KH, KW, S, cog, nchunk, bufs):
    """:func:`forward_rows` on this thread."""
    _ROWS.get((KH, KW, S), _ROWS_ANY)[1](x, w, b, y, top, left, Hq, Wq, KH, KW, S, cog, nchunk,
                                         bufs)


forward, forward_serial = parallel_and_serial_parts(_forward)
input_grad2, input_grad2_serial = parallel_and_serial_parts(_input_grad2)
forward_channels, forward_channels_serial = parallel_and_serial_parts(_forward_channels,
                                                                       **WITH_NRT)
weight_grad_channels, weight_grad_channels_serial = parallel_and_serial_parts(
    _weight_grad_channels, **WITH_NRT)
weight_grad, weight_grad_serial = parallel_and_serial_parts(_weight_grad)
forward_masked, forward_masked_serial = parallel_and_serial_parts(_forward_masked)
weight_grad_masked, weight_grad_masked_serial = parallel_and_serial_parts(
    _weight_grad_masked)
