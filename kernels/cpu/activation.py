"""Numba kernels for ReLU and cross-entropy; linear is BLAS (NumPy matmul) plus a bias add.

Elementwise kernels work on flat arrays; cross-entropy runs one prange iteration
per row (sample). Each kernel is compiled serial and parallel: tiny arrays use
the serial one, since starting the thread pool costs more than the work.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._jit import U, parallel_and_serial
from ._simd import P, lane, larger, load


def _relu(x, y, zero):
    """y = x where not x <= 0 (NaN passes), else ``zero`` (the dtype's 0, so float32 stays
    float32). Loop nest: prange i (flat)."""
    for i in prange(x.size):
        v = x[i]
        y[i] = zero if v <= 0 else v


def _relu_backward(grad_out, x, grad_x, zero):
    """grad_x = grad_out where not x <= 0, else 0 (torch's ``threshold_backward``).
    Loop nest: prange i (flat)."""
    for i in prange(x.size):
        grad_x[i] = zero if x[i] <= 0 else grad_out[i]


ROWS = 16  # rows per parallel task: scratch rows are allocated once per task


def _row_max(row):
    """max(row), ignoring NaN (a NaN reaches the result through exp anyway), P lanes at
    a time in one vector register (:func:`kernels.cpu._simd.larger`): written with
    scalars, the running maxima stayed scalar (a single running max is a serial chain
    the compiler will not vectorize, as it must keep NaN order), a third of a
    1000-class row's loss."""
    m = row[0]
    whole = row.size - row.size % P
    if whole:
        v = load(row, U(0))
        for c in range(P, whole, P):
            v = larger(load(row, U(c)), v)
        for k in range(P):
            x = lane(v, k)
            m = x if x > m else m
    for c in range(whole, row.size):
        m = row[c] if row[c] > m else m
    return m


def _sum64(v):
    """Σ v in float64. Compiled with reassociation, so the sum vectorizes: a float64
    running sum is otherwise a serial chain of adds, the slowest part of a softmax row."""
    s = 0.0
    for c in range(v.size):
        s += v[c]
    return s


def _exp_shifted(row, m, out, bits, poly):
    """out[c] = exp(row[c] - m) (arguments <= 0 unless NaN); returns Σ out in float64.
    ``bits`` is int32 scratch of the row's length.

    float32 (``poly``): Cephes' expf, exp(x) = 2^n · p(r), n = round(x / ln 2),
    r = x - n ln 2 (ln 2 split in two for exactness), p of degree 7 (< 2 ulp); 2^n is
    built in the exponent bits of an int32 scratch row viewed as float32, and
    x < -87.3 flushes to 0. Plain arithmetic, so it vectorizes: ~4x libm's expf.
    float64: libm's exp.
    """
    if poly:
        scale = bits.view(np.float32)
        for c in range(row.size):
            x = row[c] - m
            n = max(np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5)),
                    np.float32(-126.0))
            r = x - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)
            p = np.float32(1.9875691500e-4)
            p = p * r + np.float32(1.3981999507e-3)
            p = p * r + np.float32(8.3334519073e-3)
            p = p * r + np.float32(4.1665795894e-2)
            p = p * r + np.float32(1.6666665459e-1)
            p = p * r + np.float32(5.0000001201e-1)
            out[c] = p * r * r + r + np.float32(1.0)
            bits[c] = (np.int32(n) + np.int32(127)) << np.int32(23)
        for c in range(row.size):
            x = row[c] - m
            out[c] = np.float32(0.0) if x < np.float32(-87.33) else out[c] * scale[c]
    else:
        for c in range(row.size):
            out[c] = np.exp(row[c] - m)
    return _sum64(out)  # float64: a float32 sum of C terms would lose ~log2(C) bits


def _cross_entropy(logits, target, losses, smoothing, poly):
    """losses[i] = (1 - ε)(lse_i - z[i, t_i]) + ε/C Σ_c (lse_i - z[i, c]), in float64,
    with lse_i = m_i + log Σ_c exp(z_ic - m_i), m_i = max_c z_ic.

    Loop nest: prange block of ROWS rows > row > c (class): max, exp + Σ (into a scratch
    row), Σ z if ε > 0.
    Optimizations: the row max in vectors; a vectorizable float32 exp (``poly``) and
    float64 sum; scratch allocated once per block of rows, not per row.
    """
    N, C = logits.shape
    for blk in prange((N + ROWS - 1) // ROWS):
        e = np.empty(C, dtype=logits.dtype)
        bits = np.empty(C, dtype=np.int32)
        for i in range(blk * ROWS, min(N, (blk + 1) * ROWS)):
            row = logits[i]
            m = _row_max(row)
            lse = m + np.log(_exp_shifted(row, m, e, bits, poly))
            total = _sum64(row) if smoothing != 0 else 0.0
            losses[i] = (1 - smoothing) * (lse - row[target[i]]) + smoothing * (lse - total / C)


def _cross_entropy_backward(logits, target, scale, grad, smoothing_c, keep, poly):
    """grad[i, c] = scale_i (softmax(z_i)_c - ε/C - (1 - ε)[c = t_i]).

    ``scale`` (N, the logits' dtype) holds each row's upstream gradient (÷ N for a
    mean) and is overwritten with ``scale_i / Σ_c exp(z_ic - m_i)``, so the class
    loop runs in the logits' dtype; ``smoothing_c`` = ε/C and ``keep`` = 1 - ε come
    in that dtype too.

    Loop nest: prange block of ROWS rows > row > c (class): max, exp + Σ (into the
    gradient row), scale.
    Optimizations: as :func:`_cross_entropy`; the exponentials are written straight
    into the output row and rescaled in place.
    """
    N, C = logits.shape
    for blk in prange((N + ROWS - 1) // ROWS):
        bits = np.empty(C, dtype=np.int32)
        for i in range(blk * ROWS, min(N, (blk + 1) * ROWS)):
            row = logits[i]
            out = grad[i]
            m = _row_max(row)
            s = _exp_shifted(row, m, out, bits, poly)
            a = scale[i]
            scale[i] = a / s
            b = scale[i]
            shift = a * smoothing_c
            for c in range(C):
                out[c] = out[c] * b - shift
            out[target[i]] -= a * keep


_sum64 = njit(cache=True, fastmath={"reassoc"})(_sum64)
_row_max = njit(cache=True)(_row_max)
_exp_shifted = njit(cache=True)(_exp_shifted)
relu, relu_serial = parallel_and_serial(_relu)
relu_backward, relu_backward_serial = parallel_and_serial(_relu_backward)
cross_entropy, cross_entropy_serial = parallel_and_serial(_cross_entropy)
cross_entropy_backward, cross_entropy_backward_serial = parallel_and_serial(
    _cross_entropy_backward)
