"""64-byte-aligned arrays for the kernels' buffers, and reusable scratch buffers.

NumPy aligns its allocations to 16 bytes (here they all start 16 bytes into a cache
line), so every 64-byte vector load from such a buffer straddles two cache lines.
The tiled conv kernels load whole 16-float vectors from offsets that are multiples of
16 floats; from an aligned buffer none of those loads split (the weight gradient of
the 64->64 layer: 12.2 ms from NumPy's buffers, 11.2 ms from aligned ones).

A large temporary allocated afresh on every call can cost more than the kernel that
fills it: once other arrays hold the heap, glibc serves it with new pages from the
kernel, and each 4 KiB page faults on first touch (LeNet conv2's forward went from
0.40 to 0.80 ms when the caller kept two arrays of its size alive). Temporaries that
never leave a call therefore come from :func:`scratch`, which keeps one buffer per
name and thread and reuses it (growing it when a call needs more).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit

ALIGN = 64  # bytes: one cache line, one AVX-512 vector
SCRATCH_MAX_BYTES = 32 << 20  # larger temporaries are allocated per call, not kept

_local = threading.local()


@njit(cache=True)
def _address(buf):
    """The address of ``buf``'s data (NumPy's ``buf.ctypes.data`` took 2 us a call)."""
    return buf.ctypes.data


def _aligned(buf: np.ndarray, nbytes: int, shape, dtype) -> np.ndarray:
    start = -_address(buf) % ALIGN
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def _nbytes(shape, dtype: np.dtype) -> int:
    count = shape if isinstance(shape, int) else math.prod(shape)  # NOTE: np.prod took 6 us
    return count * dtype.itemsize


def empty(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, starting on a cache line."""
    dtype = np.dtype(dtype)
    nbytes = _nbytes(shape, dtype)
    return _aligned(np.empty(nbytes + ALIGN, dtype=np.uint8), nbytes, shape, dtype)


def scratch(name: str, shape, dtype) -> np.ndarray:
    """An uninitialized, cache-line-aligned array for a temporary that never leaves the
    calling function, in a buffer reused by the next call that asks for ``name`` (one
    buffer per name and thread, kept up to SCRATCH_MAX_BYTES so that one large layer
    does not pin its temporaries' memory for the life of the process).
    NOTE: the next such call overwrites it, so two arrays alive at once need two names,
    and nothing returned to a caller may be one."""
    dtype = np.dtype(dtype)
    nbytes = _nbytes(shape, dtype)
    if nbytes > SCRATCH_MAX_BYTES:  # not kept: its kernel dwarfs the page faults anyway
        return empty(shape, dtype)
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    buf = bufs.get(name)
    if buf is None or buf.size < nbytes + ALIGN:
        buf = bufs[name] = np.empty(nbytes + ALIGN, dtype=np.uint8)
    return _aligned(buf, nbytes, shape, dtype)
