"""The backends the kernel tests run on: ``cpu`` always, ``cuda`` when Numba's CUDA
target is importable (on a real GPU, or in the simulator that ``tests/conftest.py``
switches on when there is none).

A test takes the ``backend`` fixture (see conftest), moves its inputs with
:func:`to_backend` and its results back with :func:`to_host`; the reference (torch,
scipy, NumPy) is computed on the host as always. The simulator runs each GPU thread
in Python (~1 ms a thread), so CUDA cases use small shapes.
"""

from __future__ import annotations

import numpy as np


def cuda_available() -> bool:
    try:
        from numba import cuda
    except ImportError:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver means "not available"
        return False


def to_backend(a, backend: str):
    """A host array on ``backend`` (``None`` and non-arrays pass through)."""
    if backend == "cpu" or not isinstance(a, np.ndarray):
        return a
    from numba import cuda

    return cuda.to_device(a if a.flags.c_contiguous else a.copy(order="C"))  # keeps 0-d


def to_host(a):
    """A result as a NumPy array, whichever backend made it (tuples element-wise)."""
    if isinstance(a, tuple):
        return tuple(to_host(x) for x in a)
    if a is None or isinstance(a, (np.ndarray, np.generic, float, int)):
        return a
    return a.copy_to_host()
