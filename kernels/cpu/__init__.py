"""Numba CPU kernels (``@njit``, parallel where it pays, cached to disk)."""

from .._notice import install as _install_notice

_install_notice()  # a line on stderr when a family first compiles (see kernels._notice)
