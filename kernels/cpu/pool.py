"""Numba pooling kernels on (planes, H, W) views: one prange iteration per N·C plane.

Every kernel writes only its own plane, so the max-pooling scatter-add (where
overlapping windows pick the same input) and the average-pooling spread
accumulate without races. Kernel bodies are plain Python compiled at the
bottom of the file (``NUMBA_DISABLE_JIT=1`` runs them as Python).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._jit import U


def _columns(j, OW, W, sw, pw):
    """The outputs ``ow`` whose window column ``j`` lands inside the input:
    ``0 <= ow*sw - pw + j < W``, as a ``range(lo, hi)`` (so the inner loop needs no test)."""
    lo = 0 if pw - j <= 0 else (pw - j + sw - 1) // sw
    hi = min(OW, (W - 1 + pw - j) // sw + 1)
    return lo, hi


def _max_pool2d(x, y, indices, kh, kw, sh, sw, ph, pw):
    """y[p, oh, ow] = max over the window of x[p]; indices = its flat position ih*W + iw.

    Loop nest: prange p (plane) > oh > ow > ih > iw (the window, clipped to the input).

    Optimizations:
    - the running max and its index live in registers, one store per output (a running
      max kept in the output row costs a load and two stores per window element);
    - windows are visited in torch's order (ih, then iw), so ties keep the first and a
      NaN wins (the last NaN);
    - the update is two selects, not a branch: on random data "is it larger?" is a
      coin flip the branch predictor loses.
    """
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for p in prange(P):
        xp = x[p]
        for oh in range(OH):
            h0 = oh * sh - ph
            hs, he = max(h0, 0), min(h0 + kh, H)
            yrow = y[p, oh]
            irow = indices[p, oh]
            for ow in range(OW):
                w0 = ow * sw - pw
                ws, we = max(w0, 0), min(w0 + kw, W)
                m = xp[hs, ws]
                mi = hs * W + ws
                for ih in range(hs, he):
                    xrow = xp[U(ih)]
                    for iw in range(ws, we):
                        v = xrow[U(iw)]
                        take = (v > m) | (v != v)
                        m = v if take else m
                        mi = ih * W + iw if take else mi
                yrow[ow] = m
                irow[ow] = mi


def _max_pool2d_2x2(x, y, indices):
    """:func:`_max_pool2d` for 2x2 windows at stride 2, all inside the input (LeNet's
    pooling): the same visiting order and NaN/tie rules, with the window unrolled.

    Loop nest: prange p (plane) > oh > ow (contiguous output row).
    Optimizations: the four candidates sit at constant offsets 0 and 1 of two input
    rows, so LLVM vectorizes the row with interleaved (stride-2) loads and selects."""
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for p in prange(P):
        for oh in range(OH):
            r0, r1 = x[p, 2 * oh], x[p, 2 * oh + 1]
            yrow, irow = y[p, oh], indices[p, oh]
            i0 = 2 * oh * W
            for ow in range(OW):
                m, mi = r0[2 * ow], i0 + 2 * ow
                v = r0[2 * ow + 1]
                take = (v > m) | (v != v)
                m, mi = (v, i0 + 2 * ow + 1) if take else (m, mi)
                v = r1[2 * ow]
                take = (v > m) | (v != v)
                m, mi = (v, i0 + W + 2 * ow) if take else (m, mi)
                v = r1[2 * ow + 1]
                take = (v > m) | (v != v)
                m, mi = (v, i0 + W + 2 * ow + 1) if take else (m, mi)
                yrow[ow] = m
                irow[ow] = mi


def _max_pool2d_backward(grad_out, indices, grad_x):
    """grad_x[p, indices[p, o]] += grad_out[p, o]; returns how many indices were out of range.

    Loop nest: prange p (plane) > o (flat output). Each plane's scatter is serial, so
    repeated indices (overlapping windows) accumulate exactly; out-of-range indices
    are counted and skipped, never written.
    """
    P, L = grad_out.shape
    HW = grad_x.shape[1]
    bad = 0
    for p in prange(P):
        gx = grad_x[p]
        gx[:] = 0
        for o in range(L):
            i = indices[p, o]
            if i < 0 or i >= HW:
                bad += 1
            else:
                gx[i] += grad_out[p, o]
    return bad


def _avg_pool2d(x, y, divisor, kh, kw, sh, sw, ph, pw):
    """y[p, oh, ow] = sum of the clipped window of x[p] / divisor[oh, ow].

    Loop nest: prange p > oh > ih (window rows, clipped) > j (window column) > ow.

    Optimizations: the output row is the accumulator (in the array dtype, as torch);
    the innermost loop runs over the contiguous output row with no bounds test.
    """
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for p in prange(P):
        for oh in range(OH):
            h0 = oh * sh - ph
            yrow = y[p, oh]
            yrow[:] = 0
            for ih in range(max(h0, 0), min(h0 + kh, H)):
                xrow = x[p, ih]
                for j in range(kw):
                    lo, hi = _columns(j, OW, W, sw, pw)
                    for ow in range(lo, hi):
                        yrow[ow] += xrow[U(ow * sw - pw + j)]
            for ow in range(OW):
                yrow[ow] /= divisor[oh, ow]


def _avg_pool2d_backward(grad_out, grad_x, divisor, kh, kw, sh, sw, ph, pw):
    """grad_x[p, ih, iw] += grad_out[p, oh, ow] / divisor[oh, ow] over every window holding it.

    Loop nest: prange p > oh > ih (window rows, clipped) > j (window column) > ow.

    Optimizations: each output row is divided once into a per-plane scratch row,
    then added into kh·kw shifted, strided slices of the input gradient.
    """
    P, H, W = grad_x.shape
    OH, OW = grad_out.shape[1], grad_out.shape[2]
    for p in prange(P):
        gx = grad_x[p]
        gx[:] = 0
        share = np.empty(OW, dtype=grad_x.dtype)
        for oh in range(OH):
            for ow in range(OW):
                share[ow] = grad_out[p, oh, ow] / divisor[oh, ow]
            h0 = oh * sh - ph
            for ih in range(max(h0, 0), min(h0 + kh, H)):
                gxrow = gx[ih]
                for j in range(kw):
                    lo, hi = _columns(j, OW, W, sw, pw)
                    for ow in range(lo, hi):
                        gxrow[U(ow * sw - pw + j)] += share[ow]


_columns = njit(inline="always", cache=True)(_columns)
max_pool2d = njit(parallel=True, cache=True)(_max_pool2d)
max_pool2d_2x2 = njit(parallel=True, cache=True)(_max_pool2d_2x2)
max_pool2d_backward = njit(parallel=True, cache=True)(_max_pool2d_backward)
avg_pool2d = njit(parallel=True, cache=True)(_avg_pool2d)
avg_pool2d_backward = njit(parallel=True, cache=True)(_avg_pool2d_backward)
