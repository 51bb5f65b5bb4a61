"""Normalization layers in NumPy: batch, layer, instance and group norm, forward and backward.

The living definition the Numba kernels are tested against; semantics are those of
``torch.nn.functional.batch_norm`` / ``layer_norm`` / ``instance_norm`` / ``group_norm``.
Every norm is the same computation over a different set ``R`` of elements::

    mean = sum_R x / M,   var = sum_R (x - mean)^2 / M   (biased; M = |R|)
    invstd = 1 / sqrt(var + eps),   xhat = (x - mean) * invstd,   y = xhat * w + b

    batch norm     R = (n, spatial) for each channel c       w, b per channel
    instance norm  R = (spatial) for each (n, c)             w, b per channel
    group norm     R = (channels of group g, spatial) per (n, g)   w, b per channel
    layer norm     R = the trailing normalized_shape dims    w, b elementwise over them

The backward, with dxhat = dy * w and means taken over R::

    grad_x = invstd * (dxhat - mean_R(dxhat) - xhat * mean_R(dxhat * xhat))
    grad_w = sum over everything but w's axes of dy * xhat,   grad_b = likewise of dy

(when the statistics are constants — batch norm in eval mode — grad_x = dy * w * invstd).

eps = 0 and a constant slice (var = 0) follow torch: group and layer norm give nan
(0 * inf); batch norm in training and instance norm take invstd = 0, so y = b, as torch's
batch-norm kernels do (torch refuses eps = 0 for batch norm in training; we allow it).
Batch norm in eval with running_var + eps = 0 gives +-inf (torch: nan).
Everything is computed in float64 and the outputs are cast back to the input dtype.
Arguments are assumed valid; :mod:`kernels.norm` does the checking.
"""

from __future__ import annotations

import numpy as np


def _moments(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """float64 mean and biased variance over ``axes`` (kept as size-1 dims), two-pass."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    return mean, var


def _invstd(var: np.ndarray, eps: float, flat_is_zero: bool = False) -> np.ndarray:
    """1 / sqrt(var + eps); ``flat_is_zero``: 0 where var + eps == 0 (torch's batch and
    instance norm in training: a constant slice with eps = 0 normalizes to 0, not nan)."""
    with np.errstate(divide="ignore"):
        inv = 1.0 / np.sqrt(var + eps)
    return np.where(var + eps == 0, 0.0, inv) if flat_is_zero else inv


def _affine(xhat: np.ndarray, weight, bias, shape: tuple[int, ...]) -> np.ndarray:
    y = xhat if weight is None else xhat * np.asarray(weight, np.float64).reshape(shape)
    return y if bias is None else y + np.asarray(bias, np.float64).reshape(shape)


def _normalize(x, mean, invstd) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # eps = 0 and a constant slice: 0 * inf = nan, as torch
        return (x.astype(np.float64) - mean) * invstd


def _update(running: np.ndarray | None, value: np.ndarray, momentum: float) -> None:
    if running is not None:
        running[...] = (1.0 - momentum) * running + momentum * value


def _backward(grad_out, x, weight, mean, invstd, stat_axes, param_shape, has_bias,
              constant_stats=False):
    """The shared backward: statistics over ``stat_axes``; weight broadcast as ``param_shape``."""
    g = grad_out.astype(np.float64)
    xhat = _normalize(x, mean, invstd)
    w = 1.0 if weight is None else np.asarray(weight, np.float64).reshape(param_shape)
    dxhat = g * w
    if constant_stats:
        grad_x = dxhat * invstd
    else:
        grad_x = invstd * (dxhat - dxhat.mean(axis=stat_axes, keepdims=True)
                           - xhat * (dxhat * xhat).mean(axis=stat_axes, keepdims=True))
    # the parameters' axes are those where param_shape is not 1; sum over the others
    sum_axes = tuple(i for i, s in enumerate(param_shape) if s == 1)
    shape = tuple(s for s in param_shape if s != 1)
    grad_w = None if weight is None else (g * xhat).sum(axis=sum_axes).reshape(shape)
    grad_b = None if not has_bias else g.sum(axis=sum_axes).reshape(shape)
    dt = x.dtype
    return (grad_x.astype(dt), None if grad_w is None else grad_w.astype(dt),
            None if grad_b is None else grad_b.astype(dt))


def _has_bias(has_bias, weight) -> bool:
    return weight is not None if has_bias is None else bool(has_bias)


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, *, return_stats=False):
    """``F.batch_norm``; with ``return_stats`` also (mean, invstd) per channel, in x's dtype."""
    channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))
    if training:
        mean, var = _moments(x, axes)
        m = x.size // x.shape[1]
        _update(running_mean, mean.ravel(), momentum)
        _update(running_var, var.ravel() * m / (m - 1), momentum)
    else:
        mean = np.asarray(running_mean, np.float64).reshape(channel)
        var = np.asarray(running_var, np.float64).reshape(channel)
    invstd = _invstd(var, eps, flat_is_zero=training)
    y = _affine(_normalize(x, mean, invstd), weight, bias, channel).astype(x.dtype)
    if return_stats:
        return y, mean.ravel().astype(x.dtype), invstd.ravel().astype(x.dtype)
    return y


def batch_norm_backward(grad_out, x, weight, mean, invstd, training=True, *, has_bias=None):
    channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))
    return _backward(grad_out, x, weight, np.asarray(mean, np.float64).reshape(channel),
                     np.asarray(invstd, np.float64).reshape(channel), axes, channel,
                     _has_bias(has_bias, weight), constant_stats=not training)


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5, *, return_stats=False):
    """``F.instance_norm``; stats are (N, C) with input stats, else the (C,) running ones."""
    if not use_input_stats:
        return batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps,
                          return_stats=return_stats)
    channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    axes = tuple(range(2, x.ndim))
    mean, var = _moments(x, axes)
    m = x.size // (x.shape[0] * x.shape[1])
    # torch: each (n, c) updates a copy of the running stats; the copies are averaged over n
    _update(running_mean, mean.reshape(x.shape[:2]).mean(axis=0), momentum)
    _update(running_var, (var.reshape(x.shape[:2]) * m / (m - 1)).mean(axis=0), momentum)
    invstd = _invstd(var, eps, flat_is_zero=True)
    y = _affine(_normalize(x, mean, invstd), weight, bias, channel).astype(x.dtype)
    if return_stats:
        stats_shape = x.shape[:2]
        return (y, mean.reshape(stats_shape).astype(x.dtype),
                invstd.reshape(stats_shape).astype(x.dtype))
    return y


def instance_norm_backward(grad_out, x, weight, mean, invstd, use_input_stats=True, *,
                           has_bias=None):
    if not use_input_stats:
        return batch_norm_backward(grad_out, x, weight, mean, invstd, False, has_bias=has_bias)
    channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    stats = x.shape[:2] + (1,) * (x.ndim - 2)
    return _backward(grad_out, x, weight, np.asarray(mean, np.float64).reshape(stats),
                     np.asarray(invstd, np.float64).reshape(stats), tuple(range(2, x.ndim)),
                     channel, _has_bias(has_bias, weight))


def _grouped(x, num_groups):
    return x.reshape((x.shape[0], num_groups, x.shape[1] // num_groups) + x.shape[2:])


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, return_stats=False):
    """``F.group_norm``; stats are (N, num_groups)."""
    xg = _grouped(x, num_groups)
    mean, var = _moments(xg, tuple(range(2, xg.ndim)))
    invstd = _invstd(var, eps)
    xhat = _normalize(xg, mean, invstd).reshape(x.shape)
    y = _affine(xhat, weight, bias, (1, x.shape[1]) + (1,) * (x.ndim - 2)).astype(x.dtype)
    if return_stats:
        shape = (x.shape[0], num_groups)
        return y, mean.reshape(shape).astype(x.dtype), invstd.reshape(shape).astype(x.dtype)
    return y


def group_norm_backward(grad_out, x, num_groups, weight, mean, invstd, *, has_bias=None):
    xg = _grouped(x, num_groups)
    stats = (x.shape[0], num_groups) + (1,) * (xg.ndim - 2)
    param = (1, num_groups, x.shape[1] // num_groups) + (1,) * (x.ndim - 2)
    gx, gw, gb = _backward(_grouped(grad_out, num_groups), xg, weight,
                           np.asarray(mean, np.float64).reshape(stats),
                           np.asarray(invstd, np.float64).reshape(stats),
                           tuple(range(2, xg.ndim)), param, _has_bias(has_bias, weight))
    return (gx.reshape(x.shape), None if gw is None else gw.reshape(-1),
            None if gb is None else gb.reshape(-1))


def _normalized(normalized_shape) -> tuple[int, ...]:
    return (int(normalized_shape),) if np.isscalar(normalized_shape) else tuple(normalized_shape)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, return_stats=False):
    """``F.layer_norm``; stats have the leading shape ``x.shape[:-len(normalized_shape)]``."""
    shape = _normalized(normalized_shape)
    lead = x.shape[:x.ndim - len(shape)]
    mean, var = _moments(x, tuple(range(len(lead), x.ndim)))
    invstd = _invstd(var, eps)
    y = _affine(_normalize(x, mean, invstd), weight, bias, (1,) * len(lead) + shape)
    if return_stats:
        return y.astype(x.dtype), mean.reshape(lead).astype(x.dtype), \
            invstd.reshape(lead).astype(x.dtype)
    return y.astype(x.dtype)


def layer_norm_backward(grad_out, x, normalized_shape, weight, mean, invstd, *, has_bias=None):
    shape = _normalized(normalized_shape)
    lead = x.shape[:x.ndim - len(shape)]
    stats = lead + (1,) * len(shape)
    gx, gw, gb = _backward(grad_out, x, weight, np.asarray(mean, np.float64).reshape(stats),
                           np.asarray(invstd, np.float64).reshape(stats),
                           tuple(range(len(lead), x.ndim)), (1,) * len(lead) + shape,
                           _has_bias(has_bias, weight))
    return gx, None if gw is None else gw.reshape(shape), None if gb is None else gb.reshape(shape)
