r"""Cross-correlation, the living definition: ``scipy.signal.correlate`` (1-D) and
``scipy.signal.correlate2d`` (2-D, ``boundary='fill'``, ``fillvalue=0``).

Every mode is a window of the *full* correlation of ``a`` (``m1 x n1``) with ``v``
(``m2 x n2``), which has shape ``(m1 + m2 - 1) x (n1 + n2 - 1)``:

.. math::

    z[k, l] = \sum_{p, q} a[k - (m_2 - 1) + p,\; l - (n_2 - 1) + q]\; v[p, q]

with ``a`` read as zero outside its bounds. Along each axis (sizes ``n1``, ``n2``):

* ``full``:  ``z[0 : n1 + n2 - 1]``
* ``valid``: ``z[min(n1, n2) - 1 : max(n1, n2)]`` (scipy swaps the inputs when ``v``
  is the larger; undoing the swap lands on the same window). In 2-D one input must
  be at least as large as the other along *both* axes, else scipy (and we) raise.
* ``same``:  ``z[s : s + n1]`` with ``s = (n2 - 1) // 2`` for ``correlate`` but
  ``s = n2 // 2`` for ``correlate2d``: the two differ by one for even ``n2``
  (scipy documents the 1-index offset; we reproduce each).

>>> import numpy as np
>>> correlate1d(np.array([1., 2., 3.]), np.array([0., 1., 0.5]))
array([0.5, 2. , 3.5, 3. , 0. ])
>>> correlate1d(np.array([1., 2., 3., 4.]), np.array([1., 1.]), "same")
array([1., 3., 5., 7.])
>>> correlate2d(np.eye(2), np.ones((2, 2)), "same")
array([[2., 1.],
       [1., 1.]])
"""

from __future__ import annotations

import numpy as np

MODES = ("full", "valid", "same")


def axis_window(mode: str, n1: int, n2: int, same_start: int) -> tuple[int, int]:
    """``(start, length)`` of the ``mode`` output inside the full correlation along one axis.

    ``same_start`` is where ``same`` begins: ``(n2 - 1) // 2`` (correlate) or ``n2 // 2``
    (correlate2d).
    """
    if mode == "full":
        return 0, n1 + n2 - 1
    if mode == "valid":
        return min(n1, n2) - 1, abs(n1 - n2) + 1
    if mode == "same":
        return same_start, n1
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def window1d(mode: str, n1: int, n2: int) -> tuple[int, int]:
    """The window of ``scipy.signal.correlate`` (1-D): ``same`` starts at ``(n2 - 1) // 2``."""
    return axis_window(mode, n1, n2, (n2 - 1) // 2)


def window2d(mode: str, shape1: tuple[int, int],
             shape2: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The window (rows, columns) of ``scipy.signal.correlate2d``: ``same`` starts at ``n2 // 2``.

    ``valid`` needs one input at least as large as the other along both axes (scipy's rule).
    """
    if mode == "valid":
        ok1 = all(s1 >= s2 for s1, s2 in zip(shape1, shape2))
        ok2 = all(s2 >= s1 for s1, s2 in zip(shape1, shape2))
        if not (ok1 or ok2):
            raise ValueError(f"in2 {tuple(shape2)} must be no larger than in1 {tuple(shape1)} "
                             "along both axes, or at least as large along both, for mode "
                             "'valid' (as scipy.signal.correlate2d requires)")
    return tuple(axis_window(mode, s1, s2, s2 // 2)  # type: ignore[return-value]
                 for s1, s2 in zip(shape1, shape2))


def full2d(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The full 2-D correlation, in the dtype of ``a``: shift ``a`` by ``(-p, -q)`` and add
    ``v[p, q]`` times it, for every element of ``v``."""
    m1, n1 = a.shape
    m2, n2 = v.shape
    z = np.zeros((m1 + m2 - 1, n1 + n2 - 1), dtype=a.dtype)
    for p in range(m2):
        for q in range(n2):
            z[m2 - 1 - p: m2 - 1 - p + m1, n2 - 1 - q: n2 - 1 - q + n1] += v[p, q] * a
    return z


def correlate1d(a: np.ndarray, v: np.ndarray, mode: str = "full") -> np.ndarray:
    """``scipy.signal.correlate(a, v, mode)`` for 1-D ``a`` and ``v``."""
    start, length = window1d(mode, a.shape[0], v.shape[0])
    return full2d(a[None, :], v[None, :])[0, start: start + length]


def correlate2d(in1: np.ndarray, in2: np.ndarray, mode: str = "full") -> np.ndarray:
    """``scipy.signal.correlate2d(in1, in2, mode)`` with zero fill."""
    (r0, h), (c0, w) = window2d(mode, in1.shape, in2.shape)
    return full2d(in1, in2)[r0: r0 + h, c0: c0 + w]
