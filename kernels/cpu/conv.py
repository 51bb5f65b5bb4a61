"""Numba conv2d kernels on a zero-padded input flattened to ``xf[n, c, ih*Wp + iw]``.

Every kernel walks "segments": runs of outputs whose input offsets advance by a
constant step, so the innermost loop is a contiguous, vectorizable sweep.

- stride 1 ("wide" layout): the whole plane is ONE segment. Output ``(oh, ow)`` is
  stored at ``a = oh*Wp + ow`` (the padded input's row pitch), so tap ``(kh, kw)``
  reads ``xf[a + kh*dh*Wp + kw*dw]``: one long unit-stride loop of
  ``L = (OH-1)*Wp + OW`` instead of OH short rows. The ``Wp - OW`` columns past the
  end of each row are scratch (computed, then dropped; zero in ``grad_out``).
- any other stride: one segment per output row, ``a = oh*OW + ow``, input step ``sw``.

``seg`` below is ``(nseg, seglen, arow, xseg, step)``: segment ``s`` covers accumulator
``s*arow + p`` and input ``s*xseg + off + p*step`` for ``p < seglen``.
Kernel bodies are plain Python compiled at the bottom (``NUMBA_DISABLE_JIT=1`` runs them).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from numba import njit

from . import depthwise, tiles
from ._jit import WITH_NRT, U, empty_lines
from ._layout import ONE_PHASE, pad_channel, pad_channels, pad_plane, tap_major_block
from ._parts import parallel_and_serial_parts, span
from ._simd import (
    P,
    add,
    add_scalar,
    fma,
    interleave_run,
    load,
    load_first,
    store,
    store_first,
    store_rows,
    total,
    transpose_rows,
    transpose_rows_plus,
    zeros,
)
from ._simd import zero as _zero
from .activation import _sum64

COB = 4  # output (forward) / input (grad_x) channels that share one sweep of the input


def _forward(xf, w, b, y, Wp, dh, dw, groups, nseg, seglen, arow, xseg, step, part, parts):
    """y[n, co] = b[co] + sum_{ci, kh, kw} w[co, ci, kh, kw] * xf[n, g*Cg + ci, shifted].

    Loop nest: parts of (n, group, block of COB output channels) > ci > kh > kw >
    segment > p (contiguous), then a compaction pass acc -> y (+ bias).

    Optimizations:
    - COB output channels per sweep: each input load feeds COB FMAs;
    - the stride-1 "wide" layout makes the sweep one loop of ~H*W (vectorizes fully
      even when OW is a handful);
    - float32 stays float32 (as torch does: the sums are short, C_in*KH*KW terms).
    """
    N = xf.shape[0]
    Co, Cg, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    Cog = Co // groups
    nblk = (Cog + COB - 1) // COB
    A = OH * arow
    lo, hi = span(N * groups * nblk, part, parts)
    for task in range(lo, hi):
        n = task // (groups * nblk)
        g = (task // nblk) % groups
        blk = task % nblk
        co0 = g * Cog + blk * COB
        nco = min(COB, Cog - blk * COB)
        acc = np.zeros((COB, A), dtype=y.dtype)
        a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
        for ci in range(Cg):
            xrow = xf[n, g * Cg + ci]
            for kh in range(KH):
                for kw in range(KW):
                    off = kh * dh * Wp + kw * dw
                    if nco == COB:
                        w0 = w[co0, ci, kh, kw]
                        w1 = w[co0 + 1, ci, kh, kw]
                        w2 = w[co0 + 2, ci, kh, kw]
                        w3 = w[co0 + 3, ci, kh, kw]
                        for s in range(nseg):
                            xb = s * xseg + off
                            ab = s * arow
                            xs = xrow[xb:xb + (seglen - 1) * step + 1]
                            s0, s1 = a0[ab:ab + seglen], a1[ab:ab + seglen]
                            s2, s3 = a2[ab:ab + seglen], a3[ab:ab + seglen]
                            if step == 1:
                                for p in range(seglen):
                                    v = xs[p]
                                    s0[p] += w0 * v
                                    s1[p] += w1 * v
                                    s2[p] += w2 * v
                                    s3[p] += w3 * v
                            else:
                                for p in range(seglen):
                                    v = xs[U(p * step)]
                                    s0[p] += w0 * v
                                    s1[p] += w1 * v
                                    s2[p] += w2 * v
                                    s3[p] += w3 * v
                    else:
                        for j in range(nco):
                            wj = w[co0 + j, ci, kh, kw]
                            aj = acc[j]
                            for s in range(nseg):
                                xb = s * xseg + off
                                ab = s * arow
                                xs = xrow[xb:xb + (seglen - 1) * step + 1]
                                sj = aj[ab:ab + seglen]
                                if step == 1:
                                    for p in range(seglen):
                                        sj[p] += wj * xs[p]
                                else:
                                    for p in range(seglen):
                                        sj[p] += wj * xs[U(p * step)]
        for j in range(nco):
            bj = b[co0 + j]
            for oh in range(OH):
                arow_ = acc[j, oh * arow:oh * arow + OW]
                yrow = y[n, co0 + j, oh]
                for ow in range(OW):
                    yrow[ow] = arow_[ow] + bj


def _grad_input(ga, w, gxf, Wp, dh, dw, groups, nseg, seglen, arow, xseg, step, part, parts):
    """gxf[n, c] = sum_{co in c's group, kh, kw} w[co, c - g*Cg, kh, kw] * ga[n, co] scattered
    to the shifted positions (the transpose of the forward gather); ``gxf`` comes in zeroed.

    ``ga`` is grad_out in the accumulator layout (wide rows of pitch Wp, zero past OW).
    Loop nest: parts of (n, group, block of COB input channels) > co > kh > kw > segment > p.

    Optimizations:
    - each thread owns whole input planes, so the scatter-add has no races;
    - COB input channels per sweep share each grad_out load;
    - unit-stride scatter in the wide layout, vectorized like the forward gather.
    """
    N = ga.shape[0]
    Co, Cg, KH, KW = w.shape
    Cog = Co // groups
    nblk = (Cg + COB - 1) // COB
    lo, hi = span(N * groups * nblk, part, parts)
    for task in range(lo, hi):
        n = task // (groups * nblk)
        g = (task // nblk) % groups
        blk = task % nblk
        ci0 = blk * COB
        c0 = g * Cg + ci0
        nci = min(COB, Cg - ci0)
        for co in range(g * Cog, (g + 1) * Cog):
            grow = ga[n, co]
            for kh in range(KH):
                for kw in range(KW):
                    off = kh * dh * Wp + kw * dw
                    if nci == COB:
                        w0 = w[co, ci0, kh, kw]
                        w1 = w[co, ci0 + 1, kh, kw]
                        w2 = w[co, ci0 + 2, kh, kw]
                        w3 = w[co, ci0 + 3, kh, kw]
                        r0, r1, r2, r3 = gxf[n, c0], gxf[n, c0 + 1], gxf[n, c0 + 2], gxf[n, c0 + 3]
                        for s in range(nseg):
                            xb = s * xseg + off
                            ab = s * arow
                            gs = grow[ab:ab + seglen]
                            xe = xb + (seglen - 1) * step + 1
                            s0, s1, s2, s3 = r0[xb:xe], r1[xb:xe], r2[xb:xe], r3[xb:xe]
                            if step == 1:
                                for p in range(seglen):
                                    v = gs[p]
                                    s0[p] += w0 * v
                                    s1[p] += w1 * v
                                    s2[p] += w2 * v
                                    s3[p] += w3 * v
                            else:
                                for p in range(seglen):
                                    v = gs[p]
                                    s0[U(p * step)] += w0 * v
                                    s1[U(p * step)] += w1 * v
                                    s2[U(p * step)] += w2 * v
                                    s3[U(p * step)] += w3 * v
                    else:
                        for j in range(nci):
                            wj = w[co, ci0 + j, kh, kw]
                            rj = gxf[n, c0 + j]
                            for s in range(nseg):
                                xb = s * xseg + off
                                ab = s * arow
                                gs = grow[ab:ab + seglen]
                                sj = rj[xb:xb + (seglen - 1) * step + 1]
                                if step == 1:
                                    for p in range(seglen):
                                        sj[p] += wj * gs[p]
                                else:
                                    for p in range(seglen):
                                        sj[U(p * step)] += wj * gs[p]


def _grad_weight(ga, xf, grad_w, grad_b, Wp, dh, dw, groups, nseg, seglen, arow, xseg,
                 step, part, parts):
    """grad_w[co, ci, kh, kw] = sum_{n, a} ga[n, co, a] * xf[n, g*Cg + ci, shifted a];
    grad_b[co] = sum_{n, a} ga[n, co, a] (the scratch columns of ``ga`` are zero).

    Loop nest: parts of co > ci > n > kh > kw > segment > p (contiguous), into a per-thread
    buffer ``part[kh*KW + kw, a]``; then one reduction of ``part`` over ``a`` per (co, ci).

    Optimizations:
    - each thread owns grad_w[co] (no shared +=);
    - the sum over (n, a) is split: an elementwise multiply-add over ``a`` (vectorizes,
      no loop-carried dependency) repeated for every n, and a single reduction at the end,
      so the reduction (which cannot be reassociated without fastmath) runs once per tap
      instead of N times;
    - float32 inputs accumulate the final reduction in float64 (it sums N*OH*OW terms).
    """
    N = ga.shape[0]
    Co, Cg, KH, KW = grad_w.shape
    Cog = Co // groups
    A = ga.shape[2]
    lo, hi = span(Co, part, parts)
    for co in range(lo, hi):
        g = co // Cog
        part = np.empty((KH * KW, A), dtype=ga.dtype)
        sb = 0.0
        for n in range(N):
            grow = ga[n, co]
            for a in range(A):
                sb += grow[a]
        grad_b[co] = sb
        for ci in range(Cg):
            part[:] = 0
            for n in range(N):
                grow = ga[n, co]
                xrow = xf[n, g * Cg + ci]
                for kh in range(KH):
                    for kw in range(KW):
                        off = kh * dh * Wp + kw * dw
                        prow = part[kh * KW + kw]
                        for s in range(nseg):
                            xb = s * xseg + off
                            ab = s * arow
                            gs, ps = grow[ab:ab + seglen], prow[ab:ab + seglen]
                            xs = xrow[xb:xb + (seglen - 1) * step + 1]
                            if step == 1:
                                for p in range(seglen):
                                    ps[p] += gs[p] * xs[p]
                            else:
                                for p in range(seglen):
                                    ps[p] += gs[p] * xs[U(p * step)]
            for t in range(KH * KW):
                st = 0.0
                prow = part[t]
                for a in range(A):
                    st += prow[a]
                grad_w[co, ci, t // KW, t % KW] = st


def _pad_phases(x, src, top, left, sh, sw, Hq, Wq, used, part, parts):
    """The zero-padded input split into stride phases: plane ``ph*sw + pw`` of image n,
    channel c is ``src[((n*C + c)*sh*sw + ph*sw + pw)*Hq*Wq + i*Wq + j] = xp[n, c, i*sh + ph,
    j*sw + pw]`` (``xp``: ``x`` padded by ``top``/``left``, zeros past its end), for the
    phases with ``used[phase]`` (the others are left as they are: no tap reads them).

    A strided convolution reads each phase at stride 1: output (oh, ow)'s tap (kh, kw)
    is element ``(oh + kh*dh // sh, ow + kw*dw // sw)`` of phase ``(kh*dh % sh, kw*dw % sw)``,
    so the tiled kernel's runs of consecutive outputs read consecutive elements (stride 1
    is one phase: the padded input at row pitch Wq)."""
    N, C, H, W = x.shape
    S, plane = sh * sw, Hq * Wq
    xf = x.reshape(x.size)  # NOTE: flat: a row view a row cost two atomic refcount updates
    lo, hi = span(N * C * S, part, parts)
    for task in range(lo, hi):
        if used[task % S]:
            pad_plane(xf, H, W, task // S, task % S, src, U(task * plane), top, left, sh, sw,
                      Hq, Wq)


def _pad_phase_pairs(x, src, top, left, sh, Hq, Wq, used, part, parts):
    """:func:`_pad_phases` at a column stride of 2, both column phases of a row at once
    (:func:`kernels.cpu._layout.pad_channel`): a kernel of its own, so that a stride-1
    network does not compile it (0.6 s of LeNet's first call)."""
    N, C, H, W = x.shape
    S, plane = sh * 2, Hq * Wq
    xf = x.reshape(x.size)
    lo, hi = span(N * C, part, parts)
    for nc in range(lo, hi):
        pad_channel(xf, H, W, nc, src, U(nc * S * plane), used, top, left, sh, 2, Hq, Wq)


def _pad_runs(x, src, top, left, Hq, Wq, part, parts):
    """:func:`_pad_phases` at stride 1 (one phase), each row copied by masked runs of P
    (:func:`kernels.cpu._layout.pad_plane_runs`): a kernel of its own for large inputs,
    so that LeNet's first call does not compile it (a 32-group 1024-channel layer's source
    at 7x7: 0.23 against 0.63 ms by elements; 64 channels at 56x56: 0.22 against 0.30)."""
    N, C, H, W = x.shape
    plane = Hq * Wq
    lo, hi = span(N * C, part, parts)
    if lo < hi:
        pad_channels(x.reshape(x.size), H, W, lo, hi, src[U(lo * plane):], ONE_PHASE, top, left,
                     1, 1, Hq, Wq)


def _unphase(yph, gx, top, left, sh, sw, Hq, Wq, part, parts):
    """gx[n, c, h, w] = element ``((h + top) // sh, (w + left) // sw)`` of phase
    ``((h + top) % sh, (w + left) % sw)`` of ``yph`` (flat, in the layout of
    :func:`_pad_phases`): the inverse of the phase split, cropping the padding."""
    N, C, H, W = gx.shape
    S, plane = sh * sw, Hq * Wq
    gf = gx.reshape(gx.size)
    lo, hi = span(N * C, part, parts)
    for nc in range(lo, hi):
        n, c = nc // C, nc % C
        for h in range(H):
            hp = h + top
            row = U(nc * S * plane + (hp % sh) * sw * plane + (hp // sh) * Wq)
            if sw == 2:  # columns 0, 2, ... from one phase, 1, 3, ... from the other
                interleave_run(yph, row + U(left % 2 * plane + left // 2),
                               row + U((left + 1) % 2 * plane + (left + 1) // 2), gf,
                               U((nc * H + h) * W), W)
                continue
            out = gx[n, c, h]
            for pw in range(sw):
                w0 = (pw - left) % sw  # the first column of phase pw
                src = row + U(pw * plane + (w0 + left) // sw)
                for k in range((W - w0 + sw - 1) // sw):
                    out[U(w0 + k * sw)] = yph[src + U(k)]


def _crop(xp, x, top, left, part, parts):
    """x = xp[:, :, top:top+H, left:left+W]."""
    N, C, H, W = x.shape
    lo, hi = span(N * C, part, parts)
    for nc in range(lo, hi):
        n, c = nc // C, nc % C
        for h in range(H):
            for i in range(W):
                x[n, c, h, i] = xp[n, c, U(top + h), U(left + i)]


def _widen(g, ga, arow, part, parts):
    """ga[n, c, oh*arow + ow] = g[n, c, oh, ow] (ga comes in zeroed)."""
    N, C, OH, OW = g.shape
    lo, hi = span(N * C, part, parts)
    for nc in range(lo, hi):
        n, c = nc // C, nc % C
        for oh in range(OH):
            for ow in range(OW):
                ga[n, c, U(oh * arow + ow)] = g[n, c, oh, ow]


def _to_batch_lanes(x, src, top, left, Hp, Wp, Nb, part, parts):
    """src[((c*Hp + top + h)*Wp + left + w)*Nb + n] = x[n, c, h, w]: the batch as the
    contiguous (lane) axis (padding around each plane as it was; images N to Nb zeros).

    Loop nest: parts of (c, h) > block of 16 images > 16 columns: 16 image rows loaded and
    transposed in registers (:func:`kernels.cpu._simd.transpose_rows`), each column's 16
    images one aligned store (LeNet conv2's input: 27 us a copy, scalar). Without
    16-lane vectors: > n > w, each image's row read contiguously, the row's W x N block
    of ``src`` in L1."""
    N, C, H, W = x.shape
    xf = x.reshape(x.size)
    plane = U(C * H * W)  # from one image's row to the next's
    lo, hi = span(C * H, part, parts)
    for ch in range(lo, hi):
        c, h = ch // H, ch % H
        base = ((c * Hp + top + h) * Wp + left) * Nb
        if P != 16:
            for n in range(N):
                for w in range(W):
                    src[U(base + w * Nb + n)] = xf[U(((n * C + c) * H + h) * W + w)]
            continue
        for n0 in range(0, Nb, 16):
            k = N - n0  # the block's images (the rest load zeros)
            for w0 in range(0, W, 16):
                m = min(16, W - w0)
                store_rows(src, base + w0 * Nb + n0, Nb,
                           transpose_rows(xf, U((n0 * C + c) * H * W + h * W + w0), plane, m,
                                          k), 16, m)


def _to_batch_lanes_rows(g, gl, rows, Nb, part, parts):
    """The output layout of the tiled kernels with batch lanes: row ``rows[c]`` of ``gl``
    holds channel ``c`` at ``(oh*OW + ow)*Nb + n``; lanes past N are written as zeros (so
    ``gl`` need not come in zeroed; rows that are no channel's are the caller's)."""
    N, C, OH, OW = g.shape
    zero = _zero(gl)
    lo, hi = span(C * OH, part, parts)
    for co in range(lo, hi):
        c, oh = co // OH, co % OH
        r = gl[rows[c]]
        for n in range(N):
            for ow in range(OW):
                r[U((oh * OW + ow) * Nb + n)] = g[n, c, oh, ow]
        for ow in range(OW):
            for n in range(N, Nb):
                r[U((oh * OW + ow) * Nb + n)] = zero


def _to_pitch_rows(g, gl, rows, pitch, part, parts):
    """As :func:`_to_batch_lanes_rows`, for the wide layout: channel ``c`` at
    ``(n*OH + oh)*pitch + ow``, zeros in the columns past OW."""
    N, C, OH, OW = g.shape
    zero = _zero(gl)
    lo, hi = span(C * OH, part, parts)
    for co in range(lo, hi):
        c, oh = co // OH, co % OH
        r = gl[rows[c]]
        for n in range(N):
            base = (n * OH + oh) * pitch
            for ow in range(OW):
                r[U(base + ow)] = g[n, c, oh, ow]
            for ow in range(OW, pitch):
                r[U(base + ow)] = zero


def _from_lanes(gl, y, b, rows, Nb, part, parts):
    """The inverse of :func:`_to_batch_lanes_rows`, adding ``b[c]``:
    y[n, c, oh, ow] = gl[rows[c], (oh*OW + ow)*Nb + n] + b[c]. (With width lanes the
    tiled kernel stores into ``y`` itself.)

    Loop nest: parts of (c, oh) > block of 16 images > 16 columns: 16 columns' lanes
    loaded and transposed in registers (:func:`kernels.cpu._simd.transpose_rows`), each
    image's run of the row one masked store (LeNet conv2's output: 24 us a copy,
    scalar). Without 16-lane vectors: > n > ow, the output row's OW x N block of ``gl``
    in L1 while each image's row of ``y`` is written contiguously."""
    N, C, OH, OW = y.shape
    yf = y.reshape(y.size)
    lo, hi = span(C * OH, part, parts)
    for co in range(lo, hi):
        c, oh = co // OH, co % OH
        r = gl[rows[c]]
        bc = b[c]
        base = oh * OW * Nb
        if P != 16:
            for n in range(N):
                for ow in range(OW):
                    yf[U(((n * C + c) * OH + oh) * OW + ow)] = r[U(base + ow * Nb + n)] + bc
            continue
        bias = add_scalar(zeros(yf), bc)
        for n0 in range(0, N, 16):
            for ow0 in range(0, OW, 16):
                m = min(16, OW - ow0)
                t = transpose_rows_plus(r, U(base + ow0 * Nb + n0), U(Nb), 16, m, bias)
                store_rows(yf, (n0 * C + c) * OH * OW + oh * OW + ow0, C * OH * OW, t, m,
                           min(16, N - n0))


def _channel_sums(g, out, part, parts):
    """out[c] = sum over n, i of g[n, c, i], in float64: the bias gradient (grad_out
    summed per channel). Compiled with reassociation so that the float64 sums vectorize
    (NumPy's ``sum(axis=(0, 2, 3), dtype=float64)`` took 5x longer); a thread a channel."""
    N, C, _ = g.shape
    lo, hi = span(C, part, parts)
    for c in range(lo, hi):
        s = 0.0
        for n in range(N):
            s += _sum64(g[n, c])
        out[c] = s


def _tap_major(w, wt, groups, part, parts):
    """wt[b, t, j] = w[g*cog + r, t] for row ``b*B + j`` = ``g*cogp + r`` (0 for r >= cog):
    the tiled kernel's weights, each block of B = ``wt.shape[2]`` rows tap-major, with
    each group's ``cog`` output channels padded to ``cogp`` (``w`` is ``(Co, taps)``, ``wt``
    is ``(groups*cogp // B, taps, B)``). A block's weights are then one contiguous run:
    with rows tap-major across all blocks, each tap's 8 weights were a cache line apart
    from the last one (2 KB on a 512-channel layer, whose 9 MB of weights the prefetcher
    then missed). Loop nest: parts of block > :func:`kernels.cpu._layout.tap_major_block`."""
    Co, T = w.shape
    nblk, B = wt.shape[0], wt.shape[2]
    wf, wtf = w.reshape(w.size), wt.reshape(wt.size)
    lo, hi = span(nblk, part, parts)
    for b in range(lo, hi):
        tap_major_block(wf, T, Co // groups, nblk * B // groups, b, B, wtf, U(b * T * B))


WG_COB, WG_TB = 4, 3  # output channels x taps whose dot products share one sweep


def _weight_grad_rows(src, g, off, cbase, sbase, gbase, slen, piece, partial, more, part,
                      parts):
    """partial[k, co, t] (+= with ``more``: the next images' share) = sum over the spans
    s of the pieces of chunk k of dot(g[co, gbase[s]:gbase[s] + slen[s]],
    src[cbase[co // WG_COB] + sbase[s] + off[t]:][:slen[s]]), for the blocks of WG_COB
    channels; piece ``j`` is the spans ``piece[j] <= s < piece[j + 1]``, and chunk k the
    pieces ``k*per <= j < (k+1)*per`` with ``per = ceil(npiece / nchunk)``. The caller
    sums ``part`` over chunks.

    A span is a contiguous run of outputs in the tiled layout (see ``kernels.conv._Tiled``)
    whose source elements are contiguous too; ``g`` has WG_COB-aligned rows per group and
    ``off`` a multiple of WG_TB taps.

    Loop nest: parts of (chunk, block of WG_COB channels) > piece > WG_TB taps > span >
    P-lane steps along it.

    Optimizations:
    - WG_COB x WG_TB dot products in one sweep, in vector registers (:mod:`._simd`):
      7 vector loads feed 12 vector FMAs; masked loads (all lanes but in a span's last
      step) keep the loop one body, which compiles in half the time of a separate tail;
    - short rows (a 7x7 plane's 61 outputs) share a piece, so the 12 sums across lanes
      happen once a piece, not once a row (they took a third of a 7x7 layer's time);
    - each piece's float32 dot products are summed across lanes, then added into a
      float64 total;
    - each task owns its block's rows of ``part[k]`` (no shared +=).
    """
    T = off.shape[0]
    npiece = piece.shape[0] - 1
    nchunk = partial.shape[0]
    per = -(-npiece // nchunk)
    nblk = g.shape[0] // WG_COB
    G = g.shape[1]
    gf = g.reshape(g.size)
    lo, hi = span(nchunk * nblk, part, parts)
    for task in range(lo, hi):
        k, blk = task // nblk, task % nblk
        p = partial[k]
        co0 = blk * WG_COB
        if not more:
            for co in range(co0, co0 + WG_COB):
                for t in range(T):
                    p[co, t] = 0.0
        for j in range(k * per, min(npiece, (k + 1) * per)):
            for t0 in range(0, T, WG_TB):
                d00 = d01 = d02 = d10 = d11 = d12 = zeros(src)
                d20 = d21 = d22 = d30 = d31 = d32 = zeros(src)
                for sp in range(piece[j], piece[j + 1]):
                    a = cbase[blk] + sbase[sp]
                    oa, ob, oc = U(a + off[t0]), U(a + off[t0 + 1]), U(a + off[t0 + 2])
                    q0 = U(co0 * G + gbase[sp])
                    q1, q2, q3 = q0 + U(G), q0 + U(2 * G), q0 + U(3 * G)
                    L = U(slen[sp])
                    for i in range(U(0), L, U(P)):
                        m = min(U(P), L - i)  # P, but fewer in the span's last step
                        u, v = load_first(src, oa + i, m), load_first(src, ob + i, m)
                        s = load_first(src, oc + i, m)
                        g0, g1 = load_first(gf, q0 + i, m), load_first(gf, q1 + i, m)
                        g2, g3 = load_first(gf, q2 + i, m), load_first(gf, q3 + i, m)
                        d00, d01, d02 = fma(d00, g0, u), fma(d01, g0, v), fma(d02, g0, s)
                        d10, d11, d12 = fma(d10, g1, u), fma(d11, g1, v), fma(d12, g1, s)
                        d20, d21, d22 = fma(d20, g2, u), fma(d21, g2, v), fma(d22, g2, s)
                        d30, d31, d32 = fma(d30, g3, u), fma(d31, g3, v), fma(d32, g3, s)
                p[co0, t0] += total(d00)
                p[co0, t0 + 1] += total(d01)
                p[co0, t0 + 2] += total(d02)
                p[co0 + 1, t0] += total(d10)
                p[co0 + 1, t0 + 1] += total(d11)
                p[co0 + 1, t0 + 2] += total(d12)
                p[co0 + 2, t0] += total(d20)
                p[co0 + 2, t0 + 1] += total(d21)
                p[co0 + 2, t0 + 2] += total(d22)
                p[co0 + 3, t0] += total(d30)
                p[co0 + 3, t0 + 1] += total(d31)
                p[co0 + 3, t0 + 2] += total(d32)


def _to_position_major(g, gt, rows, runs, part, parts):
    """gt[(n*OH + oh)*OW + ow, rows[c]] = g[n, c, oh, ow]: grad_out with the channels
    contiguous (rows that are no channel's are the caller's), for
    :func:`_weight_grad_cols`. Loop nest: parts of (n, oh) > channel > ow: each read row
    contiguous, the (n, oh) rows of ``gt`` in L1 for every channel; flat unsigned
    indices. With ``runs`` (``rows`` in runs of 16 consecutive columns, P == 16), 16
    channels x 16 positions at a time, transposed in registers (a scalar store each took
    3.7 ms of a 1x1 stride-2 256->512 layer's backward at 56x56)."""
    N, C, OH, OW = g.shape
    Cp = gt.shape[1]
    gf, gtf = g.reshape(g.size), gt.reshape(gt.size)
    lo, hi = span(N * OH, part, parts)
    for task in range(lo, hi):
        n, oh = task // OH, task % OH
        dst = U((n * OH + oh) * OW * Cp)
        if runs and P == 16:
            for c0 in range(0, C, 16):
                nc = min(16, C - c0)
                for ow0 in range(0, OW, 16):
                    m = min(16, OW - ow0)
                    v = transpose_rows(gf, U(((n * C + c0) * OH + oh) * OW + ow0),
                                       U(OH * OW), m, nc)
                    store_rows(gtf, dst + U(ow0 * Cp + rows[c0]), Cp, v, nc, m)
            continue
        for c in range(C):
            d0 = dst + U(rows[c])
            g0 = U(((n * C + c) * OH + oh) * OW)
            for ow in range(U(OW)):
                gtf[d0 + ow * U(Cp)] = gf[g0 + ow]


def _sum_row_parts(partial, rows, gw, part, parts):
    """gw[co, t] = sum over k of partial[k, rows[co], t] (in float64): the weight gradient
    from :func:`_weight_grad_rows`' chunks, in one pass (NumPy's sum, gather and cast
    made four passes over 19 MB of float64 for a 512-channel 3x3 layer)."""
    Co, T = gw.shape
    lo, hi = span(Co, part, parts)
    for co in range(lo, hi):
        r = rows[co]
        for t in range(T):
            s = 0.0
            for k in range(partial.shape[0]):
                s += partial[k, r, t]
            gw[co, t] = s


def _sum_column_parts(partial, cols, gw, block, split, part, parts):
    """gw[cols[r], t] = sum over k of partial[k, t, r] (in float64; ``cols[r]`` < 0: a padding
    column, dropped): the weight gradient from :func:`_weight_grad_cols`' chunks,
    transposed in one pass. Loop nest: parts of
    (``block`` columns of ``part``, 1/``split`` of the taps) > 16 taps > column > tap:
    the 16 taps' rows of the block in L1 for every column, each write a run of 16. A
    task sums the columns one task of :func:`_weight_grad_cols` wrote, so the thread
    that wrote them sums them (``split`` > 1 where there are fewer blocks than threads):
    read from the other core, the 9 MB of a 512-channel 3x3 layer's took 3 ms."""
    T = gw.shape[1]
    Cp = partial.shape[2]
    nt = -(-T // 16)  # runs of 16 taps
    lo, hi = span(Cp // block * split, part, parts)
    for task in range(lo, hi):
        cb, sp = task // split, task % split
        for tb in range(sp * nt // split, (sp + 1) * nt // split):
            t0, t1 = tb * 16, min(T, tb * 16 + 16)
            for r in range(cb * block, (cb + 1) * block):
                co = cols[r]
                if co < 0:
                    continue
                for t in range(t0, t1):
                    s = 0.0
                    for k in range(partial.shape[0]):
                        s += partial[k, t, r]
                    gw[co, t] = s


@njit(cache=True, inline="always")
def _cols_sums(partial, K, B, c0, kc, more):
    """``(pf, pitch, pc0)``: where a task of :func:`_weight_grad_cols` adds the sums of
    block ``B`` channels from ``c0`` for ``K`` taps, ``pf[t*pitch + pc0 + j]``: a buffer
    of its own (no chunks), or its columns of chunk ``kc``'s partial sums, zeroed first
    unless ``more``."""
    if partial.shape[0] == 0:
        pf = empty_lines(K * B, partial)  # (its vectors on whole lines)
        pf[:] = 0
        return pf, U(B), U(0)
    pk = partial[kc]
    if not more:
        for k in range(K):
            for j in range(B):
                pk[k, c0 + j] = 0
    return pk.reshape(pk.size), U(partial.shape[2]), U(c0)


WGC_C, WGC_K = 4, 6  # vectors of channels x taps a sweep of _weight_grad_cols
WGCN_K = 12  # taps a sweep of its narrow variant (one vector of channels)


@njit(cache=True, _nrt=False)
def _block_into_rows(pf, B, gw, cols, c0, more):
    """gw[cols[c0 + j], t] (+= with ``more``) = pf[t*B + j] for the real taps t and
    columns j (``cols`` < 0: padding, dropped): a block's tap-major sums into its rows of
    gw, 16 taps x 16 channels at a time transposed in registers."""
    T = gw.shape[1]
    gf = gw.reshape(gw.size)
    for t0 in range(0, T, 16):
        m = min(16, T - t0)
        for j0 in range(0, B, 16):
            if P != 16:
                for j in range(16):
                    co = cols[c0 + j0 + j]
                    for t in range(m if co >= 0 else 0):
                        at = U(co * T + t0 + t)
                        gf[at] = (gf[at] if more else 0) + pf[U((t0 + t) * B + j0 + j)]
                continue
            v = transpose_rows(pf, U(t0 * B + j0), U(B), 16, m)
            for j in range(16):
                co = cols[c0 + j0 + j]
                if co < 0:
                    continue
                row = U(co * T + t0)
                r = v[j]
                if more:
                    r = add(r, load_first(gf, row, m))
                store_first(gf, row, r, m)


def _weight_grad_cols(src, gt, off, cbase, rowsrc, OW, prow, partial, gw, cols, more, part,
                      parts):
    """partial[k, tap, c] (+= with ``more``: the next images' share) = sum over the
    output rows r of the pieces of chunk k and their outputs ow of gt[r*OW + ow, c] *
    src[cbase[c // (WGC_C*P)] + rowsrc[r] + off[tap] + ow]: the weight gradient with the
    channels as the vector lanes (``gt`` from :func:`_to_position_major`, its rows padded
    per group to WGC_C*P; ``off`` a multiple of WGC_K taps). Piece ``j`` is the rows
    ``prow[j] <= r < prow[j + 1]``, chunk k the pieces ``k*per <= j < (k+1)*per``; the
    caller sums ``part`` over chunks. With no chunks (``part`` empty) a task sums into a
    buffer of its own, then into its rows of ``gw`` (:func:`_block_into_rows`;
    ``cols[c]`` < 0: a padding column, dropped): no transposing pass over every task's
    sums (a 512-channel 3x3 layer's at 7x7 took 2.7 ms, a fifth of its sums), and no
    scalar adds into gw's rows a piece (64 lines a plane apart for 6 taps' sums: 1-2 ms
    of a 256-channel 3x3 layer's 10 at 14x14).

    Loop nest: parts of (block of WGC_C*P channels, chunk) > piece > WGC_K taps > row > ow.

    Optimizations:
    - WGC_K x WGC_C vector accumulators over a whole piece: each output position loads
      its WGC_C channel vectors (aligned) and broadcasts WGC_K source values, 10 loads
      for 24 FMAs, where the row-dot kernel's (:func:`_weight_grad_rows`) 12 FMAs take 7
      loads, most of them split across cache lines, and 12 sums across lanes;
    - only real outputs are visited (no lanes past a row, no zero padding of grad_out);
    - each task owns its block's columns of ``part[k]`` or rows of ``gw`` (no shared +=)."""
    K = off.shape[0]
    direct = partial.shape[0] == 0
    Cp = gt.shape[1]
    B = WGC_C * P
    gf = gt.reshape(gt.size)
    npiece = prow.shape[0] - 1
    nchunk = max(1, partial.shape[0])
    per = -(-npiece // nchunk)
    lo, hi = span(Cp // B * nchunk, part, parts)
    for task in range(lo, hi):
        cb, kc = task // nchunk, task % nchunk
        c0 = cb * B
        pf, pitch, pc0 = _cols_sums(partial, K, B, c0, kc, more)
        for pc in range(kc * per, min(npiece, (kc + 1) * per)):
            for k0 in range(0, K, WGC_K):
                c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zeros(gf)
                c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zeros(gf)
                c40 = c41 = c42 = c43 = c50 = c51 = c52 = c53 = zeros(gf)
                for r in range(prow[pc], prow[pc + 1]):
                    sb = cbase[cb] + rowsrc[r]
                    a0, a1, a2 = U(sb + off[k0]), U(sb + off[k0 + 1]), U(sb + off[k0 + 2])
                    a3, a4, a5 = U(sb + off[k0 + 3]), U(sb + off[k0 + 4]), U(sb + off[k0 + 5])
                    q = U(r * OW * Cp + c0)
                    for ow in range(U(OW)):
                        qq = q + ow * U(Cp)
                        g0, g1 = load(gf, qq), load(gf, qq + U(P))
                        g2, g3 = load(gf, qq + U(2 * P)), load(gf, qq + U(3 * P))
                        x = src[a0 + ow]
                        c00, c01 = fma(c00, x, g0), fma(c01, x, g1)
                        c02, c03 = fma(c02, x, g2), fma(c03, x, g3)
                        x = src[a1 + ow]
                        c10, c11 = fma(c10, x, g0), fma(c11, x, g1)
                        c12, c13 = fma(c12, x, g2), fma(c13, x, g3)
                        x = src[a2 + ow]
                        c20, c21 = fma(c20, x, g0), fma(c21, x, g1)
                        c22, c23 = fma(c22, x, g2), fma(c23, x, g3)
                        x = src[a3 + ow]
                        c30, c31 = fma(c30, x, g0), fma(c31, x, g1)
                        c32, c33 = fma(c32, x, g2), fma(c33, x, g3)
                        x = src[a4 + ow]
                        c40, c41 = fma(c40, x, g0), fma(c41, x, g1)
                        c42, c43 = fma(c42, x, g2), fma(c43, x, g3)
                        x = src[a5 + ow]
                        c50, c51 = fma(c50, x, g0), fma(c51, x, g1)
                        c52, c53 = fma(c52, x, g2), fma(c53, x, g3)
                for i in range(WGC_K):
                    o = U(k0 + i) * pitch + pc0
                    v0, v1, v2, v3 = ((c00, c01, c02, c03) if i == 0 else
                                      (c10, c11, c12, c13) if i == 1 else
                                      (c20, c21, c22, c23) if i == 2 else
                                      (c30, c31, c32, c33) if i == 3 else
                                      (c40, c41, c42, c43) if i == 4 else
                                      (c50, c51, c52, c53))
                    store(pf, o, add(load(pf, o), v0))
                    store(pf, o + U(P), add(load(pf, o + U(P)), v1))
                    store(pf, o + U(2 * P), add(load(pf, o + U(2 * P)), v2))
                    store(pf, o + U(3 * P), add(load(pf, o + U(3 * P)), v3))
        if direct:
            _block_into_rows(pf, B, gw, cols, c0, more)


def _weight_grad_cols_narrow(src, gt, off, cbase, rowsrc, OW, prow, partial, gw, cols, more,
                             part, parts):
    """:func:`_weight_grad_cols` in blocks of P channels (``gt``'s rows padded per group to
    P, ``off`` a multiple of WGCN_K taps): for 16 or 32 channels a group (ResNeXt's deeper
    layers), which blocks of 4 vectors would pad to 64. Each output position loads its
    channel vector and broadcasts WGCN_K source values: 13 loads for 12 FMAs, where the
    rows' dot products ran a 32-group 1024-channel layer at 7x7 at a third of peak.

    Loop nest: parts of (block of P channels, chunk) > piece > WGCN_K taps > row > ow."""
    K = off.shape[0]
    direct = partial.shape[0] == 0
    Cp = gt.shape[1]
    gf = gt.reshape(gt.size)
    npiece = prow.shape[0] - 1
    nchunk = max(1, partial.shape[0])
    per = -(-npiece // nchunk)
    lo, hi = span(Cp // P * nchunk, part, parts)
    for task in range(lo, hi):
        cb, kc = task // nchunk, task % nchunk
        c0 = cb * P
        pf, pitch, pc0 = _cols_sums(partial, K, P, c0, kc, more)
        for pc in range(kc * per, min(npiece, (kc + 1) * per)):
            for k0 in range(0, K, WGCN_K):
                d0 = d1 = d2 = d3 = d4 = d5 = d6 = d7 = d8 = d9 = d10 = d11 = zeros(gf)
                for r in range(prow[pc], prow[pc + 1]):
                    sb = cbase[cb] + rowsrc[r]
                    a0, a1, a2 = U(sb + off[k0]), U(sb + off[k0 + 1]), U(sb + off[k0 + 2])
                    a3, a4, a5 = U(sb + off[k0 + 3]), U(sb + off[k0 + 4]), U(sb + off[k0 + 5])
                    a6, a7, a8 = U(sb + off[k0 + 6]), U(sb + off[k0 + 7]), U(sb + off[k0 + 8])
                    a9, a10 = U(sb + off[k0 + 9]), U(sb + off[k0 + 10])
                    a11 = U(sb + off[k0 + 11])
                    q = U(r * OW * Cp + c0)
                    for ow in range(U(OW)):
                        v = load(gf, q + ow * U(Cp))
                        d0, d1 = fma(d0, src[a0 + ow], v), fma(d1, src[a1 + ow], v)
                        d2, d3 = fma(d2, src[a2 + ow], v), fma(d3, src[a3 + ow], v)
                        d4, d5 = fma(d4, src[a4 + ow], v), fma(d5, src[a5 + ow], v)
                        d6, d7 = fma(d6, src[a6 + ow], v), fma(d7, src[a7 + ow], v)
                        d8, d9 = fma(d8, src[a8 + ow], v), fma(d9, src[a9 + ow], v)
                        d10, d11 = fma(d10, src[a10 + ow], v), fma(d11, src[a11 + ow], v)
                for i in range(WGCN_K):
                    o = U(k0 + i) * pitch + pc0
                    v = (d0 if i == 0 else d1 if i == 1 else d2 if i == 2 else d3 if i == 3
                         else d4 if i == 4 else d5 if i == 5 else d6 if i == 6 else d7
                         if i == 7 else d8 if i == 8 else d9 if i == 9 else d10 if i == 10
                         else d11)
                    store(pf, o, add(load(pf, o), v))
        if direct:
            _block_into_rows(pf, P, gw, cols, c0, more)


def _weight_grad_exact(x, g, pixsrc, slot, pair_start, tap, off, class_start, cbase, gw,
                       cols, part, parts):
    """gw[cols[c], t] = sum over (image, position) pairs of grad_out[pair, channel of
    column c] * x[pair's source + off[t]], in blocks of P columns (channels as the
    lanes, as :func:`_weight_grad_cols_narrow`), class by class: class ``k``'s pairs
    ``pair_start[k]:pair_start[k + 1]`` read the image for each of its taps
    ``class_start[k]:class_start[k + 1]`` (the plan pads each class's taps to a multiple
    of WGCN_K with repeats of its first offset, tap id ``T``: a row past gw's), so the
    sums skip every tap that reads padding and read ``x`` itself (``pixsrc`` and ``off``
    in its coordinates, a pair's source maybe before its plane, wrapping as unsigned),
    where the narrow columns read a padded copy and multiplied its zeros (18% of the taps
    of a 7x7 map). ``cbase[cb]`` is block ``cb``'s group's first channel in ``x``; a
    block's columns are consecutive channels (``cols``, -1 past a group's last).

    Each block first transposes its channels of ``g`` (NCHW) into a buffer of its own,
    position-major (slot ``n*OH*OW + p``, P lanes): in cache, where a pass over all of
    grad_out first (:func:`_to_position_major`) wrote 3.2 MB for a 512-channel layer at
    14x14 and read it back.

    Loop nest: parts of blocks > (in: images > positions by 16) > class > WGCN_K taps >
    pair: one vector load of grad_out and WGCN_K broadcast source values a pair."""
    T = gw.shape[1]
    N, Co, OH, OW = g.shape
    OHW = OH * OW
    gf, xf = g.reshape(g.size), x.reshape(x.size)
    lo, hi = span(cols.shape[0] // P, part, parts)
    for cb in range(lo, hi):
        c0 = cb * P
        nc = 0
        for j in range(P):
            nc += cols[c0 + j] >= 0
        gt = empty_lines(N * OHW * P, g)
        for n in range(N):
            for p0 in range(0, OHW, 16):
                m = min(16, OHW - p0)
                v = transpose_rows(gf, U((n * Co + cols[c0]) * OHW + p0), U(OHW), m, nc)
                store_rows(gt, U((n * OHW + p0) * P), U(P), v, P, m)
        pf = empty_lines((T + 1) * P, g)  # (row T: the padding taps' sums, dropped)
        pf[:] = 0
        gb = U(cbase[cb])
        for k in range(pair_start.shape[0] - 1):
            for t0 in range(class_start[k], class_start[k + 1], WGCN_K):
                o0, o1, o2 = off[t0], off[t0 + 1], off[t0 + 2]
                o3, o4, o5 = off[t0 + 3], off[t0 + 4], off[t0 + 5]
                o6, o7, o8 = off[t0 + 6], off[t0 + 7], off[t0 + 8]
                o9, o10, o11 = off[t0 + 9], off[t0 + 10], off[t0 + 11]
                d0 = d1 = d2 = d3 = d4 = d5 = d6 = d7 = d8 = d9 = d10 = d11 = zeros(gt)
                for i in range(pair_start[k], pair_start[k + 1]):
                    b = gb + U(pixsrc[i])
                    v = load(gt, U(slot[i] * P))
                    d0, d1 = fma(d0, xf[b + o0], v), fma(d1, xf[b + o1], v)
                    d2, d3 = fma(d2, xf[b + o2], v), fma(d3, xf[b + o3], v)
                    d4, d5 = fma(d4, xf[b + o4], v), fma(d5, xf[b + o5], v)
                    d6, d7 = fma(d6, xf[b + o6], v), fma(d7, xf[b + o7], v)
                    d8, d9 = fma(d8, xf[b + o8], v), fma(d9, xf[b + o9], v)
                    d10, d11 = fma(d10, xf[b + o10], v), fma(d11, xf[b + o11], v)
                for j in range(WGCN_K):
                    o = U(tap[t0 + j] * P)
                    d = (d0 if j == 0 else d1 if j == 1 else d2 if j == 2 else d3 if j == 3
                         else d4 if j == 4 else d5 if j == 5 else d6 if j == 6 else d7
                         if j == 7 else d8 if j == 8 else d9 if j == 9 else d10 if j == 10
                         else d11)
                    store(pf, o, add(load(pf, o), d))
        _block_into_rows(pf, P, gw, cols, c0, False)


def _both(**kernels):
    """``(parallel, serial)``: namespaces of the same kernels, run on every thread or on
    this one (see :func:`kernels.cpu._parts.parallel_and_serial_parts`: each is compiled
    once for both)."""
    parallel, serial = SimpleNamespace(), SimpleNamespace()
    for name, (fn, options) in kernels.items():
        p, s = parallel_and_serial_parts(fn, **options)
        setattr(parallel, name, p)
        setattr(serial, name, s)
    return parallel, serial


parallel, serial = _both(
    forward=(_forward, WITH_NRT), grad_input=(_grad_input, {}),
    grad_weight=(_grad_weight, WITH_NRT),
    pad_phases=(_pad_phases, {}), pad_phase_pairs=(_pad_phase_pairs, {}),
    pad_runs=(_pad_runs, {}),
    unphase=(_unphase, {}), crop=(_crop, {}),
    widen=(_widen, {}),
    to_batch_lanes=(_to_batch_lanes, {}), to_batch_lanes_rows=(_to_batch_lanes_rows, {}),
    to_pitch_rows=(_to_pitch_rows, {}),
    from_lanes=(_from_lanes, {}),
    channel_sums=(_channel_sums, {"fastmath": {"reassoc"}}),
    weight_grad_rows=(_weight_grad_rows, {}),
    to_position_major=(_to_position_major, {}), weight_grad_cols=(_weight_grad_cols, WITH_NRT),
    weight_grad_cols_narrow=(_weight_grad_cols_narrow, WITH_NRT),
    weight_grad_exact=(_weight_grad_exact, WITH_NRT),
    tap_major=(_tap_major, {}),
    sum_row_parts=(_sum_row_parts, {}), sum_column_parts=(_sum_column_parts, {}),
)
parallel.tiled, serial.tiled = tiles.forward, tiles.forward_serial
parallel.tiled_few, serial.tiled_few = tiles.forward_few, tiles.forward_few_serial
parallel.tiled_groups, serial.tiled_groups = tiles.forward_groups, tiles.forward_groups_serial
parallel.by_channels = serial.by_channels = tiles.forward_channels
parallel.dw_forward, serial.dw_forward = depthwise.forward, depthwise.forward_serial
parallel.dw_forward_rows = depthwise.forward_rows
parallel.dw_input_grad2, serial.dw_input_grad2 = depthwise.input_grad2, depthwise.input_grad2_serial
parallel.dw_forward_channels = depthwise.forward_channels
parallel.dw_forward_masked, serial.dw_forward_masked = (depthwise.forward_masked,
                                                        depthwise.forward_masked_serial)
parallel.dw_weight_grad_masked, serial.dw_weight_grad_masked = (
    depthwise.weight_grad_masked, depthwise.weight_grad_masked_serial)
parallel.dw_weight_grad_channels = depthwise.weight_grad_channels
serial.dw_weight_grad_channels = depthwise.weight_grad_channels_serial
serial.dw_forward_channels = depthwise.forward_channels_serial
serial.dw_forward_rows = depthwise.forward_rows_serial
parallel.dw_weight_grad, serial.dw_weight_grad = depthwise.weight_grad, depthwise.weight_grad_serial
