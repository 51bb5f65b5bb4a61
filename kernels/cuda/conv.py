"""CUDA conv2d forward and backward, tiled in shared memory.

The host wrappers take :mod:`kernels.conv`'s arguments with device arrays, validate them
with the same checks (:mod:`kernels._rules.conv`'s ``_forward_args``/``_backward_args``,
the arrays going through :func:`._arrays.device`), and return device arrays of x's
dtype. The maths is :mod:`kernels.reference.conv`'s. Every kernel works on the
unpadded input and reads padding as zeros, with signed offsets ``top``/``left`` (so
:mod:`.correlate` can use the forward kernel for any window of a full correlation).

Three kernels, each thread owning what it writes (no atomics, no races):

- ``forward``: a block computes a tile of output pixels for one (n, block of COB output
  channels), staging the input tile and its halo, and the weights, in shared memory;
- ``grad_input``: a gather, the forward's mirror: a block computes a tile of input
  pixels for one (n, block of CIB input channels), each summing over the outputs that
  read it, from a grad_out tile staged in shared memory;
- ``grad_params``: one block per weight element (and per bias), a block-level tree
  reduction over (n, oh, ow) in shared memory. Why not atomics: the sum is
  deterministic (same order every run), and float32 kernels stay float32 (float64
  atomics would put .f64 arithmetic in them, and are slow on consumer GPUs).

Kernel taps are staged in chunks (``kch x kcw``), chosen on the host with the tile size so
that any kernel size, stride and dilation fits the fixed shared buffers.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32, float64

from .._rules.conv import _backward_args, _forward_args
from ._arrays import device, empty, stream, zeros
from ._launch import THREADS, blocks, launch, z_blocks
from ._reduce import block_sum
from .ptx import register

COB = 4  # output channels per thread in `forward` (each staged input value used COB times)
CIB = 4  # input channels per thread in `grad_input`
XS = 2048  # shared elements for an input (or grad_out) tile with its halo (16 KiB in float64)
TAPS = 64  # kernel taps staged per chunk
WS = max(COB, CIB) * TAPS  # shared elements for a chunk's weights (a literal for Numba)
REDUCE_MIN = 16  # items a reduction thread sums at least, before the tree (log2 syncs)


def _make(dt):
    """The kernels for one Numba float type ``dt``: shared and local arrays need a
    compile-time dtype, and ``dt(0)`` keeps float32 accumulators float32."""

    @cuda.jit
    def forward(x, w, b, y, sh, sw, top, left, dh, dw, groups, kch, kcw, flip):
        """y[n, co, oh, ow] = b[co] + sum_{ci, kh, kw} w[co, ci, kh, kw] *
        x[n, g*Cg + ci, oh*sh + kh*dh - top, ow*sw + kw*dw - left] (zero outside x);
        ``flip`` stores at (OH-1-oh, OW-1-ow) instead.

        Threads: one per output pixel of a (th x tw) tile, x along ow; grid z over planes
        (n, group, block of COB channels), looping when there are more than gridDim.z.
        Loop nest per block: ci < Cg, tap chunks (kh0, kw0) -> stage, sync, accumulate.

        Optimizations:
        - the input tile + halo of each (ci, tap chunk) is loaded once per block into
          shared memory (coalesced along rows) and read by every thread and tap;
        - the chunk's weights sit in shared memory and are read as broadcasts;
        - COB output channels per thread, accumulated in registers: each staged input
          value feeds COB multiply-adds; the loops over them have a constant trip count
          (a short group's missing channels get zero weights) so NVVM unrolls them and
          ``acc`` never spills to local memory (checked in the PTX);
        - accumulators and staged values in x's dtype (no float64 in float32 kernels).
        """
        xs = cuda.shared.array(XS, dt)
        ws = cuda.shared.array(WS, dt)
        acc = cuda.local.array(COB, dt)
        N, C, H, W = x.shape
        Co, Cg, KH, KW = w.shape
        OH, OW = y.shape[2], y.shape[3]
        Cog = Co // groups
        ncb = (Cog + COB - 1) // COB
        th, tw = cuda.blockDim.y, cuda.blockDim.x
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        tid, nthreads = ty * tw + tx, th * tw
        oh0, ow0 = cuda.blockIdx.y * th, cuda.blockIdx.x * tw
        oh, ow = oh0 + ty, ow0 + tx
        for plane in range(cuda.blockIdx.z, N * groups * ncb, cuda.gridDim.z):
            n = plane // (groups * ncb)
            g = (plane // ncb) % groups
            co0 = g * Cog + (plane % ncb) * COB
            nco = min(COB, (g + 1) * Cog - co0)
            for c in range(COB):
                acc[c] = dt(0)
            for ci in range(Cg):
                for kh0 in range(0, KH, kch):
                    for kw0 in range(0, KW, kcw):
                        nh, nw = min(kch, KH - kh0), min(kcw, KW - kw0)
                        rh = (th - 1) * sh + (nh - 1) * dh + 1
                        rw = (tw - 1) * sw + (nw - 1) * dw + 1
                        ih0, iw0 = oh0 * sh + kh0 * dh - top, ow0 * sw + kw0 * dw - left
                        cuda.syncthreads()  # the previous chunk has been consumed
                        for k in range(tid, rh * rw, nthreads):
                            ih, iw = ih0 + k // rw, iw0 + k % rw
                            v = dt(0)
                            if ih >= 0 and ih < H and iw >= 0 and iw < W:
                                v = x[n, g * Cg + ci, ih, iw]
                            xs[k] = v
                        for k in range(tid, COB * nh * nw, nthreads):
                            c, t = k // (nh * nw), k % (nh * nw)
                            v = dt(0)  # channels past the group's last: zero weights
                            if c < nco:
                                v = w[co0 + c, ci, kh0 + t // nw, kw0 + t % nw]
                            ws[k] = v
                        cuda.syncthreads()
                        for kh in range(nh):
                            for kw in range(nw):
                                v = xs[(ty * sh + kh * dh) * rw + tx * sw + kw * dw]
                                for c in range(COB):
                                    acc[c] += ws[(c * nh + kh) * nw + kw] * v
            if oh < OH and ow < OW:
                r, q = oh, ow
                if flip:
                    r, q = OH - 1 - oh, OW - 1 - ow
                for c in range(COB):
                    if c < nco:
                        y[n, co0 + c, r, q] = acc[c] + b[co0 + c]

    @cuda.jit
    def grad_input(g, w, gx, sh, sw, top, left, dh, dw, groups, kch, kcw):
        """gx[n, ci, ih, iw] = sum over co of ci's group and taps (kh, kw) with
        oh = (ih + top - kh*dh) / sh and ow = (iw + left - kw*dw) / sw whole and in range
        of g[n, co, oh, ow] * w[co, ci - g*Cg, kh, kw]: a gather, each thread owns its
        input pixels, so there are no write conflicts.

        Threads: one per input pixel of a (th x tw) tile, x along iw; grid z over planes
        (n, group, block of CIB input channels). Loop nest per block: co of the group,
        tap chunks -> stage grad_out rows [oh_lo, oh_lo + rh) x [ow_lo, ow_lo + rw), sync,
        accumulate (oh_lo = floor((ih0 + top - last kh*dh) / sh), so every offset >= 0).

        Optimizations:
        - the grad_out tile + halo a block needs is loaded once into shared memory;
        - the chunk's weights sit in shared memory and are read as broadcasts;
        - CIB input channels per thread in registers (constant-trip loops, as forward);
        - with stride 1 no tap is skipped; strided taps skip by a divisibility test.
        """
        gs = cuda.shared.array(XS, dt)
        ws = cuda.shared.array(WS, dt)
        acc = cuda.local.array(CIB, dt)
        N, Co, OH, OW = g.shape
        _, Cg, KH, KW = w.shape
        H, W = gx.shape[2], gx.shape[3]
        Cog = Co // groups
        ncb = (Cg + CIB - 1) // CIB
        th, tw = cuda.blockDim.y, cuda.blockDim.x
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        tid, nthreads = ty * tw + tx, th * tw
        ih0, iw0 = cuda.blockIdx.y * th, cuda.blockIdx.x * tw
        ih, iw = ih0 + ty, iw0 + tx
        for plane in range(cuda.blockIdx.z, N * groups * ncb, cuda.gridDim.z):
            n = plane // (groups * ncb)
            gr = (plane // ncb) % groups
            ci0 = (plane % ncb) * CIB
            nci = min(CIB, Cg - ci0)
            for c in range(CIB):
                acc[c] = dt(0)
            for co in range(gr * Cog, (gr + 1) * Cog):
                for kh0 in range(0, KH, kch):
                    for kw0 in range(0, KW, kcw):
                        nh, nw = min(kch, KH - kh0), min(kcw, KW - kw0)
                        oh_lo = (ih0 + top - (kh0 + nh - 1) * dh) // sh
                        ow_lo = (iw0 + left - (kw0 + nw - 1) * dw) // sw
                        rh = (th - 1 + (nh - 1) * dh + sh - 1) // sh + 1
                        rw = (tw - 1 + (nw - 1) * dw + sw - 1) // sw + 1
                        cuda.syncthreads()  # the previous chunk has been consumed
                        for k in range(tid, rh * rw, nthreads):
                            oh, ow = oh_lo + k // rw, ow_lo + k % rw
                            v = dt(0)
                            if oh >= 0 and oh < OH and ow >= 0 and ow < OW:
                                v = g[n, co, oh, ow]
                            gs[k] = v
                        for k in range(tid, CIB * nh * nw, nthreads):
                            c, t = k // (nh * nw), k % (nh * nw)
                            v = dt(0)  # channels past the group's last: zero weights
                            if c < nci:
                                v = w[co, ci0 + c, kh0 + t // nw, kw0 + t % nw]
                            ws[k] = v
                        cuda.syncthreads()
                        for kh in range(nh):
                            u = ih + top - (kh0 + kh) * dh - oh_lo * sh
                            if u % sh == 0:
                                for kw in range(nw):
                                    t = iw + left - (kw0 + kw) * dw - ow_lo * sw
                                    if t % sw == 0:
                                        v = gs[(u // sh) * rw + t // sw]
                                        for c in range(CIB):
                                            acc[c] += ws[(c * nh + kh) * nw + kw] * v
            if ih < H and iw < W:
                for c in range(CIB):
                    if c < nci:
                        gx[n, gr * Cg + ci0 + c, ih, iw] = acc[c]

    @cuda.jit
    def grad_params(g, x, gw, gb, sh, sw, top, left, dh, dw, groups):
        """gw[co, ci, kh, kw] = sum_{n, oh, ow} g[n, co, oh, ow] *
        x[n, grp*Cg + ci, oh*sh + kh*dh - top, ow*sw + kw*dw - left] (zero outside x),
        and gb[co] = sum_{n, oh, ow} g[n, co, oh, ow].

        Threads: one block per parameter, e < gw.size a weight element, the next Co the
        biases (looping if the grid is smaller); its threads stride over (n, oh, ow), ow
        fastest, then sum their partial sums by a tree in shared memory (blockDim.x a
        power of two).

        Optimizations:
        - consecutive threads read consecutive ow (coalesced for stride 1);
        - no division in the loop: a thread's (n, oh, ow) advances by the block's stride
          with adds and carries (64-bit division is a long emulated sequence on a GPU,
          and was most of this kernel's time);
        - a private accumulator per thread, one tree reduction per parameter, one store;
        - deterministic: no atomics, the same order of additions on every run.
        """
        red = cuda.shared.array(THREADS, dt)
        Co, Cg, KH, KW = gw.shape
        N, _, OH, OW = g.shape
        H, W = x.shape[2], x.shape[3]
        Cog = Co // groups
        tid = cuda.threadIdx.x
        P = OH * OW
        # the block's stride over (n, oh, ow) = blockDim.x, split into the three digits
        step_n, step_p = cuda.blockDim.x // P, cuda.blockDim.x % P
        step_h, step_w = step_p // OW, step_p % OW
        n0, p0 = tid // P, tid % P
        oh0, ow0 = p0 // OW, p0 % OW
        for e in range(cuda.blockIdx.x, gw.size + Co, cuda.gridDim.x):
            acc = dt(0)
            is_weight = e < gw.size
            co, ci, kh, kw, xc = e - gw.size, 0, 0, 0, 0
            if is_weight:
                co, r = e // (Cg * KH * KW), e % (Cg * KH * KW)
                ci, kh, kw = r // (KH * KW), (r // KW) % KH, r % KW
                xc = (co // Cog) * Cg + ci
            n, oh, ow = n0, oh0, ow0
            while n < N:
                if is_weight:
                    ih, iw = oh * sh + kh * dh - top, ow * sw + kw * dw - left
                    if ih >= 0 and ih < H and iw >= 0 and iw < W:
                        acc += g[n, co, oh, ow] * x[n, xc, ih, iw]
                else:
                    acc += g[n, co, oh, ow]
                ow += step_w
                if ow >= OW:
                    ow -= OW
                    oh += 1
                oh += step_h
                if oh >= OH:
                    oh -= OH
                    n += 1
                n += step_n
            total = block_sum(red, acc)
            if tid == 0:
                if is_weight:
                    gw[co, ci, kh, kw] = total
                else:
                    gb[co] = total

    return {"forward": forward, "grad_input": grad_input, "grad_params": grad_params}


KERNELS = {np.dtype(np.float32): _make(float32), np.dtype(np.float64): _make(float64)}

_INTS = ("int64",) * 7
for _dt, _ks in KERNELS.items():
    _f, _a = str(_dt), f"{_dt}[:, :, :, ::1]"
    register(_ks["forward"], f"conv_forward_{_f}",
             [(_a, _a, f"{_f}[::1]", _a) + _INTS + ("int64",) * 3])
    register(_ks["grad_input"], f"conv_grad_input_{_f}", [(_a, _a, _a) + _INTS + ("int64",) * 2])
    register(_ks["grad_params"], f"conv_grad_params_{_f}", [(_a, _a, _a, f"{_f}[::1]") + _INTS])


# ---------------------------------------------------------------- launch plans

def _pow2(n: int) -> int:
    """The smallest power of two >= n."""
    return 1 << max(0, int(n) - 1).bit_length()


def _plan(rows: int, cols: int, kernel, stride, dilation, gather: bool):
    """``(th, tw, kch, kcw)``: a thread tile covering a ``rows x cols`` output (at most
    THREADS threads, no wider than needed) and the tap chunk, shrunk until the staged
    tile + halo fits XS (taps first, then the tile). ``gather``: the footprint of
    grad_input's grad_out tile (divided by the stride) instead of forward's input tile."""
    tw = min(THREADS, _pow2(cols))
    th = min(THREADS // tw, _pow2(rows))
    (KH, KW), (sh, sw), (dh, dw) = kernel, stride, dilation
    kch, kcw = min(KH, TAPS), min(KW, TAPS)

    def span(t, k, s, d):
        return (t - 1 + (k - 1) * d + s - 1) // s + 1 if gather else (t - 1) * s + (k - 1) * d + 1

    while kch * kcw > TAPS or span(th, kch, sh, dh) * span(tw, kcw, sw, dw) > XS:
        if kch * kcw > 1:
            if (kch - 1) * dh >= (kcw - 1) * dw:
                kch = (kch + 1) // 2
            else:
                kcw = (kcw + 1) // 2
        elif th >= tw:
            th //= 2
        else:
            tw //= 2
    return th, tw, kch, kcw


def _grid(rows: int, cols: int, th: int, tw: int, planes: int):
    """``(grid, block)`` for (th x tw) tiles over ``rows x cols`` and ``planes`` on z."""
    return (blocks(cols, tw), blocks(rows, th), z_blocks(planes)), (tw, th)


def _reduce_threads(items: int) -> int:
    """Threads (a power of two, at most THREADS) of a block summing ``items`` values."""
    return min(THREADS, _pow2(blocks(items, REDUCE_MIN)))


def launch_forward(x, w, b, y, stride, top, left, dilation, groups, flip, s):
    """Run ``forward`` into ``y`` (all device arrays, already checked)."""
    OH, OW = y.shape[2], y.shape[3]
    th, tw, kch, kcw = _plan(OH, OW, w.shape[2:], stride, dilation, gather=False)
    planes = x.shape[0] * groups * -(-(w.shape[0] // groups) // COB)
    grid, block = _grid(OH, OW, th, tw, planes)
    launch(KERNELS[x.dtype]["forward"], grid, block, s, x, w, b, y, *stride, top, left, *dilation,
           groups, kch, kcw, int(flip))


# ---------------------------------------------------------------- host wrappers

def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """:func:`kernels.conv.conv2d` for device arrays."""
    s = stream(x, w, b)  # NOTE: from the caller's arrays, before they become Numba views
    x, w, b, geo = _forward_args(x, w, b, stride, padding, dilation, groups, device)
    if b is None:
        b = zeros((w.shape[0],), x.dtype, s)
    y = empty((x.shape[0], w.shape[0]) + geo.out_hw, x.dtype, s)
    launch_forward(x, w, b, y, geo.stride, geo.pads[0], geo.pads[2], geo.dilation,
                   geo.groups, False, s)
    return y


def conv2d_backward(grad_out, x, w, stride=1, padding=0, dilation=1, groups=1,
                    need_input_grad=True):
    """:func:`kernels.conv.conv2d_backward` for device arrays."""
    s = stream(grad_out, x, w)
    grad_out, x, w, geo = _backward_args(grad_out, x, w, stride, padding, dilation, groups,
                                         device)
    ks = KERNELS[x.dtype]
    N, C, H, W = x.shape
    Co, Cg = w.shape[:2]
    OH, OW = geo.out_hw
    args = (*geo.stride, geo.pads[0], geo.pads[2], *geo.dilation, geo.groups)
    grad_w, grad_b = empty(w.shape, x.dtype, s), empty((Co,), x.dtype, s)
    launch(ks["grad_params"], w.size + Co, _reduce_threads(N * OH * OW), s, grad_out, x, grad_w,
           grad_b, *args)
    grad_x = None
    if need_input_grad:
        grad_x = empty(x.shape, x.dtype, s)
        th, tw, kch, kcw = _plan(H, W, w.shape[2:], geo.stride, geo.dilation, gather=True)
        grid, block = _grid(H, W, th, tw, N * geo.groups * -(-Cg // CIB))
        launch(ks["grad_input"], grid, block, s, grad_out, w, grad_x, *args, kch, kcw)
    return grad_x, grad_w, grad_b
