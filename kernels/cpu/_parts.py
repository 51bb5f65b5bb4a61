"""Running a kernel's parts on Numba's threads while compiling the kernel only once.

A kernel written as ``kernel(*args, part, parts)`` (it does its ``part``/``parts`` share of
the work) is an ordinary compiled function: one thread calls it with ``(0, 1)``, and
:func:`run_parts` runs every part at once from a small parallel loop that calls the
kernel through its address. Written as a ``prange`` loop, the same body cost two to three
times as much to compile: Numba links the body into the parallel loop's function and
optimizes it again there and again in the function that starts the loop (the
channels-as-lanes forward took 6 s as a parallel loop around one call, 2 s as that call
alone), and a kernel that also runs serially for small jobs was compiled a second time
for that. Here the loop is compiled once per argument types (under a second), whatever
the kernel, and starts as fast as any parallel loop (about 3 microseconds).
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange, typeof, types
from numba._dispatcher import compute_fingerprint
from numba.core.errors import TypingError
from numba.extending import intrinsic


@intrinsic
def _call(typingctx, address, args, part, parts):
    """``kernel(*args, part, parts)`` for the kernel compiled at ``address`` (Numba's own
    calling convention; an error status it returns is passed on)."""
    if not isinstance(args, types.BaseTuple):
        raise TypingError("args must be a tuple")
    argtys = [*args.types, types.int64, types.int64]

    def codegen(context, builder, signature, llargs):
        fnty = context.call_conv.get_function_type(types.none, argtys)
        fn = builder.inttoptr(llargs[0], fnty.as_pointer())
        values = [builder.extract_value(llargs[1], i) for i in range(len(args))]
        status, _ = context.call_conv.call_function(builder, fn, types.none, argtys,
                                                    [*values, llargs[2], llargs[3]])
        with builder.if_then(status.is_error, likely=False):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return types.none(address, args, types.int64, types.int64), codegen


@njit(parallel=True, cache=True)
def _launch(address, parts, args):
    for part in prange(parts):
        _call(address, args, np.int64(part), np.int64(parts))


@njit(inline="always")
def span(n, part, parts):
    """``(lo, hi)``: the tasks of ``part`` among ``parts`` sharing ``n`` tasks, contiguous
    and within one of each other in size (as a parallel loop's static schedule)."""
    return part * n // parts, (part + 1) * n // parts


_addresses: dict = {}


def _address(kernel, args: tuple) -> int:
    """The address of ``kernel`` compiled for ``args`` (compiled, or loaded from the disk
    cache, if it was not yet)."""
    sig = (*(typeof(a) for a in args), types.int64, types.int64)
    kernel.compile(sig)
    result = kernel.overloads[sig]
    if result.signature.return_type != types.none:
        raise TypeError(f"{kernel.__name__} must return nothing to run in parts")
    return result.library.get_pointer_to_function(result.fndesc.llvm_func_name)


def run_parts(kernel, parts: int, *args) -> None:
    """``kernel(*args, part, parts)`` for every ``part < parts``, on Numba's threads at
    once (one part, on this thread). The address is looked up by the exact Numba types
    of ``args`` (Numba's own fingerprints of them), so the kernel is never called with
    arguments it was not compiled for."""
    if parts <= 1:
        kernel(*args, 0, 1)
        return
    key = (kernel, *map(compute_fingerprint, args))
    address = _addresses.get(key)
    if address is None:
        address = _addresses[key] = _address(kernel, args)
    _launch(address, parts, args)


def parallel_and_serial_parts(fn, **options):
    """``(parallel, serial)``: ``fn(*args, part, parts)`` compiled once (cached to disk),
    run on every Numba thread or on this one."""
    kernel = njit(cache=True, **options)(fn)

    def parallel(*args):
        run_parts(kernel, get_num_threads(), *args)

    def serial(*args):
        kernel(*args, 0, 1)

    parallel.kernel = serial.kernel = kernel  # for the warmup's count of compiled kernels
    return parallel, serial
