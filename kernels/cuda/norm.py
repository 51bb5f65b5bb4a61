"""CUDA kernels for batch, layer, instance and group norm, forward and backward.

The host wrappers take :mod:`kernels.norm`'s arguments with device arrays, validate
them with the same messages (:mod:`kernels._rules.norm`'s shape-only rules are shared),
and return device arrays of x's dtype; running statistics are updated in place on the
device.

Every norm reduces over sets of elements of the flattened ``x``. Set ``k`` holds
``runs`` runs of ``length`` contiguous elements, ``stride`` apart, starting at
``k * length``; the affine parameter of element ``a`` is ``(a // inner) % channels``::

    norm         sets    length    runs  stride  inner  channels
    batch        C       S         N     C*S     S      C
    group        N*G     C/G * S   1     -       S      C       (instance: G = C)
    layer        M       D         1     -       1      D

Precision, as the CPU path: sums are accumulated in float64 whatever x's dtype, two
passes (the mean, then squared deviations from it), so a large mean does not cancel
the variance. Those kernels take float64 arrays for their float64 results (the
statistics for the running update, the raw sums), which is how the PTX check knows
the float64 arithmetic is meant. Per-element passes run in x's dtype from per-set
coefficients computed once in float64. The forward subtracts the float64 mean as two
parts in x's dtype, ``(x - hi) - lo``: a mean rounded once to float32 loses up to half an
ulp of itself, which far from zero is a visible part of the normalized value.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import cuda, float64

from .._rules import norm as rules
from ._arrays import device, empty, stream, zeros
from ._launch import THREADS, grid_1d, grid_rows, launch
from ._reduce import block_sum
from .elementwise import fill
from .ptx import register

# ---------------------------------------------------------------- device functions

@cuda.jit(device=True, inline=True)
def _address(k, i, length, stride):
    """Flat position of element ``i`` of set ``k``."""
    return k * length + (i // length) * stride + i % length


# ---------------------------------------------------------------- kernels

@cuda.jit
def _moments(x, length, runs, stride, eps, flat_is_zero, mean64, var64, mean, mean_lo,
             invstd):
    """Per set k: mean64[k], var64[k] (biased) in float64; mean[k], the rest of the mean
    mean_lo[k] and invstd[k] = 1 / sqrt(var + eps) in x's dtype (0 where var + eps = 0 and
    ``flat_is_zero``).

    Threads: one block per set, its lanes striding over the set's elements.

    Optimizations:
    - two passes over global memory, each a float64 register sum per lane and a
      shared-memory tree: accurate as two-pass, no Welford division per element;
    - lanes read consecutive elements of a run (coalesced); a set is one block, so no
      inter-block merge or atomics;
    - the barriers sit in :func:`kernels.cuda._reduce.block_sum`, reached by every lane.
    """
    buf = cuda.shared.array(THREADS, float64)
    k = cuda.blockIdx.x
    lane = cuda.threadIdx.x
    sets = mean.shape[0]
    n = length * runs
    count = n if k < sets else 0
    acc = 0.0
    for i in range(lane, count, cuda.blockDim.x):
        acc += x[_address(k, i, length, stride)]
    m = block_sum(buf, acc) / n
    acc = 0.0
    for i in range(lane, count, cuda.blockDim.x):
        d = x[_address(k, i, length, stride)] - m
        acc += d * d
    v = block_sum(buf, acc) / n
    if lane == 0 and k < sets:
        t = mean.dtype.type
        mean64[k] = m
        var64[k] = v
        hi = t(m)
        mean[k] = hi
        mean_lo[k] = t(m - float64(hi))
        if v + eps == 0.0:  # eps = 0, a constant set: torch's batch/instance norm give 0
            invstd[k] = t(0) if flat_is_zero else t(math.inf)
        else:
            invstd[k] = t(1.0 / math.sqrt(v + eps))


@cuda.jit
def _running_stats(running_mean, running_var, eps, var64, mean, mean_lo, invstd):
    """Batch norm in eval: mean = running_mean, invstd = 1 / sqrt(running_var + eps)
    computed in float64 (var64 = running_var in float64), rounded once.

    Threads: one per channel. Optimizations: none needed (C elements); it keeps the
    eval path on the device, with no host round trip.
    """
    c = cuda.grid(1)
    if c < mean.shape[0]:
        t = mean.dtype.type
        v = float64(running_var[c])
        var64[c] = v
        mean[c] = running_mean[c]
        mean_lo[c] = t(0)
        if v + eps == 0.0:
            invstd[c] = t(math.inf)
        else:
            invstd[c] = t(1.0 / math.sqrt(v + eps))


@cuda.jit
def _normalize(x, weight, bias, mean, mean_lo, invstd, length, inner, y):
    """y[a] = ((x[a] - mean[k]) - mean_lo[k]) * (invstd[k] * weight[c]) + bias[c], k = a's
    set, c = its parameter.

    Threads: one per element (x flat).

    Optimizations: x's dtype throughout (float32 stays float32); coalesced reads and
    writes; the per-set statistics and parameters are small and cached.
    """
    a = cuda.grid(1)
    if a < x.shape[0]:
        k = (a // length) % mean.shape[0]
        c = (a // inner) % weight.shape[0]
        y[a] = ((x[a] - mean[k]) - mean_lo[k]) * (invstd[k] * weight[c]) + bias[c]


@cuda.jit
def _update_running(running, stats64, correction, momentum):
    """running[c] = (1 - momentum) * running[c] + momentum * mean_n(stats64[n, c]) *
    correction, in float64 (the unbiased variance: correction = M / (M - 1)).

    Threads: one per channel (rows of stats64: 1 for batch norm, N for instance norm).
    Optimizations: the statistics never leave the device; the update is in place.
    """
    c = cuda.grid(1)
    if c < running.shape[0]:
        rows = stats64.shape[0]
        acc = 0.0
        for n in range(rows):
            acc += stats64[n, c] * correction
        running[c] = (1.0 - momentum) * running[c] + momentum * (acc / rows)


@cuda.jit
def _grad_sums(g, x, weight, mean, invstd, length, runs, stride, inner, sums64, coef):
    """Per set k: s1 = sum w*dy, s2 = sum w*dy*(x - mean) in float64 (into sums64[k]),
    and the grad_x coefficients coef[k] = (-invstd^3 * s2 / M, -invstd * s1 / M) in x's
    dtype, M the set's size.

    Threads: one block per set, lanes striding over it (as :func:`_moments`).

    Optimizations: one pass over dy and x, two float64 register sums per lane, two
    shared-memory trees; coalesced reads.
    """
    buf = cuda.shared.array(THREADS, float64)
    k = cuda.blockIdx.x
    lane = cuda.threadIdx.x
    sets = mean.shape[0]
    n = length * runs
    count = n if k < sets else 0
    m = float64(mean[k]) if k < sets else 0.0
    s1 = 0.0
    s2 = 0.0
    for i in range(lane, count, cuda.blockDim.x):
        a = _address(k, i, length, stride)
        gw = float64(g[a]) * weight[(a // inner) % weight.shape[0]]
        s1 += gw
        s2 += gw * (x[a] - m)
    s1 = block_sum(buf, s1)
    s2 = block_sum(buf, s2)
    if lane == 0 and k < sets:
        t = coef.dtype.type
        inv = float64(invstd[k])
        sums64[k, 0] = s1
        sums64[k, 1] = s2
        coef[k, 0] = t(-inv * inv * inv * s2 / n)
        coef[k, 1] = t(-inv * s1 / n)


@cuda.jit
def _grad_input(g, x, weight, mean, invstd, coef, length, inner, gx):
    """gx[a] = invstd[k] * w[c] * dy[a] + coef[k, 0] * (x[a] - mean[k]) + coef[k, 1].

    Threads: one per element. Optimizations: x's dtype throughout; coalesced.
    """
    a = cuda.grid(1)
    if a < x.shape[0]:
        k = (a // length) % mean.shape[0]
        c = (a // inner) % weight.shape[0]
        gx[a] = invstd[k] * weight[c] * g[a] + coef[k, 0] * (x[a] - mean[k]) + coef[k, 1]


@cuda.jit
def _param_grads(g, x, mean, invstd, length, inner, outer, sums64, grad_w, grad_b):
    """Per parameter c: grad_w[c] = sum dy * (x - mean) * invstd, grad_b[c] = sum dy over
    the elements using c (float64 sums, kept in sums64[:, c]).

    Threads: one block per parameter, lanes striding over its ``outer`` runs of
    ``inner`` elements (channel c of each example; column c of each row for layer norm).

    Optimizations: no atomics and no (N, C) partials: each block owns its parameter.
    Layer norm's columns are read with a stride of D (uncoalesced); D is usually
    large, so there are many blocks to hide it.
    """
    buf = cuda.shared.array(THREADS, float64)
    c = cuda.blockIdx.x
    lane = cuda.threadIdx.x
    channels = grad_w.shape[0]
    count = outer * inner if c < channels else 0
    sw = 0.0
    sb = 0.0
    for i in range(lane, count, cuda.blockDim.x):
        a = ((i // inner) * channels + c) * inner + i % inner
        k = (a // length) % mean.shape[0]
        gi = float64(g[a])
        sw += gi * (x[a] - float64(mean[k])) * invstd[k]
        sb += gi
    sw = block_sum(buf, sw)
    sb = block_sum(buf, sb)
    if lane == 0 and c < channels:
        sums64[0, c] = sw
        sums64[1, c] = sb
        grad_w[c] = sw
        grad_b[c] = sb


def _register():
    for t in ("float32", "float64"):
        v, m, i = f"{t}[::1]", f"{t}[:, ::1]", "int64"
        d1, d2 = "float64[::1]", "float64[:, ::1]"
        register(_moments, "norm_moments",
                 [(v, i, i, i, "float64", "boolean", d1, d1, v, v, v)])
        register(_running_stats, "norm_running_stats", [(v, v, "float64", d1, v, v, v)])
        register(_normalize, "norm_normalize", [(v, v, v, v, v, v, i, i, v)])
        register(_update_running, "norm_update_running", [(v, d2, "float64", "float64")])
        register(_grad_sums, "norm_grad_sums", [(v, v, v, v, v, i, i, i, i, d2, m)])
        register(_grad_input, "norm_grad_input", [(v, v, v, v, v, m, i, i, v)])
        register(_param_grads, "norm_param_grads", [(v, v, v, v, i, i, i, d2, v, v)])


_register()


# ---------------------------------------------------------------- launches

class _Layout(NamedTuple):
    """Where the sets and the parameters sit in the flattened x (see the module doc)."""

    sets: int
    length: int
    runs: int
    stride: int
    inner: int
    channels: int


class _Stats(NamedTuple):
    """A forward's statistics on the device, each (sets,): float64 mean and variance, and in
    x's dtype the mean, the rest of the mean and invstd."""

    mean64: object
    var64: object
    mean: object
    mean_lo: object
    invstd: object


def _statistics(xf, lay, eps, flat_is_zero, s):
    st = _Stats(empty((lay.sets,), np.float64, s), empty((lay.sets,), np.float64, s),
                *(empty((lay.sets,), xf.dtype, s) for _ in range(3)))
    b, t = grid_rows(lay.sets, lay.length * lay.runs)
    launch(_moments, b, t, s, xf, lay.length, lay.runs, lay.stride, eps, bool(flat_is_zero),
           *st)
    return st


def _apply(xf, w, b, st, lay, s):
    y = empty((xf.size,), xf.dtype, s)
    blocks, threads = grid_1d(xf.size)
    launch(_normalize, blocks, threads, s, xf, w, b, st.mean, st.mean_lo, st.invstd, lay.length,
           lay.inner, y)
    return y


def _backward(gf, xf, w, mean, invstd, lay, outer, constant_stats, s):
    """(grad_x, grad_w, grad_b) flat, in x's dtype; grad_w/grad_b (channels,)."""
    dtype = xf.dtype
    coef = empty((lay.sets, 2), dtype, s)
    if constant_stats:  # batch norm in eval: grad_x = dy * w * invstd
        fill(coef, 0, s)
    else:
        sums = empty((lay.sets, 2), np.float64, s)
        b, t = grid_rows(lay.sets, lay.length * lay.runs)
        launch(_grad_sums, b, t, s, gf, xf, w, mean, invstd, lay.length, lay.runs, lay.stride,
               lay.inner, sums, coef)
    gx = empty((xf.size,), dtype, s)
    blocks, threads = grid_1d(xf.size)
    launch(_grad_input, blocks, threads, s, gf, xf, w, mean, invstd, coef, lay.length, lay.inner,
           gx)
    gw, gb = empty((lay.channels,), dtype, s), empty((lay.channels,), dtype, s)
    sums = empty((2, lay.channels), np.float64, s)
    b, t = grid_rows(lay.channels, outer * lay.inner)
    launch(_param_grads, b, t, s, gf, xf, mean, invstd, lay.length, lay.inner, outer, sums, gw, gb)
    return gx, gw, gb


def _update(running, stats64, rows, correction, momentum, s):
    if running is not None:
        b, t = grid_1d(running.shape[0])
        channels = running.shape[0]
        launch(_update_running, b, t, s, running, stats64.reshape(rows, channels),
               float(correction), float(momentum))


# ---------------------------------------------------------------- validation

def _flat(a):
    return a.reshape(a.size)


def _input(x, name="x", min_ndim=2):
    x = device(x, name)
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions "
                         f"(N, C, ...), got shape {tuple(x.shape)}")
    return x


def _like(a, name, x):
    a = device(a, name, x.ndim, x.dtype)
    if tuple(a.shape) != tuple(x.shape):
        raise ValueError(f"{name} has shape {tuple(a.shape)}, but x has shape "
                         f"{tuple(x.shape)}")
    return a


def _vector(a, name, shape, dtype):
    """An optional parameter or statistic of exactly ``shape`` and x's dtype."""
    if a is None:
        return None
    a = device(a, name, len(shape), dtype)
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(a.shape)}")
    return a


def _running(a, name, channels, dtype):
    """A running statistic: updated in place, so never copied (device() refuses
    non-contiguous arrays)."""
    if a is None:
        return None
    a = device(a, name, floats=False)
    if a.dtype != dtype:
        raise TypeError(f"{name} is {a.dtype} but x is {np.dtype(dtype)}")
    if tuple(a.shape) != (channels,):
        raise ValueError(f"{name} must have shape ({channels},), got {tuple(a.shape)}")
    return a


def _affine(weight, bias, size, dtype, s):
    """Weight and bias flat (ones / zeros when absent: one kernel specialization)."""
    if weight is None:
        weight = empty((size,), dtype, s)
        fill(weight, 1, s)
    bias = zeros((size,), dtype, s) if bias is None else bias
    return _flat(weight), _flat(bias)


def _grads(gw, gb, weight, has_bias, shape):
    if has_bias is None:
        has_bias = weight is not None
    return (None if weight is None else gw.reshape(shape)), (gb.reshape(shape) if has_bias
                                                             else None)


# ---------------------------------------------------------------- batch norm

def _channel_args(x, weight, bias, running_mean, running_var, eps, momentum):
    """Batch and instance norm's per-channel arguments, checked against x."""
    c = x.shape[1]
    weight, bias = _vector(weight, "weight", (c,), x.dtype), _vector(bias, "bias", (c,), x.dtype)
    running_mean = _running(running_mean, "running_mean", c, x.dtype)
    running_var = _running(running_var, "running_var", c, x.dtype)
    rules._distinct_running(running_mean, running_var)
    return weight, bias, running_mean, running_var, rules._eps(eps), rules._momentum(momentum)


def _batch_layout(shape):
    n, c = shape[:2]
    sp = int(np.prod(shape[2:]))
    return _Layout(c, sp, n, c * sp, sp, c), n


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, *, return_stats=False):
    """:func:`kernels.norm.batch_norm` on the GPU."""
    s = stream(x, running_mean, running_var, weight, bias)
    x = _input(x)
    shape = tuple(x.shape)
    n, c = shape[:2]
    weight, bias, running_mean, running_var, eps, momentum = _channel_args(
        x, weight, bias, running_mean, running_var, eps, momentum)
    rules._batch_checks(shape, training, running_mean, running_var)
    count = x.size // c  # values per channel
    lay, _ = _batch_layout(shape)
    xf = _flat(x)
    if training:
        st = _statistics(xf, lay, eps, True, s)
        _update(running_mean, st.mean64, 1, 1.0, momentum, s)
        _update(running_var, st.var64, 1, count / (count - 1), momentum, s)
    else:
        st = _Stats(None, empty((c,), np.float64, s), *(empty((c,), x.dtype, s) for _ in range(3)))
        b, t = grid_1d(c)
        launch(_running_stats, b, t, s, running_mean, running_var, eps, *st[1:])
    w, b = _affine(weight, bias, c, x.dtype, s)
    y = _apply(xf, w, b, st, lay, s).reshape(shape)
    return (y, st.mean, st.invstd) if return_stats else y


def batch_norm_backward(grad_out, x, weight, mean, invstd, training=True, *, has_bias=None):
    """:func:`kernels.norm.batch_norm_backward` on the GPU."""
    s = stream(grad_out, x, weight, mean, invstd)
    x = _input(x)
    grad_out = _like(grad_out, "grad_out", x)
    shape = tuple(x.shape)
    n, c = shape[:2]
    weight = _vector(weight, "weight", (c,), x.dtype)
    mean = _vector(mean, "mean", (c,), x.dtype)
    invstd = _vector(invstd, "invstd", (c,), x.dtype)
    if mean is None or invstd is None:
        raise ValueError("mean and invstd are required (batch_norm(..., return_stats=True))")
    lay, outer = _batch_layout(shape)
    w, _ = _affine(weight, None, c, x.dtype, s)
    gx, gw, gb = _backward(_flat(grad_out), _flat(x), w, mean, invstd, lay, outer,
                           not training, s)
    return (gx.reshape(shape),) + _grads(gw, gb, weight, has_bias, (c,))


# ---------------------------------------------------------------- group and instance norm

def _group_layout(shape, groups):
    n, c = shape[:2]
    sp = int(np.prod(shape[2:]))
    return _Layout(n * groups, c // groups * sp, 1, 0, sp, c), n


def _group_forward(x, groups, weight, bias, eps, flat_is_zero, s):
    shape = tuple(x.shape)
    lay, _ = _group_layout(shape, groups)
    xf = _flat(x)
    st = _statistics(xf, lay, eps, flat_is_zero, s)
    w, b = _affine(weight, bias, shape[1], x.dtype, s)
    y = _apply(xf, w, b, st, lay, s).reshape(shape)
    n = shape[0]
    return y, st.mean64, st.var64, st.mean.reshape(n, groups), st.invstd.reshape(n, groups)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, return_stats=False):
    """:func:`kernels.norm.group_norm` on the GPU."""
    s = stream(x, weight, bias)
    x = _input(x)
    c = x.shape[1]
    groups = rules._groups(num_groups, c)
    weight = _vector(weight, "weight", (c,), x.dtype)
    bias = _vector(bias, "bias", (c,), x.dtype)
    eps = rules._eps(eps)
    rules._group_checks(x.shape, groups)
    y, _, _, mean, invstd = _group_forward(x, groups, weight, bias, eps, False, s)
    return (y, mean, invstd) if return_stats else y


def group_norm_backward(grad_out, x, num_groups, weight, mean, invstd, *, has_bias=None):
    """:func:`kernels.norm.group_norm_backward` on the GPU."""
    s = stream(grad_out, x, weight, mean, invstd)
    x = _input(x)
    groups = rules._groups(num_groups, x.shape[1])
    return _per_example_backward(grad_out, x, groups, weight, mean, invstd, has_bias,
                                 "group_norm", s)


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5, *, return_stats=False):
    """:func:`kernels.norm.instance_norm` on the GPU."""
    if not use_input_stats:
        return batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps,
                          return_stats=return_stats)
    s = stream(x, running_mean, running_var, weight, bias)
    x = _input(x, min_ndim=3)
    shape = tuple(x.shape)
    n, c = shape[:2]
    weight, bias, running_mean, running_var, eps, momentum = _channel_args(
        x, weight, bias, running_mean, running_var, eps, momentum)
    count = x.size // (n * c)
    if count < 2:
        raise ValueError(f"x: expected more than 1 spatial element when training, "
                         f"got shape {shape}")
    y, mean64, var64, mean, invstd = _group_forward(x, c, weight, bias, eps, True, s)
    _update(running_mean, mean64, n, 1.0, momentum, s)
    _update(running_var, var64, n, count / (count - 1), momentum, s)
    return (y, mean, invstd) if return_stats else y


def instance_norm_backward(grad_out, x, weight, mean, invstd, use_input_stats=True, *,
                           has_bias=None):
    """:func:`kernels.norm.instance_norm_backward` on the GPU."""
    if not use_input_stats:
        return batch_norm_backward(grad_out, x, weight, mean, invstd, False, has_bias=has_bias)
    s = stream(grad_out, x, weight, mean, invstd)
    x = _input(x, min_ndim=3)
    return _per_example_backward(grad_out, x, x.shape[1], weight, mean, invstd, has_bias,
                                 "instance_norm", s)


def _per_example_backward(grad_out, x, groups, weight, mean, invstd, has_bias, forward, s):
    grad_out = _like(grad_out, "grad_out", x)
    shape = tuple(x.shape)
    n, c = shape[:2]
    weight = _vector(weight, "weight", (c,), x.dtype)
    mean = _vector(mean, "mean", (n, groups), x.dtype)
    invstd = _vector(invstd, "invstd", (n, groups), x.dtype)
    if mean is None or invstd is None:
        raise ValueError(f"mean and invstd are required ({forward}(..., return_stats=True))")
    lay, outer = _group_layout(shape, groups)
    w, _ = _affine(weight, None, c, x.dtype, s)
    gx, gw, gb = _backward(_flat(grad_out), _flat(x), w, _flat(mean), _flat(invstd), lay,
                           outer, False, s)
    return (gx.reshape(shape),) + _grads(gw, gb, weight, has_bias, (c,))


# ---------------------------------------------------------------- layer norm

def _layer_layout(shape, normalized):
    d = math.prod(normalized)
    m = math.prod(shape) // d
    return _Layout(m, d, 1, 0, 1, d), m


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, return_stats=False):
    """:func:`kernels.norm.layer_norm` on the GPU."""
    s = stream(x, weight, bias)
    x = _input(x, min_ndim=1)
    shape = tuple(x.shape)
    nshape = rules._normalized_shape(normalized_shape, _Shaped(shape))
    weight = _vector(weight, "weight", nshape, x.dtype)
    bias = _vector(bias, "bias", nshape, x.dtype)
    eps = rules._eps(eps)
    lead = shape[:len(shape) - len(nshape)]
    lay, _ = _layer_layout(shape, nshape)
    xf = _flat(x)
    st = _statistics(xf, lay, eps, False, s)
    w, b = _affine(weight, bias, lay.channels, x.dtype, s)
    y = _apply(xf, w, b, st, lay, s).reshape(shape)
    return (y, st.mean.reshape(lead), st.invstd.reshape(lead)) if return_stats else y


def layer_norm_backward(grad_out, x, normalized_shape, weight, mean, invstd, *,
                        has_bias=None):
    """:func:`kernels.norm.layer_norm_backward` on the GPU."""
    s = stream(grad_out, x, weight, mean, invstd)
    x = _input(x, min_ndim=1)
    grad_out = _like(grad_out, "grad_out", x)
    shape = tuple(x.shape)
    nshape = rules._normalized_shape(normalized_shape, _Shaped(shape))
    lead = shape[:len(shape) - len(nshape)]
    weight = _vector(weight, "weight", nshape, x.dtype)
    mean = _vector(mean, "mean", lead, x.dtype)
    invstd = _vector(invstd, "invstd", lead, x.dtype)
    if mean is None or invstd is None:
        raise ValueError("mean and invstd are required (layer_norm(..., return_stats=True))")
    lay, outer = _layer_layout(shape, nshape)
    w, _ = _affine(weight, None, lay.channels, x.dtype, s)
    gx, gw, gb = _backward(_flat(grad_out), _flat(x), w, _flat(mean), _flat(invstd), lay,
                           outer, False, s)
    return (gx.reshape(shape),) + _grads(gw, gb, weight, has_bias, nshape)


class _Shaped:
    """What :func:`kernels._rules.norm._normalized_shape` reads of x: its shape and rank."""

    def __init__(self, shape):
        self.shape, self.ndim = shape, len(shape)
