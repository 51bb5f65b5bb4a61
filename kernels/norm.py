"""Batch, layer, instance and group norm, forward and backward, as in ``torch.nn.functional``.

The forward functions take torch's arguments (names, order, defaults) and return ``y``
as torch does. The statistics the backward needs come back with ``return_stats=True``
(keyword-only): ``(y, mean, invstd)`` in x's dtype, where ``invstd = 1 / sqrt(var + eps)``
with the biased variance — exactly what torch's ``native_*_norm`` saves::

    batch_norm     mean, invstd: (C,)  batch statistics in training, else running ones
    instance_norm  (N, C) with use_input_stats, else the (C,) running statistics
    group_norm     (N, num_groups)
    layer_norm     x.shape[:-len(normalized_shape)]  (() for a single row)

Each ``*_backward`` takes ``grad_out``, ``x``, the shape arguments, ``weight`` (or None),
``mean`` and ``invstd`` from the forward, and returns ``(grad_x, grad_weight, grad_bias)``:
``grad_weight`` is None when ``weight`` is None; ``grad_bias`` is None unless
``has_bias`` (keyword-only, default: ``weight is not None``, the ``affine=True`` layer
case) — the backward never needs the bias itself, only whether it exists.

Training-mode running statistics are updated in place like torch:
``running = (1 - momentum) * running + momentum * batch``, with the unbiased variance
(the biased one times M / (M - 1)) for ``running_var``; they must be writable,
C-contiguous and of x's dtype. ``eps`` may be 0; a constant slice then behaves as in
torch: nan from group and layer norm, y = bias (invstd = 0) from instance norm and batch
norm in training (torch refuses eps = 0 there; we allow it), and +-inf from batch norm in
eval with running_var = 0 (torch: nan). Statistics are accumulated in float64 in two
passes (see ``kernels.cpu.norm``).

>>> import numpy as np
>>> x = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
>>> y, mean, invstd = batch_norm(x, training=True, return_stats=True)
>>> mean
array([2.5, 4.5], dtype=float32)
>>> grad_x, grad_w, grad_b = batch_norm_backward(np.ones_like(x), x, None, mean, invstd)
>>> float(abs(grad_x).max()) < 1e-6, grad_w, grad_b
(True, None, None)
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._checks import array, no_device, on_device
from ._rules.norm import (
    _batch_checks,
    _distinct_running,
    _eps,
    _group_checks,
    _groups,
    _momentum,
    _normalized_shape,
)

__all__ = ["batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward",
           "instance_norm", "instance_norm_backward", "group_norm", "group_norm_backward"]


# ---------------------------------------------------------------- validation helpers

def _input(x, name: str = "x", min_ndim: int = 2) -> np.ndarray:
    x = array(x, name)
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions "
                         f"(N, C, ...), got shape {x.shape}")
    return x


def _like(a, name: str, x: np.ndarray) -> np.ndarray:
    a = array(a, name, x.ndim, x.dtype)
    if a.shape != x.shape:
        raise ValueError(f"{name} has shape {a.shape}, but x has shape {x.shape}")
    return a


def _vector(a, name: str, shape: tuple[int, ...], dtype) -> np.ndarray | None:
    """An optional parameter or statistic of exactly ``shape`` and x's dtype."""
    if a is None:
        return None
    a = array(a, name, len(shape), dtype)
    if not shape:  # np.ascontiguousarray makes a 0-d array 1-d
        a = a.reshape(())
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def _running(a, name: str, channels: int, dtype, written: bool) -> np.ndarray | None:
    """A running statistic: updated in place, so never copied."""
    if a is None:
        return None
    no_device(a)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} is {a.dtype} but x is {np.dtype(dtype)}")
    if a.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},), got {a.shape}")
    if written and not (a.flags.c_contiguous and a.flags.writeable):
        raise ValueError(f"{name} is updated in place, so it must be writable and "
                         "C-contiguous")
    return a


def _affine(weight, bias, shape, dtype):
    """Weight and bias as arrays (ones / zeros when absent: one kernel specialization)."""
    w = np.ones(shape, dtype) if weight is None else weight
    b = np.zeros(shape, dtype) if bias is None else bias
    return w.reshape(-1), b.reshape(-1)


def _invstd(var: np.ndarray, eps: float, flat_is_zero: bool = False) -> np.ndarray:
    with np.errstate(divide="ignore"):
        inv = 1.0 / np.sqrt(var + eps)
    return np.where(var + eps == 0, 0.0, inv) if flat_is_zero else inv


def _update(running: np.ndarray | None, value: np.ndarray, momentum: float) -> None:
    if running is not None:
        running[...] = (1.0 - momentum) * running.astype(np.float64) + momentum * value


def _grads(x, grad_w, grad_b, weight, has_bias, shape):
    if has_bias is None:
        has_bias = weight is not None
    gw = None if weight is None else grad_w.astype(x.dtype).reshape(shape)
    gb = grad_b.astype(x.dtype).reshape(shape) if has_bias else None
    return gw, gb


def _cpu():
    from .cpu import norm
    return norm


def _cuda():
    from .cuda import norm
    return norm


# ---------------------------------------------------------------- batch norm

def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, *, return_stats=False):
    """``torch.nn.functional.batch_norm``: statistics per channel over (N, spatial).

    ``training``: normalize with the batch statistics and, when given, update
    ``running_mean``/``running_var`` in place; otherwise normalize with the running
    statistics (then required). ``return_stats``: return ``(y, mean, invstd)``.
    """
    if on_device(x, running_mean, running_var, weight, bias):
        return _cuda().batch_norm(x, running_mean, running_var, weight, bias, training,
                                  momentum, eps, return_stats=return_stats)
    x = _input(x)
    n, c = x.shape[:2]
    weight = _vector(weight, "weight", (c,), x.dtype)
    bias = _vector(bias, "bias", (c,), x.dtype)
    running_mean = _running(running_mean, "running_mean", c, x.dtype, bool(training))
    running_var = _running(running_var, "running_var", c, x.dtype, bool(training))
    _distinct_running(running_mean, running_var)
    eps = _eps(eps)
    momentum = _momentum(momentum)
    _batch_checks(x.shape, training, running_mean, running_var)
    count = x.size // c  # values per channel

    x3 = x.reshape(n, c, -1)
    y = np.empty_like(x3)
    if training:
        mean, var = np.empty(c), np.empty(c)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    w, b = _affine(weight, bias, (c,), x.dtype)
    _cpu().batch_norm_forward(x3, w, b, bool(training), eps, y, mean, var)
    if training:
        _update(running_mean, mean, momentum)
        _update(running_var, var * (count / (count - 1)), momentum)
    y = y.reshape(x.shape)
    if return_stats:
        return y, mean.astype(x.dtype), _invstd(var, eps, bool(training)).astype(x.dtype)
    return y


def batch_norm_backward(grad_out, x, weight, mean, invstd, training=True, *, has_bias=None):
    """Gradients of :func:`batch_norm` → ``(grad_x, grad_weight, grad_bias)``.

    ``mean``/``invstd``: from ``batch_norm(..., return_stats=True)`` (the batch statistics
    in training, the running ones in eval). ``training=False``: the statistics are
    constants, so ``grad_x = grad_out * weight * invstd``.
    """
    if on_device(grad_out, x, weight, mean, invstd):
        return _cuda().batch_norm_backward(grad_out, x, weight, mean, invstd, training,
                                           has_bias=has_bias)
    x = _input(x)
    grad_out = _like(grad_out, "grad_out", x)
    n, c = x.shape[:2]
    weight = _vector(weight, "weight", (c,), x.dtype)
    mean = _vector(mean, "mean", (c,), x.dtype)
    invstd = _vector(invstd, "invstd", (c,), x.dtype)
    if mean is None or invstd is None:
        raise ValueError("mean and invstd are required (batch_norm(..., return_stats=True))")
    x3 = x.reshape(n, c, -1)
    gx = np.empty_like(x3)
    gw, gb = np.empty(c), np.empty(c)
    w, _ = _affine(weight, None, (c,), x.dtype)
    _cpu().batch_norm_backward(grad_out.reshape(x3.shape), x3, w, mean.astype(np.float64),
                               invstd.astype(np.float64), bool(training), gx, gw, gb)
    return (gx.reshape(x.shape),) + _grads(x, gw, gb, weight, has_bias, (c,))


# ---------------------------------------------------------------- group and instance norm

def _group_forward(x, groups, weight, bias, eps, flat_is_zero=False):
    n, c = x.shape[:2]
    x3 = x.reshape(n, c, -1)
    y = np.empty_like(x3)
    mean, var = np.empty((n, groups)), np.empty((n, groups))
    w, b = _affine(weight, bias, (c,), x.dtype)
    _cpu().group_norm_forward(x3, groups, w, b, eps, flat_is_zero, y, mean, var)
    return y.reshape(x.shape), mean, var


def _group_backward(grad_out, x, groups, weight, mean, invstd):
    n, c = x.shape[:2]
    x3 = x.reshape(n, c, -1)
    gx = np.empty_like(x3)
    gw, gb = np.empty((n, c)), np.empty((n, c))
    w, _ = _affine(weight, None, (c,), x.dtype)
    _cpu().group_norm_backward(grad_out.reshape(x3.shape), x3, groups, w,
                               mean.astype(np.float64), invstd.astype(np.float64), gx, gw, gb)
    return gx.reshape(x.shape), gw.sum(axis=0), gb.sum(axis=0)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, return_stats=False):
    """``torch.nn.functional.group_norm``: statistics per (n, group of C/num_groups channels)."""
    if on_device(x, weight, bias):
        return _cuda().group_norm(x, num_groups, weight, bias, eps, return_stats=return_stats)
    x = _input(x)
    c = x.shape[1]
    groups = _groups(num_groups, c)
    weight = _vector(weight, "weight", (c,), x.dtype)
    bias = _vector(bias, "bias", (c,), x.dtype)
    eps = _eps(eps)
    _group_checks(x.shape, groups)
    y, mean, var = _group_forward(x, groups, weight, bias, eps)
    if return_stats:
        return y, mean.astype(x.dtype), _invstd(var, eps).astype(x.dtype)
    return y


def group_norm_backward(grad_out, x, num_groups, weight, mean, invstd, *, has_bias=None):
    """Gradients of :func:`group_norm`; ``mean``/``invstd`` are (N, num_groups)."""
    if on_device(grad_out, x, weight, mean, invstd):
        return _cuda().group_norm_backward(grad_out, x, num_groups, weight, mean, invstd,
                                           has_bias=has_bias)
    x = _input(x)
    groups = _groups(num_groups, x.shape[1])
    return _per_example_backward(grad_out, x, groups, weight, mean, invstd, has_bias,
                                 "group_norm")


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5, *, return_stats=False):
    """``torch.nn.functional.instance_norm``: statistics per (n, c) over the spatial dims.

    ``use_input_stats``: normalize with each instance's statistics and, when given,
    update the running ones in place with their average over n (as torch);
    otherwise normalize with the running statistics (batch norm in eval mode).
    """
    if not use_input_stats:
        return batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps,
                          return_stats=return_stats)
    if on_device(x, running_mean, running_var, weight, bias):
        return _cuda().instance_norm(x, running_mean, running_var, weight, bias,
                                     use_input_stats, momentum, eps, return_stats=return_stats)
    x = _input(x, min_ndim=3)
    n, c = x.shape[:2]
    weight = _vector(weight, "weight", (c,), x.dtype)
    bias = _vector(bias, "bias", (c,), x.dtype)
    running_mean = _running(running_mean, "running_mean", c, x.dtype, True)
    running_var = _running(running_var, "running_var", c, x.dtype, True)
    _distinct_running(running_mean, running_var)
    eps = _eps(eps)
    momentum = _momentum(momentum)
    count = x.size // (n * c)
    if count < 2:
        raise ValueError(f"x: expected more than 1 spatial element when training, "
                         f"got shape {x.shape}")
    y, mean, var = _group_forward(x, c, weight, bias, eps, True)
    _update(running_mean, mean.mean(axis=0), momentum)
    _update(running_var, (var * (count / (count - 1))).mean(axis=0), momentum)
    if return_stats:
        return y, mean.astype(x.dtype), _invstd(var, eps, True).astype(x.dtype)
    return y


def instance_norm_backward(grad_out, x, weight, mean, invstd, use_input_stats=True, *,
                           has_bias=None):
    """Gradients of :func:`instance_norm`; ``mean``/``invstd`` are (N, C) with
    ``use_input_stats``, else the (C,) running statistics (constants, as batch norm eval)."""
    if not use_input_stats:
        return batch_norm_backward(grad_out, x, weight, mean, invstd, False, has_bias=has_bias)
    if on_device(grad_out, x, weight, mean, invstd):
        return _cuda().instance_norm_backward(grad_out, x, weight, mean, invstd,
                                              use_input_stats, has_bias=has_bias)
    x = _input(x, min_ndim=3)
    return _per_example_backward(grad_out, x, x.shape[1], weight, mean, invstd, has_bias,
                                 "instance_norm")


def _per_example_backward(grad_out, x, groups, weight, mean, invstd, has_bias, forward):
    """Group norm's backward, which instance norm is with one group per channel:
    statistics (N, groups), checked against ``x`` before the kernel runs."""
    grad_out = _like(grad_out, "grad_out", x)
    n, c = x.shape[:2]
    weight = _vector(weight, "weight", (c,), x.dtype)
    mean = _vector(mean, "mean", (n, groups), x.dtype)
    invstd = _vector(invstd, "invstd", (n, groups), x.dtype)
    if mean is None or invstd is None:
        raise ValueError(f"mean and invstd are required ({forward}(..., return_stats=True))")
    gx, gw, gb = _group_backward(grad_out, x, groups, weight, mean, invstd)
    return (gx,) + _grads(x, gw, gb, weight, has_bias, (c,))


# ---------------------------------------------------------------- layer norm

def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, return_stats=False):
    """``torch.nn.functional.layer_norm``: statistics over the trailing ``normalized_shape``
    dims; ``weight``/``bias`` have shape ``normalized_shape``."""
    if on_device(x, weight, bias):
        return _cuda().layer_norm(x, normalized_shape, weight, bias, eps,
                                  return_stats=return_stats)
    x = _input(x, min_ndim=1)
    shape = _normalized_shape(normalized_shape, x)
    weight = _vector(weight, "weight", shape, x.dtype)
    bias = _vector(bias, "bias", shape, x.dtype)
    eps = _eps(eps)
    lead = x.shape[:x.ndim - len(shape)]
    x2 = x.reshape(-1, math.prod(shape))
    y = np.empty_like(x2)
    mean, var = np.empty(x2.shape[0]), np.empty(x2.shape[0])
    w, b = _affine(weight, bias, shape, x.dtype)
    _cpu().layer_norm_forward(x2, w, b, eps, y, mean, var)
    y = y.reshape(x.shape)
    if return_stats:
        return y, mean.astype(x.dtype).reshape(lead), \
            _invstd(var, eps).astype(x.dtype).reshape(lead)
    return y


def layer_norm_backward(grad_out, x, normalized_shape, weight, mean, invstd, *,
                        has_bias=None):
    """Gradients of :func:`layer_norm`; ``mean``/``invstd`` have x's leading shape."""
    if on_device(grad_out, x, weight, mean, invstd):
        return _cuda().layer_norm_backward(grad_out, x, normalized_shape, weight, mean, invstd,
                                           has_bias=has_bias)
    x = _input(x, min_ndim=1)
    grad_out = _like(grad_out, "grad_out", x)
    shape = _normalized_shape(normalized_shape, x)
    lead = x.shape[:x.ndim - len(shape)]
    weight = _vector(weight, "weight", shape, x.dtype)
    mean = _vector(mean, "mean", lead, x.dtype)
    invstd = _vector(invstd, "invstd", lead, x.dtype)
    if mean is None or invstd is None:
        raise ValueError("mean and invstd are required (layer_norm(..., return_stats=True))")
    x2 = x.reshape(-1, math.prod(shape))
    rows, d = x2.shape
    chunks = min(numba.get_num_threads(), rows)
    gx = np.empty_like(x2)
    gw, gb = np.zeros((chunks, d)), np.zeros((chunks, d))
    w, _ = _affine(weight, None, shape, x.dtype)
    _cpu().layer_norm_backward(grad_out.reshape(x2.shape), x2, w,
                               mean.astype(np.float64).reshape(-1),
                               invstd.astype(np.float64).reshape(-1), gx, gw, gb)
    return (gx.reshape(x.shape),) + _grads(x, gw.sum(axis=0), gb.sum(axis=0), weight,
                                           has_bias, shape)
