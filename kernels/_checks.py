"""Argument validation shared by every kernel: fail before launching, naming the argument.

Kernels assume what these functions establish: NumPy arrays of one float dtype
(float32 or float64), the right rank, C-contiguous (copied if needed for inputs;
outputs are allocated here, never given by the caller).
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

FLOATS = (np.float32, np.float64)

# The largest stride, padding, dilation or kernel size accepted: far beyond any real
# layer, and small enough that the kernels' int64 index arithmetic (a hyperparameter
# times a row pitch, times the lanes) cannot overflow.
MAX_HYPER = 2**31 - 1


def _physical_memory() -> tuple[int, str]:
    """``(bytes, description)``: the most one output may take, this machine's memory
    (1 TiB where the OS does not say)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        total = -1
    if total > 0:
        return total, "of memory on this machine"
    return 2**40, "allowed for one array"


MAX_OUTPUT_BYTES, _MAX_OUTPUT_WHY = _physical_memory()


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
    native(name, dtype)
    if want is not None and dtype != np.dtype(want):
        raise TypeError(f"{name} is {dtype} but the other arguments are {np.dtype(want)}")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if ranks is not None and len(shape) not in ranks:
        want_rank = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{name} must have {want_rank} dimensions, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"{name} has a zero-sized dimension: shape {shape}")


def native(name: str, dtype: np.dtype) -> None:
    """The kernels read raw memory in this machine's byte order: an array in the other one
    (a big-endian file's, say) would be read as other numbers, silently."""
    if not dtype.isnative:
        order = "big" if dtype.byteorder == ">" else "little"
        raise TypeError(f"{name} is {order}-endian ({dtype.str}), not this machine's byte "
                        f"order: pass {name}.astype(np.{dtype.type.__name__})")


def array(x, name: str, ndim: int | tuple[int, ...] | None = None,
          dtype: np.dtype | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float array of the given rank (and dtype, if given)."""
    if not isinstance(x, np.ndarray):
        if hasattr(x, "__cuda_array_interface__"):
            no_device(x)
        raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    check_meta(name, x.dtype, x.shape, ndim, dtype)
    # NOTE: np.ascontiguousarray makes a 0-d array 1-d; a C-contiguous one needs no copy
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (as torch accepts), each at least ``minimum`` and at most
    :data:`MAX_HYPER`."""
    if type(value) is int and minimum <= value <= MAX_HYPER:  # the common case, fast
        return value, value
    values = (value, value) if np.isscalar(value) else tuple(value)
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) for v in values):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    if any(v > MAX_HYPER for v in values):
        raise ValueError(f"{name} must be at most {MAX_HYPER}, got {value!r}")
    return int(values[0]), int(values[1])


def check_size(name: str, shape, dtype) -> None:
    """Refuse, before allocating it, an array of ``shape`` that needs more bytes than
    :data:`MAX_OUTPUT_BYTES` (this machine's memory): a ValueError that names it and says
    how large, instead of a MemoryError (or an overflow) from the allocator. The count is
    in Python ints, so it cannot overflow."""
    nbytes = math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize
    if nbytes > MAX_OUTPUT_BYTES:
        raise ValueError(f"{name} would need {_gib(nbytes)} GiB (shape "
                         f"{tuple(int(n) for n in shape)}, {np.dtype(dtype)}), more than the "
                         f"{_gib(MAX_OUTPUT_BYTES)} GiB {_MAX_OUTPUT_WHY}")


def _gib(nbytes: int) -> str:
    gib = nbytes / 2**30
    return f"{gib:,.1f}" if gib >= 1 else f"{gib:.3g}"


def _host_view(a):
    """The NumPy array holding ``a``'s data: ``a`` itself, or a simulator array's."""
    if isinstance(a, np.ndarray):
        return a
    sim = sys.modules.get("numba.cuda.simulator.cudadrv.devicearray")
    if sim is not None and isinstance(a, sim.FakeCUDAArray):
        return a._ary
    return None


def _device_extent(a) -> tuple[int, int]:
    """``[start, end)``: the device addresses ``a`` spans, from its
    ``__cuda_array_interface__``."""
    iface = a.__cuda_array_interface__
    itemsize = np.dtype(iface["typestr"]).itemsize
    shape = tuple(iface["shape"])
    strides = iface.get("strides") or tuple(
        itemsize * math.prod(shape[i + 1:]) for i in range(len(shape)))
    start = end = iface["data"][0]
    for n, st in zip(shape, strides):
        if n == 0:
            return start, start
        start += min(0, (n - 1) * st)
        end += max(0, (n - 1) * st)
    return start, end + itemsize


def shares_memory(a, b) -> bool:
    """Whether arrays ``a`` and ``b`` (both host or both device arrays) overlap in
    memory: exactly for host (and simulator) arrays, by address range on a GPU."""
    ha, hb = _host_view(a), _host_view(b)
    if ha is not None and hb is not None:
        return bool(np.shares_memory(ha, hb))
    if ha is not None or hb is not None:
        return False
    (a0, a1), (b0, b1) = _device_extent(a), _device_extent(b)
    return a0 < b1 and b0 < a1


def positive(value, name: str, allow_zero: bool = False) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, "
                         f"got {value!r}")
    return v


def _shown(value) -> str:
    """``repr(value)`` for a message, cut short (an int of 400 digits)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def real(value, name: str, minimum: float | None = None, below: float | None = None) -> float:
    """A finite real number as a Python float: an int, a float or a NumPy integer or float
    scalar (as torch accepts). A string, a bool (``float()`` takes both), None or an array
    is a TypeError; NaN, an infinity, an int too large for a float, a value under
    ``minimum`` or not under ``below`` is a ValueError, each naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {_shown(value)}")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large for a float, got {_shown(value)}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {_shown(value)}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {_shown(value)}")
    if below is not None and not v < below:
        raise ValueError(f"{name} must be below {below}, got {_shown(value)}")
    return v


def flag(value, name: str) -> bool:
    """A bool (or a NumPy bool): anything else, such as the string "False", which is
    true, is a TypeError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} "
                        f"{_shown(value)}")
    return bool(value)


def count(value, name: str, maximum: int = 2**53) -> int:
    """A non-negative integer as a Python int, at most ``maximum``: an int, a NumPy integer,
    an integral float (torch keeps step counts as float tensors) or a 0-d array of one.
    A string, a bool or None is a TypeError; a fraction, NaN, an infinity, a negative
    or too large a value is a ValueError, each naming ``name``."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {_shown(value)}")
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value) or value != int(value):
            raise ValueError(f"{name} must be an integer, got {_shown(value)}")
    n = int(value)
    if not 0 <= n <= maximum:
        raise ValueError(f"{name} must be between 0 and {maximum}, got {_shown(value)}")
    return n


def overlapping(arrays) -> tuple[int, int] | None:
    """The indices ``(i, j)``, i < j, of two C-contiguous arrays among ``arrays`` whose
    memory overlaps (the same array twice, or two views of one buffer), or None.
    NumPy arrays by their ``__array_interface__``, device arrays by their
    ``__cuda_array_interface__`` (Numba's simulator's by the NumPy array they wrap);
    O(n log n) over the address ranges, so a network's many parameters cost little."""
    spans = []
    for i, a in enumerate(arrays):
        size = a.size * a.dtype.itemsize
        if size == 0:
            continue
        face = None if isinstance(a, np.ndarray) else getattr(a, "__cuda_array_interface__",
                                                               None)
        start = (face or a.__array_interface__)["data"][0]
        spans.append((start, start + size, i))
    spans.sort()
    widest = None  # the span reaching furthest so far: (end, index)
    for start, end, i in spans:
        if widest is not None and start < widest[0]:
            return min(i, widest[1]), max(i, widest[1])
        if widest is None or end > widest[0]:
            widest = (end, i)
    return None
