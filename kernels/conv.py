"""2-D convolution forward and backward, as ``torch.nn.functional.conv2d`` and its autograd.

Arrays are NCHW, float32 or float64; the maths is defined in :mod:`kernels.reference.conv`.
Arguments are checked here, before any kernel runs; the CPU kernels
(:mod:`kernels.cpu.conv`) work on a zero-padded copy of the input.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._checks import array, no_device, pair
from .reference.conv import output_size, same_padding


class Geometry(NamedTuple):
    """Validated shapes and hyperparameters of one convolution."""
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    dilation: tuple[int, int]
    groups: int
    out_hw: tuple[int, int]

    def segments(self, Wp: int) -> tuple[int, int, int, int, int]:
        """``(nseg, seglen, arow, xseg, step)`` for the kernels (see :mod:`kernels.cpu.conv`):
        stride 1 runs each plane as one "wide" segment of row pitch ``Wp``."""
        (sh, sw), (OH, OW) = self.stride, self.out_hw
        if sh == 1 and sw == 1:
            return 1, (OH - 1) * Wp + OW, Wp, 0, 1
        return OH, OW, OW, sh * Wp, sw


def _padding(padding, kernel, dilation, stride) -> tuple[int, int, int, int]:
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            return same_padding(kernel[0], dilation[0]) + same_padding(kernel[1], dilation[1])
        raise ValueError(f"padding must be 'valid', 'same', an int or a pair, got {padding!r}")
    ph, pw = pair(padding, "padding", minimum=0)
    return ph, ph, pw, pw


def _geometry(x, w, stride, padding, dilation, groups) -> Geometry:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    groups = int(groups)
    C, Co, Cg = x.shape[1], w.shape[0], w.shape[1]
    if C % groups:
        raise ValueError(f"groups={groups} does not divide the {C} input channels of x")
    if Co % groups:
        raise ValueError(f"groups={groups} does not divide the {Co} output channels of w")
    if Cg * groups != C:
        raise ValueError(f"w has {Cg} input channels per group, but x has {C} channels "
                         f"in {groups} group(s): expected w.shape[1] == {C // groups}")
    stride = pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    kernel = w.shape[2], w.shape[3]
    pads = _padding(padding, kernel, dilation, stride)
    out = (output_size(x.shape[2], kernel[0], stride[0], pads[0], pads[1], dilation[0]),
           output_size(x.shape[3], kernel[1], stride[1], pads[2], pads[3], dilation[1]))
    if min(out) < 1:
        raise ValueError(f"w: the kernel {kernel} with dilation {dilation} is larger than the "
                         f"padded input {x.shape[2:]} with padding {padding!r}")
    return Geometry(stride, pads, dilation, groups, out)


def _padded(x: np.ndarray, geo: Geometry) -> np.ndarray:
    """``x`` with the zero padding of ``geo`` (``x`` itself when there is none)."""
    from .cpu import conv as cpu

    top, bottom, left, right = geo.pads
    if not any(geo.pads):
        return x
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + top + bottom, W + left + right), dtype=x.dtype)
    cpu.pad(x, xp, top, left)
    return xp


def _use_gemm(w: np.ndarray, geo: Geometry) -> bool:
    """im2col + one BLAS GEMM per image and group pays once the reduction
    (C_in/groups * KH * KW) and the output channels per group are large enough to keep
    the GEMM busy; the direct kernels win on small layers (LeNet) and depthwise ones."""
    Co, Cg, KH, KW = w.shape
    return Cg * KH * KW >= GEMM_MIN_K and Co // geo.groups >= GEMM_MIN_COUT


GEMM_MIN_K = 256
GEMM_MIN_COUT = 32


def _forward_gemm(xp, w, b, y, geo):
    """y[n, g] = w[g] (Cog x K) @ im2col(xp[n, g]) (K x OH*OW), then + b."""
    from .cpu import conv as cpu

    N, Co = y.shape[:2]
    G, (OH, OW) = geo.groups, geo.out_hw
    Cog, Cg, KH, KW = Co // G, w.shape[1], w.shape[2], w.shape[3]
    w2 = w.reshape(G, Cog, Cg * KH * KW)
    y3 = y.reshape(N, G, Cog, OH * OW)
    col = np.empty((Cg * KH * KW, OH * OW), dtype=y.dtype)
    for n in range(N):
        for g in range(G):
            cpu.im2col(xp[n, g * Cg:(g + 1) * Cg], col, OH, OW, KH, KW, *geo.stride,
                       *geo.dilation)
            np.matmul(w2[g], col, out=y3[n, g])
    y += b[None, :, None, None]


def _backward_gemm(g4, xp, w, geo):
    """grad_w[g] = sum_n g[n, g] @ im2col(xp[n, g]).T; grad_x = col2im(w[g].T @ g[n, g])."""
    from .cpu import conv as cpu

    N, Co = g4.shape[:2]
    G, (OH, OW) = geo.groups, geo.out_hw
    Cog, Cg, KH, KW = Co // G, w.shape[1], w.shape[2], w.shape[3]
    K = Cg * KH * KW
    w2 = w.reshape(G, Cog, K)
    g3 = g4.reshape(N, G, Cog, OH * OW)
    grad_w = np.zeros((G, Cog, K), dtype=w.dtype)
    tmp = np.empty((Cog, K), dtype=w.dtype)
    col = np.empty((K, OH * OW), dtype=w.dtype)
    gxp = np.zeros(xp.shape, dtype=w.dtype)
    for n in range(N):
        for g in range(G):
            cpu.im2col(xp[n, g * Cg:(g + 1) * Cg], col, OH, OW, KH, KW, *geo.stride,
                       *geo.dilation)
            np.matmul(g3[n, g], col.T, out=tmp)
            grad_w[g] += tmp
            np.matmul(w2[g].T, g3[n, g], out=col)
            cpu.col2im(col, gxp[n, g * Cg:(g + 1) * Cg], OH, OW, KH, KW, *geo.stride,
                       *geo.dilation)
    return gxp, grad_w.reshape(w.shape), g4.sum(axis=(0, 2, 3), dtype=np.float64)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """``y = F.conv2d(x, w, b, stride, padding, dilation, groups)``.

    ``x`` is ``N×C_in×H×W``, ``w`` is ``C_out×(C_in/groups)×KH×KW``, ``b`` is ``C_out`` or
    None; ``padding`` is an int, a pair, ``"valid"`` or ``"same"``.

    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> conv2d(x, np.ones((1, 1, 2, 2)), np.array([0.5]))[0, 0].tolist()
    [[8.5, 12.5], [20.5, 24.5]]
    """
    from .cpu import conv as cpu

    no_device(x, w, b)
    x = array(x, "x", 4)
    w = array(w, "w", 4, dtype=x.dtype)
    if b is not None:
        b = array(b, "b", 1, dtype=x.dtype)
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"b has {b.shape[0]} entries but w has {w.shape[0]} output "
                             "channels")
    geo = _geometry(x, w, stride, padding, dilation, groups)
    y = np.empty((x.shape[0], w.shape[0]) + geo.out_hw, dtype=x.dtype)
    if b is None:
        b = np.zeros(w.shape[0], dtype=x.dtype)
    xp = _padded(x, geo)
    if _use_gemm(w, geo):
        _forward_gemm(xp, w, b, y, geo)
        return y
    Hp, Wp = xp.shape[2:]
    cpu.forward(xp.reshape(xp.shape[0], xp.shape[1], Hp * Wp), w, b, y, Wp, *geo.dilation,
                geo.groups, *geo.segments(Wp))
    return y


def conv2d_backward(grad_out, x, w, stride=1, padding=0, dilation=1, groups=1):
    """``(grad_x, grad_w, grad_b)``: the gradients of :func:`conv2d` (as torch autograd)
    for the upstream gradient ``grad_out`` of the output's shape.

    >>> x, w = np.arange(9.0).reshape(1, 1, 3, 3), np.ones((1, 1, 2, 2))
    >>> gx, gw, gb = conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> gx[0, 0].tolist(), gw[0, 0].tolist(), gb.tolist()
    ([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], [[8.0, 12.0], [20.0, 24.0]], [4.0])
    """
    from .cpu import conv as cpu

    no_device(grad_out, x, w)
    x = array(x, "x", 4)
    w = array(w, "w", 4, dtype=x.dtype)
    grad_out = array(grad_out, "grad_out", 4, dtype=x.dtype)
    geo = _geometry(x, w, stride, padding, dilation, groups)
    want = (x.shape[0], w.shape[0]) + geo.out_hw
    if grad_out.shape != want:
        raise ValueError(f"grad_out has shape {grad_out.shape}, but the output of this "
                         f"convolution has shape {want}")
    xp = _padded(x, geo)
    N, C, Hp, Wp = xp.shape
    if _use_gemm(w, geo):
        gxp, grad_w, grad_b = _backward_gemm(grad_out, xp, w, geo)
        return _cropped(gxp, x, geo), grad_w, grad_b.astype(x.dtype)
    seg = geo.segments(Wp)
    OH, OW = geo.out_hw
    if seg[2] == OW:
        ga = grad_out.reshape(N, w.shape[0], OH * OW)
    else:
        ga = np.zeros((N, w.shape[0], OH * seg[2]), dtype=x.dtype)
        cpu.widen(grad_out, ga, seg[2])
    grad_w = np.empty_like(w)
    grad_b = np.empty(w.shape[0], dtype=x.dtype)
    cpu.grad_weight(ga, xp.reshape(N, C, Hp * Wp), grad_w, grad_b, Wp, *geo.dilation,
                    geo.groups, *seg)
    gxp = np.zeros((N, C, Hp * Wp), dtype=x.dtype)
    cpu.grad_input(ga, w, gxp, Wp, *geo.dilation, geo.groups, *seg)
    return _cropped(gxp.reshape(N, C, Hp, Wp), x, geo), grad_w, grad_b


def _cropped(gxp: np.ndarray, x: np.ndarray, geo: Geometry) -> np.ndarray:
    """The gradient w.r.t. the padded input, with the padding cut off."""
    from .cpu import conv as cpu

    if gxp.shape == x.shape:
        return gxp
    grad_x = np.empty_like(x)
    cpu.crop(gxp, grad_x, geo.pads[0], geo.pads[2])
    return grad_x
