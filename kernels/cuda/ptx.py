"""Tier 2 of the CUDA tests: every kernel compiled to PTX for a real architecture, with no
GPU (NVVM from the ``nvidia-cuda-nvcc`` wheel). It catches typing errors the simulator
never sees, and checks that float32 kernels emit no float64 arithmetic (a ``0.0``
literal or a Python float silently promotes a kernel to ``.f64``, at a 2-64x cost).

Each family module calls :func:`register` for its kernels with their float32 and
float64 signatures. ``python -m kernels.cuda.ptx`` compiles them all and reports;
it must run without ``NUMBA_ENABLE_CUDASIM`` (the simulator has no compiler).
"""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from types import SimpleNamespace

CC = (8, 0)  # sm_80 (A100); any real architecture catches the same typing errors
REGISTRY: list[tuple[str, object, tuple[str, ...]]] = []

# float64 instructions other than loads/stores/moves/conversions
F64_ARITH = re.compile(r"^\s*(add|sub|mul|fma|div|rcp|sqrt|rsqrt|max|min|neg|abs|ex2|lg2|"
                       r"setp\.\w+|selp)(\.\w+)*\.f64\b", re.M)


def register(kernel, name: str, signatures) -> None:
    """Record ``kernel`` (a ``cuda.jit`` dispatcher) for the PTX check, with a list of
    argument signatures (tuples of Numba type strings, e.g. ``("float32[:, ::1]",
    "int64")``). A signature whose types mention float32 and not float64 is checked for
    float64 arithmetic."""
    for sig in signatures:
        REGISTRY.append((name, kernel, tuple(sig)))


def _load_all() -> None:
    """Import every family module, so that each registers its kernels."""
    import importlib
    import pkgutil

    import kernels.cuda as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_") and info.name != "ptx":
            importlib.import_module(f"kernels.cuda.{info.name}")


def check() -> list[str]:
    """Compile every registered kernel; return the problems found (empty: all good)."""
    from numba import cuda

    _load_all()
    problems = []
    for name, kernel, sig in REGISTRY:
        argtypes = tuple(_parse(s) for s in sig)
        fn = getattr(kernel, "py_func", kernel)
        try:
            with _device_functions_for_cc():
                ptx, _ = cuda.compile_ptx(fn, argtypes, cc=CC)
        except Exception as err:  # noqa: BLE001 - every failure is reported, by name
            problems.append(f"{name}{sig}: does not compile: {type(err).__name__}: {err}")
            continue
        single = any("float32" in s for s in sig) and not any("float64" in s for s in sig)
        if single and F64_ARITH.search(ptx):
            line = F64_ARITH.search(ptx).group(0).strip()
            problems.append(f"{name}{sig}: float32 kernel does float64 arithmetic: {line}")
    return problems


@contextmanager
def _device_functions_for_cc():
    """Compile called ``cuda.jit(device=True)`` functions for :data:`CC` too.

    NOTE: numba-cuda compiles a device function called from a kernel for the *current
    device's* compute capability (``CUDADispatcher.compile_device`` asks the driver),
    which fails where there is no GPU; for the duration of one compilation the dispatcher
    module is told that the current device is an sm_XX of :data:`CC`."""
    from numba.cuda import dispatcher

    real = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=CC)
    try:
        yield
    finally:
        dispatcher.get_current_device = real


def _parse(text: str):
    """A Numba type from its string form: a scalar (``int64``) or an array
    (``float32[:, ::1]``: C-contiguous when the last axis is ``::1``, else any layout)."""
    from numba import types

    name, _, dims = text.partition("[")
    dtype = getattr(types, name.strip())
    if not dims:
        return dtype
    axes = [a.strip() for a in dims.rstrip("]").split(",")]
    return types.Array(dtype, len(axes), "C" if axes[-1] == "::1" else "A")


def main() -> int:
    problems = check()
    for p in problems:
        print(p)
    print(f"{len(REGISTRY)} kernel signatures compiled to PTX for sm_{CC[0]}{CC[1]}: "
          f"{'all clean' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    from kernels.cuda import ptx  # NOTE: the registry lives in the imported module, not __main__

    sys.exit(ptx.main())
