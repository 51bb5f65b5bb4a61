"""The argument rules of a 2-D convolution, shared by :mod:`kernels.conv` and
:mod:`kernels.cuda.conv`: the checked geometry (stride, padding, dilation, groups and the
output size) from shapes and hyperparameters, and the checked arguments of a forward and
a backward call, the arrays converted by the backend's ``as_array``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .._checks import array, check_size, pair
from ..reference.conv import output_size, same_padding


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


def _check_bias(b, w) -> None:
    """One bias per output channel (host or device arrays: only shapes are read)."""
    if b.shape[0] != w.shape[0]:
        raise ValueError(f"b has {b.shape[0]} entries but w has {w.shape[0]} output channels")


def _plain(value) -> bool:
    """An exact int, a string, or a tuple of exact ints: hyperparameters that hash and
    compare as themselves (unlike 1.0 or True, equal to 1 as a cache key)."""
    t = type(value)
    return t is int or t is str or (t is tuple and all(type(v) is int for v in value))


def _geometry(x, w, stride, padding, dilation, groups) -> Geometry:
    """The checked geometry of a convolution of ``x`` with ``w`` (host or device arrays:
    only their shapes are read); cached for plain hyperparameters, as training repeats
    them (checking and deriving it took a tenth of a small layer's call)."""
    if all(_plain(v) for v in (stride, padding, dilation, groups)):
        return _cached_geometry(tuple(x.shape[1:]), tuple(w.shape), stride, padding,
                                dilation, groups)
    return _geometry_of(tuple(x.shape[1:]), tuple(w.shape), stride, padding, dilation, groups)


def _geometry_of(chw, w_shape, stride, padding, dilation, groups) -> Geometry:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    groups = int(groups)
    (C, H, W), (Co, Cg, KH, KW) = chw, w_shape
    if C % groups:
        raise ValueError(f"groups={groups} does not divide the {C} input channels of x")
    if Co % groups:
        raise ValueError(f"groups={groups} does not divide the {Co} output channels of w")
    if Cg * groups != C:
        raise ValueError(f"w has {Cg} input channels per group, but x has {C} channels "
                         f"in {groups} group(s): expected w.shape[1] == {C // groups}")
    stride = pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    kernel = KH, KW
    pads = _padding(padding, kernel, dilation, stride)
    out = (output_size(H, KH, stride[0], pads[0], pads[1], dilation[0]),
           output_size(W, KW, stride[1], pads[2], pads[3], dilation[1]))
    if min(out) < 1:
        raise ValueError(f"w: the kernel {kernel} with dilation {dilation} is larger than the "
                         f"padded input {(H, W)} with padding {padding!r}")
    return Geometry(stride, pads, dilation, groups, out)


_cached_geometry = lru_cache(maxsize=256)(_geometry_of)


def _check_padded(x, geo: Geometry, as_array) -> None:
    """On the host, whose kernels work on a zero-padded copy of x, that copy's size (the
    GPU's kernels read the padding as zeros)."""
    if as_array is array and any(geo.pads):
        N, C, H, W = x.shape
        top, bottom, left, right = geo.pads
        check_size("the zero-padded copy of x", (N, C, H + top + bottom, W + left + right),
                   x.dtype)


def _forward_args(x, w, b, stride, padding, dilation, groups, as_array):
    """``(x, w, b, geometry)`` checked, the arrays through ``as_array`` (the CPU's
    :func:`kernels._checks.array` or the GPU's ``device``): one set of checks and
    messages for both backends, the output's size included (before it is allocated)."""
    x = as_array(x, "x", 4)
    w = as_array(w, "w", 4, dtype=x.dtype)
    if b is not None:
        b = as_array(b, "b", 1, dtype=x.dtype)
        _check_bias(b, w)
    geo = _geometry(x, w, stride, padding, dilation, groups)
    check_size("the output y", (x.shape[0], w.shape[0]) + geo.out_hw, x.dtype)
    _check_padded(x, geo, as_array)
    return x, w, b, geo


def _backward_args(grad_out, x, w, stride, padding, dilation, groups, as_array):
    """``(grad_out, x, w, geometry)`` checked as :func:`_forward_args` does, grad_out
    against the output's shape."""
    x = as_array(x, "x", 4)
    w = as_array(w, "w", 4, dtype=x.dtype)
    grad_out = as_array(grad_out, "grad_out", 4, dtype=x.dtype)
    geo = _geometry(x, w, stride, padding, dilation, groups)
    want = (x.shape[0], w.shape[0]) + geo.out_hw
    if tuple(grad_out.shape) != want:
        raise ValueError(f"grad_out has shape {tuple(grad_out.shape)}, but the output of "
                         f"this convolution has shape {want}")
    _check_padded(x, geo, as_array)  # the gradients have the inputs' shapes
    return grad_out, x, w, geo
