"""2-D max and average pooling, forward and backward, as ``torch.nn.functional``.

Arrays are NCHW (or unbatched CHW), float32 or float64; the index maths and the
semantics (ties, NaN, ``ceil_mode``, ``count_include_pad``) are defined in
:mod:`kernels.reference.pool`. Arguments are checked here, before any kernel runs.
"""

from __future__ import annotations

import numpy as np

from ._checks import array, check_size, on_device
from ._rules.pool import _geometry, _shape
from .reference.pool import avg_pool_divisor


def _grad_out(grad_out, x_shape, out_hw=None) -> np.ndarray:
    """``grad_out`` checked against the input shape (and the pooled size, when known)."""
    grad_out = array(grad_out, "grad_out", len(x_shape))
    if grad_out.shape[:-2] != x_shape[:-2] or (out_hw is not None
                                               and grad_out.shape[-2:] != tuple(out_hw)):
        want = x_shape[:-2] + (tuple(out_hw) if out_hw is not None else ("OH", "OW"))
        raise ValueError(f"grad_out has shape {grad_out.shape}, expected {want} "
                         f"for an input of shape {x_shape}")
    return grad_out


def _cuda():
    from .cuda import pool
    return pool


def _planes(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-2], a.shape[-1])


def max_pool2d(x, kernel_size, stride=None, padding=0, *, ceil_mode=False):
    """``(y, indices)`` = ``F.max_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode,
    return_indices=True)``; ``indices`` are int64 flat positions in each H×W plane.

    >>> y, i = max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2)
    >>> y[0, 0].tolist(), i[0, 0].tolist()
    ([[5.0, 7.0], [13.0, 15.0]], [[5, 7], [13, 15]])
    """
    from .cpu import pool as cpu

    if on_device(x):
        return _cuda().max_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode)
    x = array(x, "x", (3, 4))
    kernel, stride, padding, out = _geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    check_size("the output y", x.shape[:-2] + out, x.dtype)
    check_size("the output indices", x.shape[:-2] + out, np.int64)
    y = np.empty(x.shape[:-2] + out, dtype=x.dtype)
    indices = np.empty(y.shape, dtype=np.int64)
    if kernel == stride == (2, 2) and padding == (0, 0) and 2 * out[0] <= x.shape[-2] \
            and 2 * out[1] <= x.shape[-1]:
        cpu.max_pool2d_2x2(_planes(x), _planes(y), _planes(indices))
    else:
        cpu.max_pool2d(_planes(x), _planes(y), _planes(indices), *kernel, *stride, *padding)
    return y, indices


def max_pool2d_backward(grad_out, indices, x_shape):
    """Gradient of :func:`max_pool2d` w.r.t. ``x``: ``grad_out`` scatter-added into the
    positions ``indices`` of each plane of an array of shape ``x_shape``."""
    from .cpu import pool as cpu

    if on_device(grad_out, indices):
        return _cuda().max_pool2d_backward(grad_out, indices, x_shape)
    x_shape = _shape(x_shape)
    grad_out = _grad_out(grad_out, x_shape)
    if not isinstance(indices, np.ndarray) or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"indices must be a NumPy integer array, "
                        f"got {getattr(indices, 'dtype', type(indices).__name__)}")
    if indices.shape != grad_out.shape:
        raise ValueError(f"indices has shape {indices.shape} but grad_out has {grad_out.shape}")
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    check_size("grad_x (of x_shape)", x_shape, grad_out.dtype)
    grad_x = np.empty(x_shape, dtype=grad_out.dtype)
    H, W = x_shape[-2:]
    bad = cpu.max_pool2d_backward(grad_out.reshape(-1, grad_out.shape[-2] * grad_out.shape[-1]),
                                  indices.reshape(-1, grad_out.shape[-2] * grad_out.shape[-1]),
                                  grad_x.reshape(-1, H * W))
    if bad:
        # NOTE: checked inside the scatter (which skips them) rather than by a separate
        # pass over the indices, which would cost as much as the scatter itself.
        raise ValueError(f"indices has {bad} entries outside [0, {H * W}) (the H×W plane)")
    return grad_x


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """``F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad)``.

    >>> avg_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2)[0, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    from .cpu import pool as cpu

    if on_device(x):
        return _cuda().avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad)
    x = array(x, "x", (3, 4))
    kernel, stride, padding, out = _geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    check_size("the output y", x.shape[:-2] + out, x.dtype)
    divisor = avg_pool_divisor(*x.shape[-2:], *out, kernel, stride, padding,
                               bool(count_include_pad), x.dtype)
    y = np.empty(x.shape[:-2] + out, dtype=x.dtype)
    cpu.avg_pool2d(_planes(x), _planes(y), divisor, *kernel, *stride, *padding)
    return y


def avg_pool2d_backward(grad_out, x_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True):
    """Gradient of :func:`avg_pool2d` w.r.t. ``x`` (an array of shape ``x_shape``)."""
    from .cpu import pool as cpu

    if on_device(grad_out):
        return _cuda().avg_pool2d_backward(grad_out, x_shape, kernel_size, stride, padding,
                                           ceil_mode, count_include_pad)
    x_shape = _shape(x_shape)
    kernel, stride, padding, out = _geometry(x_shape, kernel_size, stride, padding, ceil_mode)
    grad_out = _grad_out(grad_out, x_shape, out)
    check_size("grad_x (of x_shape)", x_shape, grad_out.dtype)
    divisor = avg_pool_divisor(*x_shape[-2:], *out, kernel, stride, padding,
                               bool(count_include_pad), grad_out.dtype)
    grad_x = np.empty(x_shape, dtype=grad_out.dtype)
    cpu.avg_pool2d_backward(_planes(grad_out), _planes(grad_x), divisor, *kernel, *stride,
                            *padding)
    return grad_x
