"""Copies into the conv kernels' layouts, one piece at a time: a plane of the zero-padded,
stride-phase source and a block of tap-major weights.

They are inline helpers (Numba inlines them into the caller's IR, so a call costs no
reference counting), so that a kernel can make the copies its own thread computes on:
on a VM whose cores share no cache, overwriting lines that another core has just read
took 9 times as long as overwriting one's own (6 MB: 3.3 ms against 0.36 ms).
"""

import numpy as np
from numba import njit

from ._jit import U
from ._simd import (
    P,
    copy_even,
    deinterleave_run,
    load_masked,
    store_first,
    store_rows,
    transpose_rows,
)
from ._simd import zero as _zero
from ._simd import zeros as _zeros


@njit(cache=True, inline="always")
def pad_plane(xf, H, W, nc, phase, dst, at, top, left, sh, sw, Hq, Wq):
    """``dst[at + i*Wq + j] = xp[nc, i*sh + ph, j*sw + pw]`` for the phase
    ``(ph, pw) = divmod(phase, sw)`` of plane ``nc`` (image * channels + channel) of
    ``xf`` (``x`` flat, its planes ``H x W``), ``xp`` being ``x`` padded by
    ``top``/``left`` with zeros past its end (see :func:`kernels.cpu.conv.pad_phases`)."""
    zero = _zero(dst)
    ph, pw = phase // sw, phase % sw
    # columns j of the phase that hold input columns: j*sw + pw - left in [0, W)
    j0 = min(Wq, max(0, (left - pw + sw - 1) // sw))
    j1 = min(Wq, max(j0, (left + W - pw + sw - 1) // sw))
    for i in range(Hq):
        h = i * sh + ph - top
        row = at + U(i * Wq)
        inside = 0 <= h < H
        xr = U((nc * H + h) * W) if inside else U(0)
        a, b = (j0, j1) if inside else (Wq, Wq)
        for j in range(a):
            dst[row + U(j)] = zero
        if sw == 1:  # a contiguous copy (vectorizes)
            for j in range(a, b):
                dst[row + U(j)] = xf[xr + U(j - left)]
        elif sw == 2 and b > a:
            copy_even(xf, xr + U(a * 2 + pw - left), dst, row + U(a), b - a)
        else:
            for j in range(a, b):
                dst[row + U(j)] = xf[xr + U(j * sw + pw - left)]
        for j in range(b, Wq):
            dst[row + U(j)] = zero


@njit(cache=True, inline="always")
def tap_major_block(wf, T, cog, cogp, blk, B, dst, at):
    """``dst[at + t*B + j] = w[g*cog + r, t]`` for the rows ``blk*B + j = g*cogp + r``
    of block ``blk`` (0 for ``r >= cog``: a group's padding rows), ``wf`` being the
    weights ``(Co, T)`` flat. Loop nest: 64 taps > row of the block > tap: the 64 x B
    piece read and written in L1 (a row or a tap at a time, a 512-channel 3x3 layer's
    rows, 18 KB apart, missed the TLB); with 16 lanes, 16 rows x 16 taps at a time,
    transposed in registers (:func:`kernels.cpu._simd.transpose_rows`; a scalar store
    each, a 512-channel 3x3 layer's 9.4 MB took 2.4 ms)."""
    zero = _zero(dst)
    if P == 16 and B % 16 == 0:
        for t0 in range(0, T, 64):
            t1 = min(T, t0 + 64)
            for j0 in range(0, B, 16):
                g, r0 = (blk * B + j0) // cogp, (blk * B + j0) % cogp
                nreal = max(0, min(16, cog - r0))  # the rest pad the group's last block
                row = U((g * cog + r0) * T) if nreal > 0 else U(0)
                for ta in range(t0, t1, 16):
                    m = min(16, t1 - ta)
                    store_rows(dst, at + U(ta * B + j0), B,
                               transpose_rows(wf, row + U(ta), U(T), m, nreal), 16, m)
        return
    for t0 in range(0, T, 64):
        t1 = min(T, t0 + 64)
        for j in range(B):
            g, r = (blk * B + j) // cogp, (blk * B + j) % cogp
            if r >= cog:
                for t in range(t0, t1):
                    dst[at + U(t * B + j)] = zero
            else:
                row = U((g * cog + r) * T)
                for t in range(t0, t1):
                    dst[at + U(t * B + j)] = wf[row + U(t)]


@njit(cache=True, inline="always")
def flipped_tap_major_block(wf, Cog, Cg, KK, blk, B, cgp, dst, at):
    """:func:`tap_major_block` of the weights ``w'`` of the input gradient computed as a
    convolution, ``w'[g*Cg + ci, co, k] = w[g*Cog + co, ci, KK-1-k]`` (the kernel's KK
    taps flipped, input and output channels swapped in each of the groups), read from
    ``wf``, ``w`` flat, without making ``w'`` (a copy the size of the weights, then
    copied again). Rows ``blk*B + j = g*cgp + ci`` (0 for ``ci >= Cg``), taps
    ``co*KK + k``. Loop nest: tap > row: each tap's B weights written in a run, read
    KK apart (for a 1x1 layer, a run of ``w`` too)."""
    zero = _zero(dst)
    g, ci0 = blk * B // cgp, blk * B % cgp  # a block's rows are of one group
    nreal = max(0, min(B, Cg - ci0))  # the rest pad the group's last block
    for co in range(Cog):
        for k in range(KK):
            src = U(((g * Cog + co) * Cg + ci0) * KK + KK - 1 - k)
            row = at + U((co * KK + k) * B)
            for j in range(nreal):
                dst[row + U(j)] = wf[src + U(j * KK)]
            for j in range(nreal, B):
                dst[row + U(j)] = zero


@njit(cache=True, inline="always")
def pad_row_phase(xf, H, W, nc, ph, dst, at, top, left, sh, Hq, Wq):
    """:func:`pad_plane` for both column phases of row phase ``ph`` at a column stride of
    2, phase ``2*ph + pw`` going to ``dst[at + pw*Hq*Wq:]``: each input row split into
    the two at once (:func:`kernels.cpu._simd.deinterleave_run`), each element loaded
    once."""
    zero = _zero(dst)
    plane = Hq * Wq
    # input column c goes to column (c + left) // 2 of phase (c + left) % 2: the even
    # columns to phase pe from column je, the odd ones to phase 1 - pe from jo
    pe, je, jo = left % 2, left // 2, (left + 1) // 2
    ne, no = (W + 1) // 2, W // 2
    for i in range(Hq):
        h = i * sh + ph - top
        for pw in range(2):
            row = at + U(pw * plane + i * Wq)
            if not 0 <= h < H:
                a = b = Wq
            elif pw == pe:
                a, b = je, min(Wq, je + ne)
            else:
                a, b = jo, min(Wq, jo + no)
            for j in range(a):
                dst[row + U(j)] = zero
            for j in range(b, Wq):
                dst[row + U(j)] = zero
        if 0 <= h < H:
            deinterleave_run(xf, U((nc * H + h) * W), dst, at + U(pe * plane + i * Wq + je),
                             at + U((1 - pe) * plane + i * Wq + jo), W)


@njit(cache=True, inline="always")
def pad_channel(xf, H, W, nc, dst, at, used, top, left, sh, sw, Hq, Wq):
    """Every ``used`` stride phase of plane ``nc`` into ``dst[at:]``, phase after phase
    (:func:`pad_plane`; :func:`pad_row_phase` for a row phase whose two column phases
    are both used)."""
    plane = Hq * Wq
    for ph in range(sh):
        if sw == 2 and used[2 * ph] and used[2 * ph + 1]:
            pad_row_phase(xf, H, W, nc, ph, dst, at + U(2 * ph * plane), top, left, sh, Hq,
                          Wq)
            continue
        for pw in range(sw):
            if used[ph * sw + pw]:
                pad_plane(xf, H, W, nc, ph * sw + pw, dst, at + U((ph * sw + pw) * plane),
                          top, left, sh, sw, Hq, Wq)


@njit(cache=True, inline="always")
def pad_plane_runs(xf, H, W, nc, dst, at, top, left, Hq, Wq):
    """:func:`pad_plane` at stride 1, each row P columns at a time, padding and input at
    once: a masked load (the padding's lanes read nothing) and a store. The element
    loops took 3-4x as long on the channels-as-lanes layers' small planes (a 32-group
    512-channel layer's forward and input gradient at 14x14: 8-12 ms against 3.1-3.6),
    but 0.3-0.5 s more to compile: the stride-phase split, which a first LeNet call
    compiles, keeps them."""
    for i in range(Hq):
        h = i - top
        row = at + U(i * Wq)
        inside = 0 <= h < H
        xr = U((nc * H + h) * W) if inside else U(0)
        a, b = (min(Wq, left), min(Wq, left + W)) if inside else (Wq, Wq)
        for k in range(0, Wq, P):
            lo, hi = min(P, max(0, a - k)), min(P, max(0, b - k))
            v = load_masked(xf, xr + U(k) - U(left), (1 << hi) - (1 << lo), _zeros(dst))
            store_first(dst, row + U(k), v, min(P, Wq - k))


ONE_PHASE = np.ones(1, dtype=np.uint8)  # pad_channels' ``used`` at stride 1: one phase


@njit(cache=True, _nrt=False)
def pad_channels(xf, H, W, nc0, nc1, dst, used, top, left, sh, sw, Hq, Wq):
    """:func:`pad_channel` for planes ``nc0 <= nc < nc1``, one after the other from
    ``dst[0]`` (at stride 1, :func:`pad_plane_runs`): a function that is called, not
    inlined (inlined into the kernel that pads its own source, it took seconds more to
    compile)."""
    plane = sh * sw * Hq * Wq
    for nc in range(nc0, nc1):
        if sh == 1 and sw == 1:
            pad_plane_runs(xf, H, W, nc, dst, U((nc - nc0) * plane), top, left, Hq, Wq)
        else:
            pad_channel(xf, H, W, nc, dst, U((nc - nc0) * plane), used, top, left, sh, sw,
                        Hq, Wq)


@njit(cache=True, _nrt=False)
def tap_major_blocks(wf, T, cog, cgp, cb0, cb1, B, dst, flip, KK):
    """Blocks ``cb0 <= cb < cb1`` of tap-major weights one after the other from
    ``dst[0]`` (:func:`tap_major_block`; :func:`flipped_tap_major_block` with ``flip``,
    ``KK`` taps a kernel): called, not inlined, as :func:`pad_channels`."""
    for cb in range(cb0, cb1):
        at = U((cb - cb0) * T * B)
        if flip:
            flipped_tap_major_block(wf, T // KK, cog, KK, cb, B, cgp, dst, at)
        else:
            tap_major_block(wf, T, cog, cgp, cb, B, dst, at)
