"""2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``) in plain NumPy.

The living definition the Numba kernels are tested against. With the input padded
by ``(top, bottom, left, right)`` zeros into ``xp`` and ``Cg = C_in / groups``,
``Cog = C_out / groups``, output channel ``co`` in group ``g = co // Cog`` is

    y[n, co, oh, ow] = b[co] + sum_{ci < Cg, kh, kw}
                       w[co, ci, kh, kw] * xp[n, g*Cg + ci, oh*sh + kh*dh, ow*sw + kw*dw]

with ``OH = (H + top + bottom - dh*(KH - 1) - 1) // sh + 1`` (and the same for the width).
The backward pass is the chain rule of that one sum: ``grad_b`` sums ``grad_out`` over
``n, oh, ow``; ``grad_w`` correlates ``grad_out`` with the padded input; ``grad_x`` scatters
``grad_out * w`` back into the padded input and crops the padding.
"""

from __future__ import annotations

import numpy as np


def output_size(n: int, k: int, stride: int, pad_before: int, pad_after: int,
                dilation: int) -> int:
    """``floor((n + pads - dilation*(k - 1) - 1) / stride) + 1`` (below 1: no output)."""
    return (n + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def same_padding(k: int, dilation: int) -> tuple[int, int]:
    """``padding="same"`` as torch does it: ``dilation*(k-1)`` zeros, the odd one after."""
    total = dilation * (k - 1)
    return total // 2, total - total // 2


def _windows(xp, KH, KW, OH, OW, stride, dilation):
    """For each tap ``(kh, kw)`` the strided view ``xp[..., oh*sh + kh*dh, ow*sw + kw*dw]``."""
    (sh, sw), (dh, dw) = stride, dilation
    for kh in range(KH):
        for kw in range(KW):
            h0, w0 = kh * dh, kw * dw
            yield kh, kw, xp[..., h0:h0 + sh * (OH - 1) + 1:sh, w0:w0 + sw * (OW - 1) + 1:sw]


def conv2d(x, w, b=None, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """``F.conv2d`` with explicit ``pads = (top, bottom, left, right)``; NCHW arrays."""
    N, C, H, W = x.shape
    Co, Cg, KH, KW = w.shape
    top, bottom, left, right = pads
    OH = output_size(H, KH, stride[0], top, bottom, dilation[0])
    OW = output_size(W, KW, stride[1], left, right, dilation[1])
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    xg = xp.reshape(N, groups, Cg, *xp.shape[2:])
    wg = w.reshape(groups, Co // groups, Cg, KH, KW)
    y = np.zeros((N, groups, Co // groups, OH, OW), dtype=x.dtype)
    for kh, kw, win in _windows(xg, KH, KW, OH, OW, stride, dilation):
        y += np.einsum("ngchw,goc->ngohw", win, wg[..., kh, kw])
    y = y.reshape(N, Co, OH, OW)
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_backward(grad_out, x, w, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1),
                    groups=1):
    """``(grad_x, grad_w, grad_b)`` of :func:`conv2d` for the upstream ``grad_out``."""
    N, C, H, W = x.shape
    Co, Cg, KH, KW = w.shape
    _, _, OH, OW = grad_out.shape
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    xg = xp.reshape(N, groups, Cg, *xp.shape[2:])
    gg = grad_out.reshape(N, groups, Co // groups, OH, OW)
    wg = w.reshape(groups, Co // groups, Cg, KH, KW)
    grad_xp = np.zeros_like(xg)
    grad_wg = np.zeros_like(wg)
    # The window views of grad_xp alias it, so += scatters into the padded input
    # (taps are visited one at a time: overlapping windows of one tap never collide).
    for kh, kw, win in _windows(xg, KH, KW, OH, OW, stride, dilation):
        grad_wg[..., kh, kw] = np.einsum("ngohw,ngchw->goc", gg, win)
    for kh, kw, gwin in _windows(grad_xp, KH, KW, OH, OW, stride, dilation):
        gwin += np.einsum("ngohw,goc->ngchw", gg, wg[..., kh, kw])
    grad_x = grad_xp.reshape(xp.shape)[:, :, top:top + H, left:left + W]
    return (np.ascontiguousarray(grad_x), grad_wg.reshape(w.shape),
            grad_out.sum(axis=(0, 2, 3)))
