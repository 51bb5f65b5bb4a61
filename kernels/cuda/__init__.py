"""The CUDA backend: Numba CUDA kernels behind the same public functions.

A public function in ``kernels`` sends device arrays (anything exposing
``__cuda_array_interface__``: Numba device arrays, CuPy arrays, PyTorch CUDA tensors)
here and host arrays to :mod:`kernels.cpu`. This package is imported only when a
device array arrives, so ``import kernels`` needs no GPU and no CUDA libraries.

Layout: ``_launch.py`` (grid arithmetic, in one place), ``_arrays.py`` (zero-copy
device views, validation, torch streams), one module per op family, and ``ptx.py``
(every kernel compiled to PTX without a GPU, checking types).
"""
