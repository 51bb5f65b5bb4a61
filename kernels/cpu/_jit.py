"""Shared compilation helpers for the CPU kernels.

- :func:`parallel_and_serial` compiles one kernel body twice: parallel for big jobs,
  serial for small ones (waking the second thread costs more than small work, and
  under load a parallel call can stall for milliseconds);
- :func:`renamed_copy` makes a copy of a kernel under a name of its own, with
  compile-time constants;
- ``U`` marks an index as non-negative.
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit

# An index known to be >= 0, as U(i): Numba emits negative-index wraparound code for every
# signed index LLVM cannot prove non-negative (a runtime stride makes it unprovable); in
# the tiled conv kernel's tap loop that code was 30 of 39 instructions a tap.
U = np.uint64

# Numba's reference counts: making a view of an array, or passing one to an inlined
# helper, adds to and takes from its owner's count, an atomic update of a cache line that
# the other thread's updates of the same array contend for (on the 2-core VM, 22-34% of a
# 32-group layer's forward; the copy of its padded input took 3x as long on two threads
# as on one). So kernels that allocate nothing compile without them (``_nrt=False``,
# :func:`kernels.cpu._parts.parallel_and_serial_parts`' default: the caller holds every
# array for the call); those that allocate their buffers say WITH_NRT.
WITH_NRT = {"_nrt": True}


CACHE_LINE = 64  # bytes


@njit(cache=True, inline="always")
def empty_lines(n, like):
    """An uninitialized array of ``n`` elements of ``like``'s dtype that starts on a cache
    line: a kernel's own vector buffer. NumPy's allocator inside a kernel starts 4 in 10
    arrays half a line in, and then every 64-byte vector load spans two lines, which
    takes an AVX-512 core up to twice as long (a tap loop's loads and FMAs: 0.40 ns an FMA
    from whole lines, 0.55-0.66 across them)."""
    per = CACHE_LINE // like.itemsize
    buf = np.empty(n + per, like.dtype)
    start = (CACHE_LINE - buf.ctypes.data % CACHE_LINE) % CACHE_LINE // like.itemsize
    return buf[start:start + n]


def renamed_copy(fn, suffix: str, **constants):
    """A copy of the Python function ``fn`` named ``fn.__name__ + suffix``, seeing the
    module-level names ``constants`` (which Numba compiles as constants) over its
    module's. Numba's on-disk cache keys an entry by function name and signature only,
    so a copy compiled otherwise than ``fn`` needs a name of its own."""
    scope = dict(fn.__globals__, **constants) if constants else fn.__globals__
    copy = types.FunctionType(fn.__code__, scope, fn.__name__ + suffix, fn.__defaults__,
                              fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    return copy


def parallel_and_serial(fn, **options):
    """``(njit(parallel=True)(fn), njit(fn))``, both cached to disk.

    NOTE: the cache does not key by the ``parallel`` flag: compiling one function both
    ways would make the serial dispatcher load the parallel code. The serial one is a
    renamed copy.
    """
    return (njit(parallel=True, cache=True, **options)(fn),
            njit(cache=True, **options)(renamed_copy(fn, "_serial")))
