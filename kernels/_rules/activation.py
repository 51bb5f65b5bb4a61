"""The argument rules of ReLU, linear and cross-entropy, shared by
:mod:`kernels.activation` and :mod:`kernels.cuda.activation`: shape agreement, a linear
call's arguments (converted by the backend's ``convert``), the class targets' shape and
range, the loss options, and each row's upstream gradient.
"""

from __future__ import annotations

import numpy as np

from .._checks import array, real

REDUCTIONS = ("mean", "sum", "none")


def _same_shape(a: np.ndarray, name: str, like: np.ndarray, like_name: str) -> None:
    if a.shape != like.shape:
        raise ValueError(f"{name} has shape {a.shape} but {like_name} has {like.shape}")


def _linear_args(x, w, convert=array):
    """``x``, ``w`` checked; ``convert`` is :func:`array` (host) or the CUDA backend's
    ``device`` (same checks and messages, for device arrays)."""
    w = convert(w, "w", 2)
    x = convert(x, "x", dtype=w.dtype)
    features = x.shape[x.ndim - 1] if x.ndim else 0  # NOTE: device shapes refuse [-1]
    if features != w.shape[1]:
        raise ValueError(f"x has {features} input features (shape {x.shape}) "
                         f"but w expects {w.shape[1]} (shape {w.shape})")
    return x, w


def _check_target(target: np.ndarray, logits_shape) -> None:
    """Shape and range of the class indices (a host array; the CUDA path copies them)."""
    if target.shape != logits_shape[:1]:
        raise ValueError(f"target has shape {target.shape}, expected ({logits_shape[0]},) "
                         f"for logits {logits_shape}")
    if target.min() < 0 or target.max() >= logits_shape[1]:
        raise ValueError(f"target has class indices outside [0, {logits_shape[1]}): "
                         f"min {target.min()}, max {target.max()}")


def _check_options(reduction, label_smoothing) -> float:
    """``reduction`` checked; ``label_smoothing`` as a float in [0, 1]."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    smoothing = float(real(label_smoothing, "label_smoothing"))
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return smoothing


def _row_scale(grad_out, n: int, reduction: str, dtype) -> np.ndarray:
    """Each row's upstream gradient (÷ N for ``mean``; default 1), N values of ``dtype``."""
    if grad_out is None:
        return np.full(n, 1 / n if reduction == "mean" else 1, dtype=dtype)
    g = np.asarray(grad_out, dtype=np.float64)
    if g.shape != (() if reduction != "none" else (n,)):
        raise ValueError(f"grad_out has shape {g.shape}, expected "
                         f"{'()' if reduction != 'none' else (n,)} for reduction "
                         f"{reduction!r}")
    return np.broadcast_to(g / n if reduction == "mean" else g, (n,)).astype(dtype)
