"""Numba kernels for one optimizer step: a single fused, in-place pass per parameter.

Every kernel takes flat (1-D, C-contiguous) views of a parameter, its gradient
and its state arrays, all of one dtype, plus scalars already cast to that dtype
by the caller (``kernels.optim``), so float32 stays float32 throughout. The
arithmetic per element is ``kernels.reference.optim`` (torch's single-tensor
path) in the same order of operations; only the loop is fused.

Loop nest (every kernel)::

    for c in prange(parts):             # parts = the number of threads: one block each
        for i in block c:               # contiguous, SIMD
            read p[i], g[i], state[i]; update; write p[i], state[i]

Optimizations:
- ``error_model="numpy"``: no zero-divisor test per element (it raised
  ZeroDivisionError, where torch gives inf), so the loops vectorize: 4x here;
- one pass: each array is read once and written once per step (torch's
  single-tensor path makes 5-10 passes with temporaries); the optimizers are
  memory-bound, so bytes moved is the cost;
- few loop-invariant branches (weight decay, momentum, centered, amsgrad), which LLVM
  unswitches and vectorizes; the rest are exact arithmetic (maximize multiplies by
  ``sign`` = -1 or 1, AdamW's decay by ``decay_factor`` = 1 when off) or selects
  (lerp's two sides, SGD's first step), since past ~3 flags LLVM stops unswitching
  and the loop stays scalar (4x slower);
- the inner loop indexes views of its block from 0, so Numba drops its per-access
  negative-index test (with ``range(lo, hi)`` over the whole arrays it stays, and
  the loop does not vectorize);
- one contiguous block per thread: with many small chunks (16K elements) the two
  threads interleaved in memory and the step ran 2-3x slower than with halves;
- arrays under ``PARALLEL_MIN`` elements run a serial copy of the kernel: no thread
  wake-up for the many small parameters (biases, norms) of a real network;
- unused state arrays are passed as empty arrays so that one specialization per
  dtype serves every combination of flags; a loop never names an unused array (one
  loop per combination of the flags that choose arrays): LLVM's runtime overlap test
  fails on the empty view of p and sends the loop to its scalar fallback (3-4x).

Compiled specializations per kernel: 2 dtypes x (parallel, serial).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import njit, prange

from ._jit import parallel_and_serial


def _sgd(parts, p, g, buf, neg_lr, momentum, one_minus_dampening, weight_decay, sign,
         use_momentum, first, nesterov, decay):
    """SGD: buf = g (first) or momentum*buf + (1-dampening)*g; p += -lr * (g + momentum*buf
    if nesterov else buf)."""
    n = p.size
    per = (n + parts - 1) // parts
    for c in prange(parts):
        lo, hi = min(c * per, n), min(c * per + per, n)
        p_c, g_c = p[lo:hi], g[lo:hi]
        if use_momentum:  # NOTE: two loops: see _adam
            buf_c = buf[lo:hi]
            for i in range(hi - lo):
                gi = sign * g_c[i]
                if decay:
                    gi = gi + weight_decay * p_c[i]
                b = buf_c[i] * momentum + one_minus_dampening * gi
                b = gi if first else b
                buf_c[i] = b
                gi = gi + momentum * b if nesterov else b
                p_c[i] = p_c[i] + neg_lr * gi
        else:
            for i in range(hi - lo):
                gi = sign * g_c[i]
                if decay:
                    gi = gi + weight_decay * p_c[i]
                p_c[i] = p_c[i] + neg_lr * gi


def _adagrad(parts, p, g, state_sum, neg_clr, weight_decay, eps, sign, decay):
    """Adagrad: sum += g*g; p += -clr * g / (sqrt(sum) + eps)."""
    n = p.size
    per = (n + parts - 1) // parts
    for c in prange(parts):
        lo, hi = min(c * per, n), min(c * per + per, n)
        p_c, g_c, state_sum_c = p[lo:hi], g[lo:hi], state_sum[lo:hi]
        for i in range(hi - lo):
            gi = sign * g_c[i]
            if decay:
                gi = gi + weight_decay * p_c[i]
            s = state_sum_c[i] + gi * gi
            state_sum_c[i] = s
            p_c[i] = p_c[i] + neg_clr * gi / (np.sqrt(s) + eps)


def _rmsprop(parts, p, g, square_avg, grad_avg, buf, neg_lr, alpha, one_minus_alpha,
             lerp_w, lerp_1mw, lerp_low, eps, weight_decay, momentum, sign, centered,
             use_momentum, decay):
    """RMSprop: sq = alpha*sq + (1-alpha)*g*g; avg = sqrt(sq [- ga*ga]) + eps; momentum
    buffer buf = momentum*buf + g/avg, p += -lr*buf, or p += -lr*g/avg."""
    n = p.size
    per = (n + parts - 1) // parts
    for c in prange(parts):
        lo, hi = min(c * per, n), min(c * per + per, n)
        p_c, g_c, sq_c, ga_c, buf_c = p[lo:hi], g[lo:hi], square_avg[lo:hi], grad_avg, buf
        # NOTE: one loop per (centered, momentum): a loop that names an unused (empty) state
        # array fails LLVM's runtime overlap test and runs scalar (see _adam)
        if centered:
            ga_c = grad_avg[lo:hi]
        if use_momentum:
            buf_c = buf[lo:hi]
        if centered and use_momentum:
            for i in range(hi - lo):
                gi, sq = _rms_square(p_c[i], g_c[i], sq_c[i], alpha, one_minus_alpha,
                                     weight_decay, sign, decay)
                ga = _lerp(ga_c[i], gi, lerp_w, lerp_1mw, lerp_low)
                sq_c[i], ga_c[i] = sq, ga
                b = buf_c[i] * momentum + gi / (np.sqrt(sq - ga * ga) + eps)
                buf_c[i] = b
                p_c[i] = p_c[i] + neg_lr * b
        elif centered:
            for i in range(hi - lo):
                gi, sq = _rms_square(p_c[i], g_c[i], sq_c[i], alpha, one_minus_alpha,
                                     weight_decay, sign, decay)
                ga = _lerp(ga_c[i], gi, lerp_w, lerp_1mw, lerp_low)
                sq_c[i], ga_c[i] = sq, ga
                p_c[i] = p_c[i] + neg_lr * gi / (np.sqrt(sq - ga * ga) + eps)
        elif use_momentum:
            for i in range(hi - lo):
                gi, sq = _rms_square(p_c[i], g_c[i], sq_c[i], alpha, one_minus_alpha,
                                     weight_decay, sign, decay)
                sq_c[i] = sq
                b = buf_c[i] * momentum + gi / (np.sqrt(sq) + eps)
                buf_c[i] = b
                p_c[i] = p_c[i] + neg_lr * b
        else:
            for i in range(hi - lo):
                gi, sq = _rms_square(p_c[i], g_c[i], sq_c[i], alpha, one_minus_alpha,
                                     weight_decay, sign, decay)
                sq_c[i] = sq
                p_c[i] = p_c[i] + neg_lr * gi / (np.sqrt(sq) + eps)


def _rms_square_py(pi, gi, sq, alpha, one_minus_alpha, weight_decay, sign, decay):
    """One element of RMSprop: (the gradient used, the new square average)."""
    gi = sign * gi
    if decay:
        gi = gi + weight_decay * pi
    return gi, sq * alpha + one_minus_alpha * gi * gi


def _lerp_py(a, b, w, one_minus_w, low):
    """torch.lerp(a, b, w) with its two-sided formula (``low``: |w| < 0.5)."""
    return a + w * (b - a) if low else b - (b - a) * one_minus_w


_rms_square = njit(inline="always", error_model="numpy")(_rms_square_py)
_lerp = njit(inline="always", error_model="numpy")(_lerp_py)


def _adam(parts, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, neg_step_size, beta2,
          one_minus_beta2, lerp_w, lerp_1mw, lerp_low, bias_correction2_sqrt, eps,
          weight_decay, decay_factor, sign, amsgrad, coupled_decay):
    """Adam / AdamW: m = lerp(m, g, 1-beta1); v = beta2*v + (1-beta2)*g*g; [vmax = max(vmax,
    v)]; p += -step_size * m / (sqrt(v or vmax) / sqrt(bc2) + eps)."""
    n = p.size
    per = (n + parts - 1) // parts
    for c in prange(parts):
        lo, hi = min(c * per, n), min(c * per + per, n)
        p_c, g_c, exp_avg_c, exp_avg_sq_c = p[lo:hi], g[lo:hi], exp_avg[lo:hi], exp_avg_sq[lo:hi]
        # NOTE: two loops, so that the plain one never names max_exp_avg_sq: an unused
        # array in the loop (an empty view of p) fails LLVM's runtime overlap test and
        # sends the loop down its scalar fallback (3-4x slower)
        if amsgrad:
            max_exp_avg_sq_c = max_exp_avg_sq[lo:hi]
            for i in range(hi - lo):
                pi, m, v = _adam_moments(p_c[i], g_c[i], exp_avg_c[i], exp_avg_sq_c[i], beta2,
                                         one_minus_beta2, lerp_w, lerp_1mw, lerp_low,
                                         weight_decay, decay_factor, sign, coupled_decay)
                exp_avg_c[i], exp_avg_sq_c[i] = m, v
                vmax = max_exp_avg_sq_c[i]
                if not vmax >= v:  # torch.maximum: NaN wins
                    vmax = v
                max_exp_avg_sq_c[i] = vmax
                p_c[i] = pi + neg_step_size * m / (np.sqrt(vmax) / bias_correction2_sqrt + eps)
        else:
            for i in range(hi - lo):
                pi, m, v = _adam_moments(p_c[i], g_c[i], exp_avg_c[i], exp_avg_sq_c[i], beta2,
                                         one_minus_beta2, lerp_w, lerp_1mw, lerp_low,
                                         weight_decay, decay_factor, sign, coupled_decay)
                exp_avg_c[i], exp_avg_sq_c[i] = m, v
                p_c[i] = pi + neg_step_size * m / (np.sqrt(v) / bias_correction2_sqrt + eps)


def _adam_moments_py(pi, gi, m, v, beta2, one_minus_beta2, lerp_w, lerp_1mw, lerp_low,
                     weight_decay, decay_factor, sign, coupled_decay):
    """One element of Adam before the update: (decayed p, new m, new v)."""
    gi = sign * gi
    pi = pi * decay_factor  # AdamW's decoupled decay; 1 otherwise (exact)
    if coupled_decay:
        gi = gi + weight_decay * pi
    m = _lerp(m, gi, lerp_w, lerp_1mw, lerp_low)
    v = v * beta2 + one_minus_beta2 * gi * gi
    return pi, m, v


_adam_moments = njit(inline="always", error_model="numpy")(_adam_moments_py)


# NOTE: compiled here, at the bottom, so NUMBA_DISABLE_JIT=1 debugs the bodies as Python.
# Each kernel comes twice: parallel, and serial (prange runs as range) for arrays below
# PARALLEL_MIN elements, where waking the threads costs more than the pass itself.
PARALLEL_MIN = 1 << 16
# error_model="numpy": x / 0 gives inf/nan as in torch; Numba's default "python" model tests
# every divisor for zero to raise ZeroDivisionError, and that branch blocks vectorization.
_OPTIONS = {"fastmath": False, "error_model": "numpy"}
sgd, sgd_serial = parallel_and_serial(_sgd, **_OPTIONS)
adagrad, adagrad_serial = parallel_and_serial(_adagrad, **_OPTIONS)
rmsprop, rmsprop_serial = parallel_and_serial(_rmsprop, **_OPTIONS)
adam, adam_serial = parallel_and_serial(_adam, **_OPTIONS)


def kernel(name: str, n: int):
    """The kernel ``name`` ("sgd", "adagrad", "rmsprop", "adam") for ``n`` elements, with
    its first argument (``parts``: one block per thread, 1 for the serial copy) bound.

    NOTE: ``parts`` comes from here because ``numba.get_num_threads()`` inside a kernel
    stops it being cached."""
    if n < PARALLEL_MIN:
        return functools.partial(globals()[name + "_serial"], 1)
    return functools.partial(globals()[name], numba.get_num_threads())
