"""ReLU, linear and cross-entropy (forward and backward), as ``torch.nn.functional``.

The maths (NaN, ties, label smoothing, reductions) is defined in
:mod:`kernels.reference.activation`; arguments are checked before any kernel runs.
Host (NumPy) arrays run the CPU kernels; device arrays run :mod:`kernels.cuda.activation`,
which shares the checks of :mod:`kernels._rules.activation`.
"""

from __future__ import annotations

import numpy as np

from ._checks import array, on_device
from ._rules.activation import (  # noqa: F401 - REDUCTIONS stays importable from here
    REDUCTIONS,
    _check_options,
    _check_target,
    _linear_args,
    _row_scale,
    _same_shape,
)

# Below this many elements the serial kernel wins: waking the thread pool costs ~10 µs.
PARALLEL_MIN = 1 << 15


def _cuda():
    """The CUDA backend, imported only when a device array arrives."""
    from .cuda import activation

    return activation


def _pick(parallel, serial, size: int):
    return parallel if size >= PARALLEL_MIN else serial


def relu(x):
    """``F.relu(x)`` for an array of any shape; NaN propagates.

    >>> relu(np.array([-1.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 2.0]
    """
    if on_device(x):
        return _cuda().relu(x)
    from .cpu import activation as cpu

    x = array(x, "x")
    y = np.empty_like(x)
    _pick(cpu.relu, cpu.relu_serial, x.size)(x.reshape(-1), y.reshape(-1), x.dtype.type(0))
    return y


def relu_backward(grad_out, x):
    """Gradient of :func:`relu`: ``grad_out`` where ``x > 0``, else 0 (0 at ``x == 0``,
    as torch)."""
    if on_device(grad_out, x):
        return _cuda().relu_backward(grad_out, x)
    from .cpu import activation as cpu

    grad_out = array(grad_out, "grad_out")
    x = array(x, "x", dtype=grad_out.dtype)
    _same_shape(x, "x", grad_out, "grad_out")
    grad_x = np.empty_like(x)
    _pick(cpu.relu_backward, cpu.relu_backward_serial, x.size)(
        grad_out.reshape(-1), x.reshape(-1), grad_x.reshape(-1), x.dtype.type(0))
    return grad_x


def linear(x, w, b=None):
    """``F.linear(x, w, b) = x @ w.T + b``; ``x`` is ``(..., in)``, ``w`` ``(out, in)``,
    ``b`` ``(out,)``.

    NOTE: a plain NumPy matmul: BLAS already runs at the machine's peak, and calling
    it from inside a Numba prange would oversubscribe the cores.
    """
    if on_device(x, w, b):
        return _cuda().linear(x, w, b)
    x, w = _linear_args(x, w)
    if b is not None:
        b = array(b, "b", 1, dtype=w.dtype)
        if b.shape != (w.shape[0],):
            raise ValueError(f"b has shape {b.shape}, expected ({w.shape[0]},) for w {w.shape}")
    y = np.matmul(x, w.T)
    if b is not None:
        y += b
    return y


def linear_backward(grad_out, x, w):
    """``(grad_x, grad_w, grad_b)`` of :func:`linear`; ``grad_b`` sums over every batch axis."""
    if on_device(grad_out, x, w):
        return _cuda().linear_backward(grad_out, x, w)
    x, w = _linear_args(x, w)
    grad_out = array(grad_out, "grad_out", dtype=w.dtype)
    if grad_out.shape != x.shape[:-1] + (w.shape[0],):
        raise ValueError(f"grad_out has shape {grad_out.shape}, expected "
                         f"{x.shape[:-1] + (w.shape[0],)}")
    g = grad_out.reshape(-1, w.shape[0])
    return np.matmul(grad_out, w), np.matmul(g.T, x.reshape(-1, w.shape[1])), g.sum(axis=0)


def _cross_entropy_args(logits, target, reduction, label_smoothing):
    logits = array(logits, "logits", 2)
    if not isinstance(target, np.ndarray) or not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"target must be a NumPy integer array of class indices, got "
                        f"{getattr(target, 'dtype', type(target).__name__)}")
    _check_target(target, logits.shape)
    smoothing = _check_options(reduction, label_smoothing)
    return logits, np.ascontiguousarray(target, dtype=np.int64), smoothing


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """``F.cross_entropy(logits, target, reduction=..., label_smoothing=...)`` for logits
    N×C and integer class targets N; a stable log-sum-exp, per-sample losses in float64.

    Returns a 0-d value of the logits' dtype (``mean``, ``sum``) or N losses (``none``).
    Device logits and target run the CUDA kernel (see :mod:`kernels.cuda.activation`).

    >>> float(cross_entropy(np.array([[0.0, 0.0]]), np.array([1])))  # log 2
    0.6931471805599453
    """
    if on_device(logits, target):
        return _cuda().cross_entropy(logits, target, reduction, label_smoothing)
    from .cpu import activation as cpu

    logits, target, smoothing = _cross_entropy_args(logits, target, reduction, label_smoothing)
    losses = np.empty(logits.shape[0], dtype=np.float64)
    _pick(cpu.cross_entropy, cpu.cross_entropy_serial, logits.size)(
        logits, target, losses, smoothing, logits.dtype == np.float32)
    if reduction == "none":
        return losses.astype(logits.dtype)
    return logits.dtype.type(losses.mean() if reduction == "mean" else losses.sum())


def cross_entropy_backward(logits, target, reduction="mean", label_smoothing=0.0, grad_out=None):
    """``∂L/∂logits`` of :func:`cross_entropy`: ``(softmax - (1-ε)·onehot - ε/C)``, times the
    upstream gradient ``grad_out`` (a scalar for ``mean``/``sum``, N values for ``none``;
    default 1) and ÷ N for ``mean``."""
    if on_device(logits, target):
        return _cuda().cross_entropy_backward(logits, target, reduction, label_smoothing,
                                              grad_out)
    from .cpu import activation as cpu

    logits, target, smoothing = _cross_entropy_args(logits, target, reduction, label_smoothing)
    n, c = logits.shape
    dtype = logits.dtype.type
    if on_device(grad_out):
        raise TypeError("grad_out is on the GPU but logits are NumPy (host) arrays: pass "
                        "all arrays on one device")
    scale = _row_scale(grad_out, n, reduction, logits.dtype)
    grad = np.empty_like(logits)
    _pick(cpu.cross_entropy_backward, cpu.cross_entropy_backward_serial, logits.size)(
        logits, target, scale, grad, dtype(smoothing / c), dtype(1 - smoothing),
        logits.dtype == np.float32)
    return grad
