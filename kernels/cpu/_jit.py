"""Shared compilation helpers for the CPU kernels.

- :func:`parallel_and_serial` compiles one kernel body twice: parallel for big jobs,
  serial for small ones (waking the second thread costs more than small work, and
  under load a parallel call can stall for milliseconds);
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


def parallel_and_serial(fn, **options):
    """``(njit(parallel=True)(fn), njit(fn))``, both cached to disk.

    NOTE: Numba's on-disk cache keys an entry by function name and signature, not
    by the ``parallel`` flag: compiling one function both ways would make the
    serial dispatcher load the parallel code. The serial one is a renamed copy.
    """
    serial = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                fn.__defaults__, fn.__closure__)
    serial.__qualname__ = fn.__qualname__ + "_serial"
    return (njit(parallel=True, cache=True, **options)(fn),
            njit(cache=True, **options)(serial))
