"""Shared compilation helpers for the CPU kernels.

- :func:`parallel_and_serial` compiles one kernel body twice: parallel for big jobs,
  serial for small ones (waking the second thread costs more than small work, and
  under load a parallel call can stall for milliseconds);
- :class:`slp` turns LLVM's SLP vectorizer on while a kernel compiles;
- ``U`` marks an index as non-negative.
"""

from __future__ import annotations

import types

import numpy as np
from numba import config, njit

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


class slp:
    """``with slp():`` LLVM's SLP vectorizer on while a kernel compiles (Numba leaves it
    off by default).

    The register-blocked kernels (:mod:`kernels.cpu.tiles`) spell their accumulator block
    as scalar variables; only the SLP vectorizer packs those into vector registers.
    Compilation happens on a kernel's first call, so calls go through this context.
    NOTE: it flips a process-wide Numba setting for the duration of the call only.
    A class, not a ``contextlib`` generator: it runs on every call of a small layer.
    """

    def __enter__(self):
        self.old = config.SLP_VECTORIZE
        config.SLP_VECTORIZE = 1

    def __exit__(self, *exc):
        config.SLP_VECTORIZE = self.old
