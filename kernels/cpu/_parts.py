"""Running a kernel's parts on Numba's threads while compiling the kernel only once.

A kernel written as ``kernel(*args, part, parts)`` (it does its ``part``/``parts`` share of
the work) is an ordinary compiled function: one thread calls it with ``(0, 1)``, and
:func:`run_parts` runs every part at once through the kernel's address. Written as a
``prange`` loop, the same body cost two to three times as much to compile: Numba links
the body into the parallel loop's function and optimizes it again there and again in
the function that starts the loop (the channels-as-lanes forward took 6 s as a parallel
loop around one call, 2 s as that call alone), and a kernel that also runs serially for
small jobs was compiled a second time for that.

The parallel loop itself (:func:`_launch`) takes only scalars, so it is compiled once for
every kernel: a loop whose arguments are the kernel's took a second to compile for each
kernel and dtype. Per kernel and argument types there is only :func:`_run` (a fifth of
that), which stores the arguments in a block on its stack and emits the small function
that each thread enters with the block's address: it loads the arguments and calls the
kernel. Starting the parts takes about 4 microseconds (a ``prange`` loop, 2).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, prange, typeof, types
from numba._dispatcher import compute_fingerprint
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

_ENTRY_ARGS = [types.int64, types.int64, types.int64]  # block, part, parts


def _block_type(context, args):
    """The LLVM type of a block: the kernel's address, a flag set by a part that failed,
    then the arguments."""
    return ir.LiteralStructType([ir.IntType(64), ir.IntType(64), context.get_value_type(args)])


@intrinsic
def _pack(typingctx, address, args):
    """The address of a block on this function's stack holding ``address`` and ``args``
    (borrowed: the caller holds them for as long as the block is used)."""
    if not isinstance(args, types.BaseTuple):
        raise TypingError("args must be a tuple")

    def codegen(context, builder, signature, llargs):
        block = cgutils.alloca_once(builder, _block_type(context, args))
        builder.store(builder.zext(llargs[0], ir.IntType(64))
                      if llargs[0].type.width < 64 else llargs[0],
                      cgutils.gep_inbounds(builder, block, 0, 0))
        builder.store(ir.Constant(ir.IntType(64), 0), cgutils.gep_inbounds(builder, block, 0, 1))
        builder.store(llargs[1], cgutils.gep_inbounds(builder, block, 0, 2))
        return builder.ptrtoint(block, ir.IntType(64))

    return types.int64(address, args), codegen


@intrinsic
def _entry(typingctx, args):
    """The address of a function ``entry(block, part, parts)`` (emitted here, for these
    argument types) that calls ``kernel(*args, part, parts)`` with the kernel and the
    arguments of the block (see :func:`_pack`), and flags the block if the kernel failed
    (an error inside a parallel loop goes nowhere)."""
    if not isinstance(args, types.BaseTuple):
        raise TypingError("args must be a tuple")
    argtys = [*args.types, types.int64, types.int64]

    def codegen(context, builder, signature, llargs):
        conv = context.call_conv
        fnty = conv.get_function_type(types.none, _ENTRY_ARGS)
        entry = ir.Function(builder.module, fnty,
                            builder.module.get_unique_name("kernels_parts_entry"))
        entry.linkage = "internal"
        b = ir.IRBuilder(entry.append_basic_block())
        block, part, parts = conv.decode_arguments(b, _ENTRY_ARGS, entry)
        at = b.inttoptr(block, _block_type(context, args).as_pointer())
        kernel = b.inttoptr(b.load(cgutils.gep_inbounds(b, at, 0, 0)),
                            conv.get_function_type(types.none, argtys).as_pointer())
        values = b.load(cgutils.gep_inbounds(b, at, 0, 2))
        values = [b.extract_value(values, i) for i in range(len(args))]
        status, _ = conv.call_function(b, kernel, types.none, argtys, [*values, part, parts])
        with b.if_then(status.is_error, likely=False):
            b.store(ir.Constant(ir.IntType(64), 1), cgutils.gep_inbounds(b, at, 0, 1))
        conv.return_native_none(b)
        return builder.ptrtoint(entry, ir.IntType(64))

    return types.int64(args), codegen


@intrinsic
def _enter(typingctx, entry, block, part, parts):
    """``entry(block, part, parts)`` (see :func:`_entry`)."""

    def codegen(context, builder, signature, llargs):
        conv = context.call_conv
        fn = builder.inttoptr(llargs[0], conv.get_function_type(types.none, _ENTRY_ARGS)
                              .as_pointer())
        conv.call_function(builder, fn, types.none, _ENTRY_ARGS, llargs[1:])
        return context.get_dummy_value()

    return types.none(types.int64, types.int64, types.int64, types.int64), codegen


@intrinsic
def _failed(typingctx, block):
    """Whether a part flagged the block (see :func:`_entry`)."""

    def codegen(context, builder, signature, llargs):
        at = builder.inttoptr(llargs[0], ir.IntType(64).as_pointer())
        flag = builder.load(builder.gep(at, [ir.Constant(ir.IntType(32), 1)]))
        return builder.icmp_unsigned("!=", flag, ir.Constant(ir.IntType(64), 0))

    return types.boolean(types.int64), codegen


@njit(parallel=True, cache=True)
def _launch(entry, parts, block):
    for part in prange(parts):
        _enter(entry, block, np.int64(part), np.int64(parts))


@njit(cache=True)
def _run(launch, address, parts, *args):
    """Runs the parts through :func:`_launch` at its address ``launch``; returns whether
    one failed.

    NOTE: ``_launch`` is called by address, not by name: a call by name links a copy of
    it into every ``_run`` compiled, and a ``_run`` compiled while ``_launch`` came from
    the disk cache crashed the next process that loaded it from the cache (an old copy
    of the parallel loop, linked against another process's symbols)."""
    block = _pack(address, args)
    _enter(launch, _entry(args), parts, block)
    return _failed(block)


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


_LAUNCH: list = []  # the address of _launch, once compiled or loaded


def _launch_address() -> int:
    if not _LAUNCH:
        sig = (types.int64, types.int64, types.int64)
        _launch.compile(sig)
        result = _launch.overloads[sig]
        _LAUNCH.append(result.library.get_pointer_to_function(result.fndesc.llvm_func_name))
    return _LAUNCH[0]


def run_parts(kernel, parts: int, *args) -> None:
    """``kernel(*args, part, parts)`` for every ``part < parts``, on Numba's threads at
    once (one part, on this thread). The address is looked up by the exact Numba types
    of ``args`` (Numba's own fingerprint of them), so the kernel is never called with
    arguments it was not compiled for."""
    if parts <= 1:
        kernel(*args, 0, 1)
        return
    if not hasattr(kernel, "overloads"):  # a Python function (NUMBA_DISABLE_JIT=1)
        for part in range(parts):
            kernel(*args, part, parts)
        return
    key = (kernel, compute_fingerprint(args))
    address = _addresses.get(key)
    if address is None:
        address = _addresses[key] = _address(kernel, args)
    if _run(_launch_address(), address, parts, *args):
        raise RuntimeError(f"a part of {kernel.__name__} failed; with one thread "
                           "(numba.set_num_threads(1)) it raises its error")


def parallel_and_serial_parts(fn, **options):
    """``(parallel, serial)``: ``fn(*args, part, parts)`` compiled once (cached to disk),
    run on every Numba thread or on this one; without reference counts unless
    ``options`` holds :data:`kernels.cpu._jit.WITH_NRT`."""
    kernel = njit(cache=True, **{"_nrt": False, **options})(fn)  # (see _jit.WITH_NRT)

    def parallel(*args):
        run_parts(kernel, get_num_threads(), *args)

    def serial(*args):
        kernel(*args, 0, 1)

    parallel.kernel = serial.kernel = kernel  # for the warmup's count of compiled kernels
    return parallel, serial
