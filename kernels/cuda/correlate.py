"""CUDA cross-correlation: ``scipy.signal.correlate`` (1-D) and ``correlate2d``.

A correlation is a one-channel convolution, so the tiled kernel is
:mod:`.conv`'s ``forward`` (input tile + halo and taps staged in shared memory),
written once: every mode is a window ``(r0, c0)`` of the full correlation (the windows
come from :mod:`kernels.reference.correlate`), i.e. the convolution of ``a`` read at
signed offsets ``top = m2 - 1 - r0``, ``left = n2 - 1 - c0`` with zeros outside.
A 1-D correlation is a 2-D one with a single row.
"""

from __future__ import annotations

from .._checks import check_size
from ..reference.correlate import window1d, window2d
from . import conv
from ._arrays import device, empty, stream, zeros


def _window(a, v, rows, cols, s):
    """The window ``rows x cols`` (each ``(start, length)``) of the full correlation of the
    2-D device arrays ``a`` and ``v``, as an ``h x w`` device array."""
    (r0, h), (c0, w) = rows, cols
    (m1, n1), (m2, n2) = a.shape, v.shape
    flip = v.size > a.size
    if flip:
        # NOTE: each output sums over all of v's taps; when v is the larger, correlate v
        # with a instead: z_av[k, l] = z_va[M - 1 - k, N - 1 - l] (M x N the full shape),
        # the same window reversed, which the kernel's store does.
        r0, c0 = (m1 + m2 - 1) - h - r0, (n1 + n2 - 1) - w - c0
        a, v, (m1, n1), (m2, n2) = v, a, (m2, n2), (m1, n1)
    check_size("the output", (h, w), a.dtype)
    out = empty((1, 1, h, w), a.dtype, s)
    conv.launch_forward(a.reshape(1, 1, m1, n1), v.reshape(1, 1, m2, n2),
                        zeros((1,), a.dtype, s), out, (1, 1), m2 - 1 - r0, n2 - 1 - c0,
                        (1, 1), 1, flip, s)
    return out.reshape(h, w)


def correlate1d(a, v, mode: str = "full"):
    """:func:`kernels.correlate.correlate1d` for device arrays."""
    s = stream(a, v)  # NOTE: from the caller's arrays, before they become Numba views
    a = device(a, "a", 1)
    v = device(v, "v", 1, dtype=a.dtype)
    start, length = window1d(mode, a.shape[0], v.shape[0])
    out = _window(a.reshape(1, a.shape[0]), v.reshape(1, v.shape[0]), (0, 1),
                  (start, length), s)
    return out.reshape(length)


def correlate2d(in1, in2, mode: str = "full"):
    """:func:`kernels.correlate.correlate2d` for device arrays."""
    s = stream(in1, in2)
    in1 = device(in1, "in1", 2)
    in2 = device(in2, "in2", 2, dtype=in1.dtype)
    rows, cols = window2d(mode, in1.shape, in2.shape)
    return _window(in1, in2, rows, cols, s)
