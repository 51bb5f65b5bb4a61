"""Small element-wise helpers the other families share (fill, copy)."""

from __future__ import annotations

from numba import cuda

from ._launch import grid_1d, launch
from .ptx import register


@cuda.jit
def _fill(out, value):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = value


def fill(out, value, s=None):
    """out[...] = value, on the device."""
    flat = out.reshape(out.size)
    b, t = grid_1d(flat.size)
    launch(_fill, b, t, s or 0, flat, flat.dtype.type(value))


register(_fill, "fill", [("float32[::1]", "float32"), ("float64[::1]", "float64"),
                         ("int64[::1]", "int64")])
