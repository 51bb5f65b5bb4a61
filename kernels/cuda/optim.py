"""CUDA kernels for one optimizer step: one fused, in-place element-wise pass per parameter.

The kernels take the same arguments as :mod:`kernels.cpu.optim`'s (flat views of the
parameter, its gradient and its state arrays, then scalars already cast to the
parameter's dtype by :mod:`kernels.optim`), and do the same arithmetic per element in
the same order, so :class:`kernels.optim.SGD` and the rest run unchanged on device
arrays: :func:`kernel` returns a launcher with the CPU kernel's call signature.

Thread mapping (every kernel): one thread per element i of the flat parameter.

Optimizations:
- one pass: each array is read once and written once per step (the step is
  memory-bound, so bytes moved is the cost);
- the flags (momentum, nesterov, centered, amsgrad, weight decay) are the same for
  every thread, so their branches never diverge within a warp;
- an unused state array (its flag is off) is a stand-in that no thread reads or
  writes, so one specialization per dtype serves every combination of flags;
- scalars arrive in the parameter's dtype: a float32 step does no float64 arithmetic.
"""

from __future__ import annotations

import functools
import math

from numba import cuda

from ._launch import grid_1d, launch
from .ptx import register


@cuda.jit(device=True)
def _lerp(a, b, w, one_minus_w, low):
    """torch.lerp(a, b, w) with its two-sided formula (``low``: |w| < 0.5)."""
    return a + w * (b - a) if low else b - (b - a) * one_minus_w


@cuda.jit
def _sgd(p, g, buf, neg_lr, momentum, one_minus_dampening, weight_decay, sign,
         use_momentum, first, nesterov, decay):
    """SGD: buf = g (first step) or momentum*buf + (1-dampening)*g; p += -lr * (g +
    momentum*buf if nesterov else buf), or p += -lr * g without momentum."""
    i = cuda.grid(1)
    if i < p.size:
        gi = sign * g[i]
        if decay:
            gi = gi + weight_decay * p[i]
        if use_momentum:
            b = gi if first else buf[i] * momentum + one_minus_dampening * gi
            buf[i] = b
            gi = gi + momentum * b if nesterov else b
        p[i] = p[i] + neg_lr * gi


@cuda.jit
def _adagrad(p, g, state_sum, neg_clr, weight_decay, eps, sign, decay):
    """Adagrad: sum += g*g; p += -clr * g / (sqrt(sum) + eps)."""
    i = cuda.grid(1)
    if i < p.size:
        gi = sign * g[i]
        if decay:
            gi = gi + weight_decay * p[i]
        s = state_sum[i] + gi * gi
        state_sum[i] = s
        p[i] = p[i] + neg_clr * gi / (math.sqrt(s) + eps)


@cuda.jit
def _rmsprop(p, g, square_avg, grad_avg, buf, neg_lr, alpha, one_minus_alpha, lerp_w,
             lerp_1mw, lerp_low, eps, weight_decay, momentum, sign, centered, use_momentum,
             decay):
    """RMSprop: sq = alpha*sq + (1-alpha)*g*g; avg = sqrt(sq [- ga*ga]) + eps with ga =
    lerp(ga, g, 1-alpha) when centered; buf = momentum*buf + g/avg, p += -lr*buf, or
    p += -lr*g/avg."""
    i = cuda.grid(1)
    if i < p.size:
        gi = sign * g[i]
        if decay:
            gi = gi + weight_decay * p[i]
        sq = square_avg[i] * alpha + one_minus_alpha * gi * gi
        square_avg[i] = sq
        if centered:
            ga = _lerp(grad_avg[i], gi, lerp_w, lerp_1mw, lerp_low)
            grad_avg[i] = ga
            avg = math.sqrt(sq - ga * ga) + eps
        else:
            avg = math.sqrt(sq) + eps
        if use_momentum:
            b = buf[i] * momentum + gi / avg
            buf[i] = b
            p[i] = p[i] + neg_lr * b
        else:
            p[i] = p[i] + neg_lr * gi / avg


@cuda.jit
def _adam(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, neg_step_size, beta2, one_minus_beta2,
          lerp_w, lerp_1mw, lerp_low, bias_correction2_sqrt, eps, weight_decay, decay_factor,
          sign, amsgrad, coupled_decay):
    """Adam / AdamW: m = lerp(m, g, 1-beta1); v = beta2*v + (1-beta2)*g*g; [vmax = max(vmax,
    v), NaN winning as torch.maximum]; p += -step_size * m / (sqrt(v or vmax) / sqrt(bc2) +
    eps), after AdamW's p *= 1 - lr*wd (``decay_factor``, 1 otherwise: exact)."""
    i = cuda.grid(1)
    if i < p.size:
        gi = sign * g[i]
        pi = p[i] * decay_factor
        if coupled_decay:
            gi = gi + weight_decay * pi
        m = _lerp(exp_avg[i], gi, lerp_w, lerp_1mw, lerp_low)
        v = exp_avg_sq[i] * beta2 + one_minus_beta2 * gi * gi
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            vmax = max_exp_avg_sq[i]
            if not vmax >= v:
                vmax = v
            max_exp_avg_sq[i] = vmax
            v = vmax
        p[i] = pi + neg_step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)


_KERNELS = {"sgd": _sgd, "adagrad": _adagrad, "rmsprop": _rmsprop, "adam": _adam}


def kernel(name: str, n: int, stream=None):
    """The kernel ``name`` ("sgd", "adagrad", "rmsprop", "adam") configured for ``n``
    elements on ``stream``: call it with the CPU kernel's arguments (device arrays)."""
    blocks, threads = grid_1d(n)
    return functools.partial(launch, _KERNELS[name], blocks, threads, stream or 0)


def _sigs(pattern: str):
    """float32 and float64 signatures from a pattern: ``A`` a flat array, ``F`` a scalar of
    the dtype, ``b`` a flag."""
    names = {"A": "{}[::1]", "F": "{}", "b": "boolean"}
    return [tuple(names[c].format(f) for c in pattern) for f in ("float32", "float64")]


register(_sgd, "sgd", _sigs("AAAFFFFFbbbb"))
register(_adagrad, "adagrad", _sigs("AAAFFFFb"))
register(_rmsprop, "rmsprop", _sigs("AAAAAFFFFFbFFFFbbb"))
register(_adam, "adam", _sigs("AAAAAFFFFFbFFFFFbb"))


# ---------------------------------------------------------------- state arrays

def full(shape, dtype, value, stream=None):
    """A state array of ``shape`` filled with ``value`` on the device (no host transfer)."""
    from ._arrays import empty
    from .elementwise import fill

    out = empty(shape, dtype, stream)
    fill(out, value, stream)
    return out


def to_host(a, stream=None):
    """A host copy of device array ``a``, after the work queued on ``stream``."""
    host = a.copy_to_host(stream=stream or 0)
    if stream is not None:
        stream.synchronize()
    return host


def to_device(a, stream=None):
    """A device copy of host array ``a`` (C order)."""
    import numpy as np

    return cuda.to_device(np.ascontiguousarray(a), stream=stream or 0)
