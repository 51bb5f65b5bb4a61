"""The argument rules of 2-D pooling, shared by :mod:`kernels.pool` and
:mod:`kernels.cuda.pool`: the checked window geometry and output size from an input's
shape, and a backward call's ``x_shape``. Shapes only, so both backends use them.
"""

from __future__ import annotations

import numpy as np

from .._checks import pair
from ..reference.pool import output_size


def _geometry(x_shape, kernel_size, stride, padding, ceil_mode):
    """Validated ``(kernel, stride, padding, (OH, OW))`` for an input of ``x_shape``."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding", minimum=0)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"padding {padding} must be at most half of kernel_size {kernel}")
    out = tuple(output_size(n, k, s, p, bool(ceil_mode))
                for n, k, s, p in zip(x_shape[-2:], kernel, stride, padding))
    if min(out) < 1:
        raise ValueError(f"kernel_size {kernel} is larger than the padded input "
                         f"{tuple(x_shape[-2:])} with padding {padding}")
    return kernel, stride, padding, out


def _shape(x_shape) -> tuple[int, ...]:
    """``x_shape`` as a tuple of ints: ints exactly (8.7 is refused, not truncated; a bool
    is not a size), 3 or 4 of them, each positive."""
    try:
        values = tuple(x_shape)
    except TypeError:
        raise TypeError(f"x_shape must be a tuple of ints, got {x_shape!r}") from None
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in values):
        raise TypeError(f"x_shape must be a tuple of ints, got {x_shape!r}")
    shape = tuple(int(n) for n in values)
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(f"x_shape must be 3 or 4 positive sizes (N, C, H, W), got {x_shape!r}")
    return shape
