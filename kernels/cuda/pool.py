"""CUDA pooling kernels: max (with argmax indices) and average, forward and backward.

The host wrappers take the public functions' arguments with device arrays, validate
them as :mod:`kernels.pool` does (with :mod:`kernels._rules.pool`'s geometry and shape
rules, which need only shapes; arrays go through :func:`._arrays.device`), and return
device arrays of x's dtype. Arrays are viewed as (planes, H, W), planes = N·C.
Semantics (ties, NaN, ceil_mode, count_include_pad) are :mod:`kernels.reference.pool`'s,
and the summation orders are :mod:`kernels.cpu.pool`'s, so results match the CPU path
bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .._checks import check_size
from .._rules import pool as rules
from ._arrays import device, empty, stream, zeros
from ._launch import grid_1d, grid_planes, launch, z_blocks
from .ptx import register

# ---------------------------------------------------------------- kernels

@cuda.jit
def _max_pool2d(x, y, indices, kh, kw, sh, sw, ph, pw):
    """y[p, oh, ow] = max of x[p] over the window clipped to the input; indices = its flat
    position ih*W + iw.

    Threads: one per output; x along ow, y along oh (16x16 tiles), z along planes
    (striding on past the grid's z limit).

    Optimizations:
    - the running max and its index live in registers, one store each per output;
    - the window is visited in torch's order (ih, then iw) with "strictly larger or NaN",
      so ties keep the first position and the last NaN wins, as the CPU path;
    - neighbouring threads read neighbouring columns (coalesced when the stride is 1).
    """
    ow, oh = cuda.grid(2)
    P, H, W = x.shape
    if oh >= y.shape[1] or ow >= y.shape[2]:
        return
    for p in range(cuda.blockIdx.z, P, cuda.gridDim.z):
        h0 = oh * sh - ph
        w0 = ow * sw - pw
        hs, he = max(h0, 0), min(h0 + kh, H)
        ws, we = max(w0, 0), min(w0 + kw, W)
        m = x[p, hs, ws]
        mi = hs * W + ws
        for ih in range(hs, he):
            for iw in range(ws, we):
                v = x[p, ih, iw]
                if v > m or v != v:
                    m = v
                    mi = ih * W + iw
        y[p, oh, ow] = m
        indices[p, oh, ow] = mi


@cuda.jit
def _max_pool2d_backward(grad_out, indices, grad_x, bad):
    """grad_x[p, indices[p, o]] += grad_out[p, o] for every output o of plane p;
    bad[p] = how many of plane p's indices fall outside [0, H*W) (skipped, never written).

    Threads: one per plane (grad_x zero-filled beforehand by a parallel fill).

    Why one thread per plane: ``indices`` are data, not geometry (the signature has no
    kernel size or stride), so a gather per input pixel cannot know which outputs point
    at it; and float atomics would add overlapping windows' shares in a varying order.
    A serial scatter per plane adds them in output order, exactly as the CPU path,
    deterministically, and planes (N·C) are many.

    Optimizations: no atomics and no second pass for the range check.
    """
    p = cuda.grid(1)
    if p < grad_out.shape[0]:
        HW = grad_x.shape[1]
        count = 0
        for o in range(grad_out.shape[1]):
            i = indices[p, o]
            if i < 0 or i >= HW:
                count += 1
            else:
                grad_x[p, i] += grad_out[p, o]
        bad[p] = count


@cuda.jit(device=True, inline=True)
def _divisor(oh, ow, H, W, kh, kw, sh, sw, ph, pw, count_include_pad):
    """Window (oh, ow)'s divisor, as :func:`kernels.reference.pool.avg_pool_divisor`."""
    hs = oh * sh - ph
    ws = ow * sw - pw
    he = min(hs + kh, H + ph)  # clipped to the padded input
    we = min(ws + kw, W + pw)
    if count_include_pad:
        return (he - hs) * (we - ws)
    return (min(he, H) - max(hs, 0)) * (min(we, W) - max(ws, 0))


@cuda.jit
def _avg_pool2d(x, y, kh, kw, sh, sw, ph, pw, count_include_pad):
    """y[p, oh, ow] = (sum of the clipped window of x[p]) / divisor(oh, ow).

    Threads: one per output; x along ow, y along oh, z along planes.

    Optimizations: the sum stays in a register, in x's dtype (as torch and the CPU path,
    in the same order: rows, then columns); the divisor is integer arithmetic, computed
    in place instead of read from a table.
    """
    ow, oh = cuda.grid(2)
    P, H, W = x.shape
    if oh >= y.shape[1] or ow >= y.shape[2]:
        return
    t = y.dtype.type
    for p in range(cuda.blockIdx.z, P, cuda.gridDim.z):
        h0 = oh * sh - ph
        w0 = ow * sw - pw
        acc = t(0)
        for ih in range(max(h0, 0), min(h0 + kh, H)):
            for iw in range(max(w0, 0), min(w0 + kw, W)):
                acc += x[p, ih, iw]
        y[p, oh, ow] = acc / t(_divisor(oh, ow, H, W, kh, kw, sh, sw, ph, pw,
                                        count_include_pad))


@cuda.jit
def _avg_pool2d_backward(grad_out, grad_x, kh, kw, sh, sw, ph, pw, count_include_pad):
    """grad_x[p, ih, iw] = sum of grad_out[p, oh, ow] / divisor(oh, ow) over the windows
    (oh, ow) that contain (ih, iw).

    Threads: one per input pixel; x along iw, y along ih, z along planes. A gather: each
    thread owns its output element, so there is no race and no atomic.

    Optimizations: only the windows containing the pixel are visited (their range is
    solved for, not searched); shares are added oh ascending, ow descending: the order
    in which the CPU path's scatter reaches a pixel, so overlapping windows accumulate
    identically.
    """
    iw, ih = cuda.grid(2)
    P, H, W = grad_x.shape
    if ih >= H or iw >= W:
        return
    t = grad_x.dtype.type
    for p in range(cuda.blockIdx.z, P, cuda.gridDim.z):
        OH, OW = grad_out.shape[1], grad_out.shape[2]
        # oh*sh - ph <= ih < oh*sh - ph + kh
        oh_lo = max(0, (ih + ph - kh + sh) // sh)
        oh_hi = min(OH - 1, (ih + ph) // sh)
        ow_lo = max(0, (iw + pw - kw + sw) // sw)
        ow_hi = min(OW - 1, (iw + pw) // sw)
        acc = t(0)
        for oh in range(oh_lo, oh_hi + 1):
            for ow in range(ow_hi, ow_lo - 1, -1):
                acc += grad_out[p, oh, ow] / t(_divisor(oh, ow, H, W, kh, kw, sh, sw, ph, pw,
                                                        count_include_pad))
        grad_x[p, ih, iw] = acc


_GEOMETRY = ("int64",) * 6
for _t in ("float32", "float64"):
    register(_max_pool2d, "max_pool2d",
             [(f"{_t}[:, :, ::1]", f"{_t}[:, :, ::1]", "int64[:, :, ::1]") + _GEOMETRY])
    register(_max_pool2d_backward, "max_pool2d_backward",
             [(f"{_t}[:, ::1]", "int64[:, ::1]", f"{_t}[:, ::1]", "int64[::1]")])
    register(_avg_pool2d, "avg_pool2d",
             [(f"{_t}[:, :, ::1]", f"{_t}[:, :, ::1]") + _GEOMETRY + ("boolean",)])
    register(_avg_pool2d_backward, "avg_pool2d_backward",
             [(f"{_t}[:, :, ::1]", f"{_t}[:, :, ::1]") + _GEOMETRY + ("boolean",)])


# ---------------------------------------------------------------- host wrappers

def _zplanes(shape) -> int:
    """Blocks along z: one per plane, up to the hardware limit (the kernels stride on)."""
    return z_blocks(int(np.prod(shape[:-2])))


def _planes(a):
    shape = tuple(a.shape)  # NOTE: the simulator's shapes take no negative indices
    return a.reshape(int(np.prod(shape[:-2])), shape[-2], shape[-1])


def _grad_out(grad_out, x_shape, out_hw=None):
    """``grad_out`` on the device, checked as :func:`kernels.pool._grad_out`."""
    grad_out = device(grad_out, "grad_out", len(x_shape))
    shape = tuple(grad_out.shape)
    if shape[:-2] != x_shape[:-2] or (out_hw is not None and shape[-2:] != tuple(out_hw)):
        want = x_shape[:-2] + (tuple(out_hw) if out_hw is not None else ("OH", "OW"))
        raise ValueError(f"grad_out has shape {shape}, expected {want} "
                         f"for an input of shape {x_shape}")
    return grad_out


def _pool_forward(x, kernel_size, stride, padding, ceil_mode):
    """A pooling forward's stream, checked input, output and launch shape (one thread per
    output pixel): ``(s, x, y, kernel, stride, padding, grid, threads)``."""
    s = stream(x)
    x = device(x, "x", (3, 4))
    shape = tuple(x.shape)
    kernel, stride, padding, out = rules._geometry(shape, kernel_size, stride, padding,
                                                  ceil_mode)
    check_size("the output y", shape[:-2] + out, x.dtype)
    y = empty(shape[:-2] + out, x.dtype, s)
    grid, threads = grid_planes(_zplanes(shape), *out)
    return s, x, y, kernel, stride, padding, grid, threads


def max_pool2d(x, kernel_size, stride=None, padding=0, *, ceil_mode=False):
    """:func:`kernels.pool.max_pool2d` on the GPU: ``(y, indices)``, indices int64."""
    s, x, y, kernel, stride, padding, grid, threads = _pool_forward(x, kernel_size, stride,
                                                                    padding, ceil_mode)
    check_size("the output indices", y.shape, np.int64)
    indices = empty(y.shape, np.int64, s)
    launch(_max_pool2d, grid, threads, s, _planes(x), _planes(y), _planes(indices), *kernel,
           *stride, *padding)
    return y, indices


def max_pool2d_backward(grad_out, indices, x_shape):
    """:func:`kernels.pool.max_pool2d_backward` on the GPU (checks the indices' range, so
    it waits for the kernel)."""
    s = stream(grad_out, indices)
    x_shape = rules._shape(x_shape)
    grad_out = _grad_out(grad_out, x_shape)
    indices = device(indices, "indices", floats=False)
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"indices must be an integer array, got {indices.dtype}")
    if tuple(indices.shape) != tuple(grad_out.shape):
        raise ValueError(f"indices has shape {tuple(indices.shape)} but grad_out has "
                         f"{tuple(grad_out.shape)}")
    H, W = x_shape[-2:]
    planes = int(np.prod(x_shape[:-2]))
    check_size("grad_x (of x_shape)", x_shape, grad_out.dtype)
    grad_x = zeros(x_shape, grad_out.dtype, s)
    bad = empty((planes,), np.int64, s)
    b, t = grid_1d(planes)
    length = int(np.prod(grad_out.shape)) // planes
    launch(_max_pool2d_backward, b, t, s, grad_out.reshape(planes, length),
           indices.reshape(planes, length), grad_x.reshape(planes, H * W), bad)
    counts = bad.copy_to_host(stream=s)
    s.synchronize()
    nbad = int(counts.sum())
    if nbad:
        raise ValueError(f"indices has {nbad} entries outside [0, {H * W}) (the H×W plane)")
    return grad_x


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """:func:`kernels.pool.avg_pool2d` on the GPU."""
    s, x, y, kernel, stride, padding, grid, threads = _pool_forward(x, kernel_size, stride,
                                                                    padding, ceil_mode)
    launch(_avg_pool2d, grid, threads, s, _planes(x), _planes(y), *kernel, *stride, *padding,
           bool(count_include_pad))
    return y


def avg_pool2d_backward(grad_out, x_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True):
    """:func:`kernels.pool.avg_pool2d_backward` on the GPU."""
    s = stream(grad_out)
    x_shape = rules._shape(x_shape)
    kernel, stride, padding, out = rules._geometry(x_shape, kernel_size, stride, padding,
                                                  ceil_mode)
    grad_out = _grad_out(grad_out, x_shape, out)
    check_size("grad_x (of x_shape)", x_shape, grad_out.dtype)
    grad_x = empty(x_shape, grad_out.dtype, s)
    grid, threads = grid_planes(_zplanes(x_shape), *x_shape[-2:])
    launch(_avg_pool2d_backward, grid, threads, s, _planes(grad_out), _planes(grad_x), *kernel,
           *stride, *padding, bool(count_include_pad))
    return grad_x
