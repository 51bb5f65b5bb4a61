"""Numba CPU kernels (``@njit``, parallel where it pays, cached to disk)."""
