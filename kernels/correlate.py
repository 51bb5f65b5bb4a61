"""Cross-correlation: ``scipy.signal.correlate`` (1-D) and ``scipy.signal.correlate2d``.

Validation and dispatch only; the maths is in ``kernels.reference.correlate`` (the
definition, including which window of the full correlation each mode keeps) and the
CPU kernel in ``kernels.cpu.correlate``.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from .reference.correlate import window1d, window2d


def _run(a: np.ndarray, v: np.ndarray, rows: tuple[int, int],
         cols: tuple[int, int]) -> np.ndarray:
    """The window ``rows x cols`` (each ``(start, length)``) of the full correlation."""
    from .cpu import correlate as cpu

    (r0, h), (c0, w) = rows, cols
    (m1, n1), (m2, n2) = a.shape, v.shape
    _checks.check_size("the output", (h, w), a.dtype)
    out = np.empty((h, w), dtype=a.dtype)
    work = h * w * min(m2, m1) * min(n2, n1)  # multiply-adds, roughly
    correlate2d_window = (cpu.correlate2d_window if work >= cpu.PARALLEL_MIN_WORK
                          else cpu.correlate2d_window_serial)
    if n2 > n1:
        # NOTE: the kernel's inner loop runs along a row of ``a``; when ``v`` is the larger
        # array along the rows, those rows are short, so correlate ``v`` with ``a`` instead:
        # z_av[k, l] = z_va[M - 1 - k, N - 1 - l] (M x N the full shape), i.e. the same
        # window reversed.
        full_h, full_w = m1 + m2 - 1, n1 + n2 - 1
        flipped = np.empty_like(out)
        correlate2d_window(v, a, full_h - h - r0, full_w - w - c0, flipped)
        out[...] = flipped[::-1, ::-1]
    else:
        correlate2d_window(a, v, r0, c0, out)
    return out


def correlate1d(a, v, mode: str = "full") -> np.ndarray:
    """``scipy.signal.correlate(a, v, mode)`` for 1-D float32/float64 ``a`` and ``v``.

    ``z[k] = sum_n a[n + k - (len(v) - 1)] * v[n]`` over the full range of ``k``; ``valid``
    and ``same`` keep a window of it (``same`` is centred at ``(len(v) - 1) // 2``, as
    scipy's ``correlate``, which differs from ``correlate2d`` for even ``len(v)``).

    >>> import numpy as np
    >>> correlate1d(np.array([1., 2., 3.]), np.array([0., 1., 0.5]))
    array([0.5, 2. , 3.5, 3. , 0. ])
    """
    if _checks.on_device(a, v):
        from .cuda.correlate import correlate1d as cuda_correlate1d
        return cuda_correlate1d(a, v, mode)
    a = _checks.array(a, "a", 1)
    v = _checks.array(v, "v", 1, dtype=a.dtype)
    start, length = window1d(mode, a.shape[0], v.shape[0])
    out = _run(a.reshape(1, -1), v.reshape(1, -1), (0, 1), (start, length))
    return out.reshape(length)


def correlate2d(in1, in2, mode: str = "full") -> np.ndarray:
    """``scipy.signal.correlate2d(in1, in2, mode)`` (zero fill) for 2-D float32/float64 arrays.

    ``z[k, l] = sum_{p,q} in1[k - (m2-1) + p, l - (n2-1) + q] * in2[p, q]`` over the full
    range; ``same`` is centred at ``(m2 // 2, n2 // 2)``; ``valid`` needs one input at
    least as large as the other along both axes (either order works, as in scipy).

    >>> import numpy as np
    >>> correlate2d(np.eye(2), np.ones((2, 2)), "same")
    array([[2., 1.],
           [1., 1.]])
    """
    if _checks.on_device(in1, in2):
        from .cuda.correlate import correlate2d as cuda_correlate2d
        return cuda_correlate2d(in1, in2, mode)
    in1 = _checks.array(in1, "in1", 2)
    in2 = _checks.array(in2, "in2", 2, dtype=in1.dtype)
    rows, cols = window2d(mode, in1.shape, in2.shape)
    return _run(in1, in2, rows, cols)
