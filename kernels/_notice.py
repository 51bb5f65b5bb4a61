"""A one-line notice on stderr when Numba compiles a kernel family for the first time.

The first call of a kernel compiles it for this machine (0.2-4 s a kernel; the conv2d
family takes the longest), and Numba keeps the result in its on-disk cache, so later
processes load it in milliseconds. Without a word, that first call looks like a hang.
:func:`install` registers a listener for Numba's ``"numba:compile"`` event, which
``Dispatcher.compile`` broadcasts only when it really compiles (a cache hit returns
before it), and prints, once per family and process::

    kernels: compiling the conv2d kernels for this machine (first use; cached for later
    runs; python -m kernels warmup compiles them all ahead)

``KERNELS_QUIET=1`` turns it off; :func:`mute` silences it inside a block (the warmup
command has its own progress bar). It never raises: a notice must not break a compile.
It is installed by :mod:`kernels.cpu` on first import, so ``import kernels`` stays cheap.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager

# module that defines a jitted function -> the family named in the notice
FAMILIES = {
    "kernels.cpu.correlate": "correlation",
    "kernels.cpu.conv": "conv2d",
    "kernels.cpu.tiles": "conv2d",
    "kernels.cpu.depthwise": "conv2d",
    "kernels._alloc": "conv2d",  # its one helper serves conv2d's scratch buffers
    "kernels.cpu.pool": "pooling",
    "kernels.cpu.norm": "norm",
    "kernels.cpu.activation": "activation and loss",
    "kernels.cpu.optim": "optimizer",
    "kernels.cuda.correlate": "CUDA correlation",
    "kernels.cuda.conv": "CUDA conv2d",
    "kernels.cuda.pool": "CUDA pooling",
    "kernels.cuda.norm": "CUDA norm",
    "kernels.cuda.activation": "CUDA activation and loss",
    "kernels.cuda.optim": "CUDA optimizer",
}
QUIET_ENV = "KERNELS_QUIET"

_lock = threading.Lock()
_installed = False
_seen: set[str] = set()
_muted = 0


def quiet() -> bool:
    """Whether ``KERNELS_QUIET`` asks for no notices (any value but "", "0", "false", "no")."""
    return os.environ.get(QUIET_ENV, "").strip().lower() not in ("", "0", "false", "no")


def family_of(dispatcher) -> str | None:
    """The family of a compiling Numba dispatcher, from its Python function's module."""
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", None)
    return FAMILIES.get(module) if isinstance(module, str) else None


def message(family: str) -> str:
    if family.startswith("CUDA "):  # CUDA kernels are not cached to disk
        return (f"kernels: compiling the {family} kernels for this GPU "
                f"(first use in this process)")
    return (f"kernels: compiling the {family} kernels for this machine (first use; cached "
            f"for later runs; python -m kernels warmup compiles them all ahead)")


def _on_compile(event) -> None:
    try:
        data = event.data if isinstance(event.data, dict) else {}
        family = family_of(data.get("dispatcher"))
        if family is None or family in _seen:
            return
        _seen.add(family)  # once per process, even while muted or quiet
        if _muted or quiet():
            return
        # NOTE: the process's own stderr, not sys.stderr: like Numba's and LLVM's own
        # output, it stays out of a program's in-process captures of its messages
        # (contextlib.redirect_stderr, pytest's capsys), which check their own lines
        stream = sys.__stderr__ or sys.stderr
        if stream is not None:
            stream.write(message(family) + "\n")
            stream.flush()
    except Exception:  # noqa: BLE001 - a notice must never break a compile
        pass


@contextmanager
def mute():
    """No notices inside the block (the families compiled there still count as seen)."""
    global _muted
    with _lock:
        _muted += 1
    try:
        yield
    finally:
        with _lock:
            _muted -= 1


def install() -> bool:
    """Register the ``"numba:compile"`` listener (once; later calls do nothing).
    Returns whether it is installed; any failure leaves Numba untouched."""
    global _installed
    with _lock:
        if _installed:
            return True
        try:
            from numba.core import event

            class _Notice(event.Listener):
                # only the outermost compile counts: a kernel's jitted helpers compile
                # inside it, and may live in another family's module (conv2d's channel
                # sums call the activations' _sum64)
                depth = 0

                def on_start(self, ev):
                    self.depth += 1
                    if self.depth == 1:
                        _on_compile(ev)

                def on_end(self, ev):
                    self.depth = max(self.depth - 1, 0)

            event.register("numba:compile", _Notice())
            _installed = True
        except Exception:  # noqa: BLE001 - e.g. a Numba without the event API
            return False
    return True
