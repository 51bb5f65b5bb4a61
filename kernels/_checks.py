"""Argument validation shared by every kernel: fail before launching, naming the argument.

Kernels assume what these functions establish: NumPy arrays of one float dtype
(float32 or float64), the right rank, C-contiguous (copied if needed for inputs;
outputs are allocated here, never given by the caller).
"""

from __future__ import annotations

import sys

import numpy as np

FLOATS = (np.float32, np.float64)


def is_device(a) -> bool:
    """Whether ``a`` lives on a GPU: it exposes ``__cuda_array_interface__``, or it is an
    array of Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, used by the tests)."""
    if a is None or isinstance(a, np.ndarray):
        return False
    if hasattr(a, "__cuda_array_interface__"):
        return True
    sim = sys.modules.get("numba.cuda.simulator.cudadrv.devicearray")
    return sim is not None and isinstance(a, sim.FakeCUDAArray)


def on_device(*arrays) -> bool:
    """Whether any argument lives on a GPU (see :func:`is_device`)."""
    return any(is_device(a) for a in arrays)


def no_device(*arrays) -> None:
    """Refuse a device array among host arguments (the caller runs the CPU path)."""
    if on_device(*arrays):
        raise TypeError("a CUDA array was passed with NumPy (host) arrays: pass all arrays "
                        "on one device (e.g. tensor.cpu().numpy(), or numba.cuda.to_device)")


def check_meta(name: str, dtype, shape: tuple, ndim=None, want=None, floats=True) -> None:
    """The dtype and shape checks every array argument gets, on either backend: a float
    dtype (unless ``floats`` is False), the dtype ``want`` of the other arguments, a rank
    in ``ndim`` (an int or a tuple), and no zero-sized dimension."""
    dtype = np.dtype(dtype)
    if floats and dtype.type not in FLOATS:
        raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    if want is not None and dtype != np.dtype(want):
        raise TypeError(f"{name} is {dtype} but the other arguments are {np.dtype(want)}")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if ranks is not None and len(shape) not in ranks:
        want_rank = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{name} must have {want_rank} dimensions, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"{name} has a zero-sized dimension: shape {shape}")


def array(x, name: str, ndim: int | tuple[int, ...] | None = None,
          dtype: np.dtype | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float array of the given rank (and dtype, if given)."""
    if not isinstance(x, np.ndarray):
        if hasattr(x, "__cuda_array_interface__"):
            no_device(x)
        raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    check_meta(name, x.dtype, x.shape, ndim, dtype)
    return np.ascontiguousarray(x)


def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (as torch accepts), each at least ``minimum``."""
    if type(value) is int and value >= minimum:  # the common case, without NumPy's isscalar
        return value, value
    values = (value, value) if np.isscalar(value) else tuple(value)
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) for v in values):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def positive(value, name: str, allow_zero: bool = False) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, "
                         f"got {value!r}")
    return v
