"""Numba CPU and CUDA kernels for the operations cnncalc analyses.

The kernels themselves arrive with their own issue; the package is importable
now so that the distribution's two import packages are fixed from the start.
"""

__all__: list[str] = []
