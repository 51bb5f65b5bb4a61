"""Pooling in NumPy: max (with argmax indices) and average, forward and backward.

The living definition of ``torch.nn.functional.max_pool2d`` / ``avg_pool2d``
(dilation 1) on NCHW (or CHW) arrays. Window ``(oh, ow)`` covers input rows
``oh*sh - ph ... oh*sh - ph + kh - 1`` (and likewise columns), clipped to the
input: padding is never a candidate for the max and adds zero to a sum.

- max: the first strictly larger value wins, and a NaN always wins (so NaN
  propagates, the last NaN's index is kept); the index is the flat position
  ``ih * W + iw`` in the H×W plane. A window of all ``-inf`` reports its first
  in-bounds position.
- average: the sum over the clipped window divided by the window's size,
  counting padding (``count_include_pad=True``: the window clipped to the
  padded input, so with ``ceil_mode`` a window hanging past the right padding
  counts only up to it) or not (the clipped window).
- output size: ``floor((H + 2p - k + (s - 1 if ceil_mode)) / s) + 1``, less one
  if ``ceil_mode`` made the last window start past the input plus left padding.
"""

from __future__ import annotations

import numpy as np


def output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Pooled length of one axis, as torch's ``pooling_output_shape`` (dilation 1).

    >>> output_size(28, 2, 2, 0, False), output_size(112, 3, 2, 1, False)
    (14, 56)
    >>> output_size(5, 2, 2, 0, False), output_size(5, 2, 2, 0, True)
    (2, 3)
    """
    out = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # the last window must start inside the input or the left padding
    return out


def _pair(v) -> tuple[int, int]:
    return (v, v) if np.isscalar(v) else tuple(v)


def _geometry(x_shape, kernel_size, stride, padding, ceil_mode):
    kh, kw = _pair(kernel_size)
    sh, sw = (kh, kw) if stride is None else _pair(stride)
    ph, pw = _pair(padding)
    H, W = x_shape[-2:]
    OH = output_size(H, kh, sh, ph, ceil_mode)
    OW = output_size(W, kw, sw, pw, ceil_mode)
    return (kh, kw), (sh, sw), (ph, pw), (OH, OW)


def avg_pool_divisor(H: int, W: int, OH: int, OW: int, kernel, stride, padding,
                     count_include_pad: bool, dtype) -> np.ndarray:
    """The (OH, OW) divisor of every average-pooling window (torch's ``divide_factor``)."""
    out = []
    for size, n, k, s, p in ((H, OH, kernel[0], stride[0], padding[0]),
                             (W, OW, kernel[1], stride[1], padding[1])):
        start = np.arange(n) * s - p
        end = np.minimum(start + k, size + p)  # the window clipped to the padded input
        out.append(end - start if count_include_pad
                   else np.minimum(end, size) - np.maximum(start, 0))
    return (out[0][:, None] * out[1][None, :]).astype(dtype)


def max_pool2d(x: np.ndarray, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
    """``(y, indices)`` = ``F.max_pool2d(x, ..., return_indices=True)``, one window offset at a
    time, vectorized over every output."""
    (kh, kw), (sh, sw), (ph, pw), (OH, OW) = _geometry(x.shape, kernel_size, stride, padding,
                                                       ceil_mode)
    H, W = x.shape[-2:]
    h0 = np.arange(OH) * sh - ph
    w0 = np.arange(OW) * sw - pw
    shape = x.shape[:-2] + (OH, OW)
    y = np.full(shape, -np.inf, dtype=x.dtype)
    first = np.maximum(h0, 0)[:, None] * W + np.maximum(w0, 0)[None, :]
    indices = np.broadcast_to(first, shape).astype(np.int64)
    for i in range(kh):
        ih = h0 + i
        for j in range(kw):
            iw = w0 + j
            valid = ((ih >= 0) & (ih < H))[:, None] & ((iw >= 0) & (iw < W))[None, :]
            val = x[..., np.clip(ih, 0, H - 1)[:, None], np.clip(iw, 0, W - 1)[None, :]]
            take = valid & ((val > y) | np.isnan(val))
            y = np.where(take, val, y)
            indices = np.where(take, ih[:, None] * W + iw[None, :], indices)
    return y, indices


def max_pool2d_backward(grad_out: np.ndarray, indices: np.ndarray, x_shape) -> np.ndarray:
    """Scatter-add ``grad_out`` into the argmax positions of each H×W plane."""
    H, W = x_shape[-2:]
    planes = int(np.prod(x_shape[:-2]))
    grad_x = np.zeros((planes, H * W), dtype=grad_out.dtype)
    rows = np.arange(planes)[:, None]
    np.add.at(grad_x, (rows, indices.reshape(planes, -1)), grad_out.reshape(planes, -1))
    return grad_x.reshape(x_shape)


def _padded_extent(size, n, k, s, p):
    # room for every window, the ceil_mode ones hanging past the right padding included
    return max(size + 2 * p, (n - 1) * s + k)


def avg_pool2d(x: np.ndarray, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> np.ndarray:
    """``F.avg_pool2d``: sum each window of the zero-padded input, divide by its divisor."""
    (kh, kw), (sh, sw), (ph, pw), (OH, OW) = _geometry(x.shape, kernel_size, stride, padding,
                                                       ceil_mode)
    H, W = x.shape[-2:]
    xp = np.zeros(x.shape[:-2] + (_padded_extent(H, OH, kh, sh, ph),
                                  _padded_extent(W, OW, kw, sw, pw)), dtype=x.dtype)
    xp[..., ph:ph + H, pw:pw + W] = x
    total = np.zeros(x.shape[:-2] + (OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            total += xp[..., i:i + (OH - 1) * sh + 1:sh, j:j + (OW - 1) * sw + 1:sw]
    return total / avg_pool_divisor(H, W, OH, OW, (kh, kw), (sh, sw), (ph, pw),
                                    count_include_pad, x.dtype)


def avg_pool2d_backward(grad_out: np.ndarray, x_shape, kernel_size, stride=None, padding=0,
                        ceil_mode: bool = False, count_include_pad: bool = True) -> np.ndarray:
    """Spread ``grad_out / divisor`` over each window; what lands on padding is dropped."""
    (kh, kw), (sh, sw), (ph, pw), (OH, OW) = _geometry(x_shape, kernel_size, stride, padding,
                                                       ceil_mode)
    H, W = x_shape[-2:]
    share = grad_out / avg_pool_divisor(H, W, OH, OW, (kh, kw), (sh, sw), (ph, pw),
                                        count_include_pad, grad_out.dtype)
    gp = np.zeros(tuple(x_shape[:-2]) + (_padded_extent(H, OH, kh, sh, ph),
                                         _padded_extent(W, OW, kw, sw, pw)), grad_out.dtype)
    for i in range(kh):
        for j in range(kw):
            gp[..., i:i + (OH - 1) * sh + 1:sh, j:j + (OW - 1) * sw + 1:sw] += share
    return np.ascontiguousarray(gp[..., ph:ph + H, pw:pw + W])
