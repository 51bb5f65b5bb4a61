"""Numba kernels for batch, group (and so instance) and layer norm, forward and backward.

Shapes the kernels see (``kernels.norm`` reshapes and checks before calling):

* batch norm: ``x`` is (N, C, S), S the product of the spatial dims (1 for N×C);
  statistics per channel over (N, S): moments per (n, c) in parallel, merged per channel.
* group norm: ``x`` is (N, C, S) with G groups of C/G channels; statistics per (n, g)
  over the contiguous block x[n, gC/G:(g+1)C/G, :]; one (n, g) slice per thread.
  Instance norm is group norm with G = C.
* layer norm: ``x`` is (M, D), statistics per row, weight and bias elementwise over D;
  one row per thread (backward: a contiguous run of rows per thread).

Precision: means and variances are accumulated in float64 whatever the input dtype,
two-pass per block (``_moments``: the mean of a block of BLOCK elements, then the sum
of squared deviations from it while the block is in L1), blocks and slices merged
with Chan et al.'s formula. So a large mean does not cancel the variance (the one-pass
``E[x^2] - E[x]^2`` would, even in float64 for float64 inputs), and memory is read
once for the statistics. The backward's sums (of dy and of dy * (x - mean)) are
float64 as well. Elementwise outputs are computed in the input dtype from per-channel
coefficients made in float64 and cast once (``x.dtype.type``), so float32 stays
float32 in the hot loops.

Optimizations:
  - memory is walked in order: every parallel job is one contiguous run (x[n, c, :],
    a group block, a row); batch norm takes per-(n, c) moments/sums and merges them per
    channel (walking a channel's N strided runs in one thread measured 1.7x slower);
  - group/instance/layer norm fuse statistics and output in one parallel loop: a
    slice is read from memory once and re-read from cache;
  - the reductions (``_sum*``, ``_row_grad``) may be reassociated, the one fast-math
    flag used (``fastmath={"reassoc"}``): LLVM then vectorizes them and keeps several
    partial sums, 4-6x faster than the sequential chain of float64 adds (measured: 8.3
    ms -> 1.4 ms for 10 M float32 squared deviations, one thread), while nan/inf
    semantics stay IEEE; results are deterministic, the order fixed in compiled code;
  - the forward's elementwise pass is ``((x - hi) - lo) * scale + shift`` with dtype
    scalars (the float64 mean as two of them, :func:`_split`: float32 precision however
    far the mean lies from zero), a contiguous innermost loop that LLVM vectorizes;
  - few parallel regions per kernel (tiny merges run serially): on 2 shared cores each
    region's barrier costs;
  - per-channel weight/bias gradients are reduced without races: batch and group norm
    write (N, C) float64 partials, one entry per job, summed afterwards; layer norm
    gives each thread its own (D,) float64 buffers, summed by the caller.
``error_model="numpy"``: 1 / sqrt(0) with eps = 0 gives inf (then nan), as torch does,
instead of raising ZeroDivisionError.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_jit = dict(cache=True, fastmath=False, error_model="numpy")
# Reductions may be reassociated (and so vectorized): the only fast-math flag, so nan/inf
# and signed zeros keep IEEE semantics; the summation order is fixed by the compiled code.
_reduce = dict(cache=True, fastmath={"reassoc"}, error_model="numpy")


@njit(**_reduce)
def _sum(v):
    """float64 sum of a 1-D array."""
    a = 0.0
    for i in range(v.shape[0]):
        a += v[i]
    return a


@njit(**_reduce)
def _sum_sq_dev(v, m):
    """float64 sum of (v - m)^2, ``m`` a float64."""
    a = 0.0
    for i in range(v.shape[0]):
        d = v[i] - m
        a += d * d
    return a


@njit(**_reduce)
def _sum_grad(g, v, m):
    """float64 (sum g, sum g * (v - m)), ``m`` a float64."""
    a = 0.0
    b = 0.0
    for i in range(v.shape[0]):
        gi = np.float64(g[i])
        a += gi
        b += gi * (v[i] - m)
    return a, b


@njit(**_reduce)
def _row_grad(g, v, w, m, inv, pw, pb):
    """Layer norm's row sums (sum g * w, sum g * w * (v - m)), float64, while adding the
    row's weight/bias gradient terms g * (v - m) * inv and g into ``pw`` and ``pb``."""
    a = 0.0
    b = 0.0
    for i in range(v.shape[0]):
        gi = np.float64(g[i])
        d = v[i] - m
        pw[i] += gi * d * inv
        pb[i] += gi
        gw = gi * w[i]
        a += gw
        b += gw * d
    return a, b


BLOCK = 2048  # elements per block of _moments: 8 KB of float32, 16 KB of float64, in L1


@njit(**_jit)
def _combine(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Chan et al.'s merge of (count, mean, sum of squared deviations) of two sets."""
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (n_a * n_b / n)


@njit(**_jit)
def _moments(v, n_a, mean_a, m2_a):
    """Merge the 1-D array ``v`` into (count, mean, M2) = (n_a, mean_a, m2_a), float64.

    Two passes per BLOCK (the mean, then squared deviations from it, the second pass
    from L1), blocks merged with :func:`_combine`: the accuracy of two-pass statistics
    with one pass over memory.
    """
    for start in range(0, v.shape[0], BLOCK):
        blk = v[start:start + BLOCK]
        n_b = blk.shape[0]
        mean_b = _sum(blk) / n_b
        n_a, mean_a, m2_a = _combine(n_a, mean_a, m2_a, n_b, mean_b, _sum_sq_dev(blk, mean_b))
    return n_a, mean_a, m2_a


@njit(**_jit)
def _scale_shift(x, y, m, lo, scale, shift):
    """y = ((x - m) - lo) * scale + shift, all in x's dtype: the mean is ``m + lo`` (see
    :func:`_split`)."""
    for i in range(x.shape[0]):
        y[i] = ((x[i] - m) - lo) * scale + shift


@njit(**_jit)
def _split(mean, t):
    """The float64 ``mean`` as ``hi + lo`` in the dtype ``t``. Rounded to float32 alone,
    the mean is off by up to half an ulp of itself, which ``x - mean`` keeps and the
    inverse standard deviation multiplies: a channel of values near 3 with a standard
    deviation of 1e-3 came out 2.9e-5 off (torch's float32, 6e-6). With ``lo``, ``x -
    hi`` is exact for ``x`` near the mean (Sterbenz), and the residual follows; in
    float64, ``lo`` is 0."""
    hi = t(mean)
    return hi, t(mean - hi)


@njit(**_jit)
def _grad_x(g, x, gx, m, alpha, beta, gamma):
    """gx = alpha * g + beta * (x - m) + gamma, all in x's dtype (the backward's mean is
    the forward's as returned, in x's dtype, as torch's: no low part to apply)."""
    for i in range(x.shape[0]):
        gx[i] = alpha * g[i] + beta * (x[i] - m) + gamma


@njit(parallel=True, **_jit)
def batch_norm_forward(x, weight, bias, training, eps, y, mean, var):
    """Batch norm of ``x`` (N, C, S) into ``y``; ``mean``/``var`` (C,) float64.

    ``training``: compute the batch statistics into ``mean`` and ``var`` (biased);
    otherwise read them (the running statistics).
    Loop nest: prange (n, c) { moments of x[n, c, :] }; c { merge over n };
    prange (n, c) { s < S: y = (x - mean[c]) * (invstd[c] * w[c]) + b[c] }.
    Every pass walks memory in order, one contiguous x[n, c, :] per job: a channel's
    N strided runs, walked by one thread, measured 1.7x slower.
    """
    n_, c_, s_ = x.shape
    if training:
        part_mean = np.empty((n_, c_))
        part_m2 = np.empty((n_, c_))
        for job in prange(n_ * c_):
            n = job // c_
            c = job % c_
            _, part_mean[n, c], part_m2[n, c] = _moments(x[n, c], 0, 0.0, 0.0)
        for c in range(c_):  # N * C merges: too little work for a parallel region
            k = s_
            m = part_mean[0, c]
            m2 = part_m2[0, c]
            for n in range(1, n_):
                k, m, m2 = _combine(k, m, m2, s_, part_mean[n, c], part_m2[n, c])
            mean[c] = m
            var[c] = m2 / k
    hi = np.empty(c_, x.dtype)
    lo = np.empty(c_, x.dtype)
    scale = np.empty(c_, x.dtype)
    for c in range(c_):
        hi[c], lo[c] = _split(mean[c], x.dtype.type)
        if training and var[c] + eps == 0.0:  # eps = 0, constant channel: y = b, as torch
            scale[c] = 0.0
        else:
            scale[c] = weight[c] / np.sqrt(var[c] + eps)
    for job in prange(n_ * c_):
        n = job // c_
        c = job % c_
        _scale_shift(x[n, c], y[n, c], hi[c], lo[c], scale[c], bias[c])


@njit(parallel=True, **_jit)
def batch_norm_backward(g, x, weight, mean, invstd, training, gx, grad_w, grad_b):
    """Batch norm backward over ``x`` (N, C, S); ``mean``, ``invstd``, ``grad_w``, ``grad_b``
    are (C,) float64.

    With A = sum dy and B = sum dy * (x - mean) over (n, s), M = N * S:
    grad_w = B * invstd, grad_b = A and, in training (statistics depend on x),
    grad_x = invstd * w * (dy - A / M - (x - mean) * invstd^2 * B / M);
    in eval grad_x = invstd * w * dy.
    Loop nest: prange (n, c) { A, B over s }; c { sum over n };
    prange (n, c) { s < S: grad_x }  (memory walked in order, as the forward).
    """
    n_, c_, s_ = x.shape
    count = n_ * s_
    part_a = np.empty((n_, c_))
    part_b = np.empty((n_, c_))
    for job in prange(n_ * c_):
        n = job // c_
        c = job % c_
        part_a[n, c], part_b[n, c] = _sum_grad(g[n, c], x[n, c], mean[c])
    alpha = np.empty(c_, x.dtype)
    beta = np.empty(c_, x.dtype)
    gamma = np.empty(c_, x.dtype)
    mt = np.empty(c_, x.dtype)
    for c in range(c_):
        a = 0.0
        b = 0.0
        for n in range(n_):
            a += part_a[n, c]
            b += part_b[n, c]
        inv = invstd[c]
        w = np.float64(weight[c])
        grad_w[c] = b * inv
        grad_b[c] = a
        alpha[c] = inv * w
        beta[c] = -w * inv * inv * inv * b / count if training else 0.0
        gamma[c] = -inv * w * a / count if training else 0.0
        mt[c] = mean[c]
    for job in prange(n_ * c_):
        n = job // c_
        c = job % c_
        _grad_x(g[n, c], x[n, c], gx[n, c], mt[c], alpha[c], beta[c], gamma[c])


@njit(parallel=True, **_jit)
def group_norm_forward(x, groups, weight, bias, eps, flat_is_zero, y, mean, var):
    """Group norm of ``x`` (N, C, S) in ``groups`` groups; ``mean``/``var`` (N, G) float64.

    ``flat_is_zero``: invstd = 0 when var + eps = 0 (torch's instance norm), else inf (nan y).

    Loop nest: prange (n, g) < N * G { the block x[n, g*Cg:(g+1)*Cg, :] flattened:
    [sum x; sum (x - mean)^2]; c < Cg, s < S: y = (x - mean) * (invstd * w[c]) + b[c] }.
    """
    n_, c_, s_ = x.shape
    cg = c_ // groups
    block = cg * s_
    t = x.dtype.type
    flat = x.reshape(n_, c_ * s_)
    for job in prange(n_ * groups):
        n = job // groups
        g = job % groups
        v = flat[n, g * block:(g + 1) * block]
        m = _sum(v) / block
        vr = _sum_sq_dev(v, m) / block
        inv = 1.0 / np.sqrt(vr + eps)
        if flat_is_zero and vr + eps == 0.0:
            inv = 0.0
        mean[n, g] = m
        var[n, g] = vr
        mt, lo = _split(m, t)
        for c in range(g * cg, (g + 1) * cg):
            _scale_shift(x[n, c], y[n, c], mt, lo, t(inv * weight[c]), bias[c])


@njit(parallel=True, **_jit)
def group_norm_backward(g, x, groups, weight, mean, invstd, gx, grad_w, grad_b):
    """Group norm backward; ``mean``/``invstd`` (N, G) float64; ``grad_w``/``grad_b`` (N, C)
    float64 partials (the caller sums them over n).

    Per (n, c): A = sum_s dy, B = sum_s dy * (x - mean); grad_w[n, c] = B * invstd,
    grad_b[n, c] = A. Per slice, M = Cg * S, s1 = sum_c w_c A_c, s2 = sum_c w_c B_c:
    grad_x = invstd * w_c * dy - invstd^3 * s2 / M * (x - mean) - invstd * s1 / M.
    Loop nest: prange (n, g) { c < Cg: [A, B over s]; c < Cg, s < S: grad_x }.
    """
    n_, c_, s_ = x.shape
    cg = c_ // groups
    count = cg * s_
    t = x.dtype.type
    for job in prange(n_ * groups):
        n = job // groups
        grp = job % groups
        m = mean[n, grp]
        inv = invstd[n, grp]
        s1 = 0.0
        s2 = 0.0
        for c in range(grp * cg, (grp + 1) * cg):
            a, b = _sum_grad(g[n, c], x[n, c], m)
            grad_w[n, c] = b * inv
            grad_b[n, c] = a
            s1 += weight[c] * a
            s2 += weight[c] * b
        beta = t(-inv * inv * inv * s2 / count)
        gamma = t(-inv * s1 / count)
        mt = t(m)
        for c in range(grp * cg, (grp + 1) * cg):
            _grad_x(g[n, c], x[n, c], gx[n, c], mt, t(inv * weight[c]), beta, gamma)


@njit(parallel=True, **_jit)
def layer_norm_forward(x, weight, bias, eps, y, mean, var):
    """Layer norm of the rows of ``x`` (M, D); ``mean``/``var`` (M,) float64.

    Loop nest: prange r < M { [blocks of d < D: two-pass moments, merged]; d < D:
    y = (x - mean) * invstd * w[d] + b[d] }.
    """
    t = x.dtype.type
    d_ = x.shape[1]
    for r in prange(x.shape[0]):
        v = x[r]
        _, m, m2 = _moments(v, 0, 0.0, 0.0)
        vr = m2 / d_
        inv = 1.0 / np.sqrt(vr + eps)
        mean[r] = m
        var[r] = vr
        mt, lo = _split(m, t)
        it = t(inv)
        yr = y[r]
        for d in range(d_):
            yr[d] = ((v[d] - mt) - lo) * it * weight[d] + bias[d]


@njit(parallel=True, **_jit)
def layer_norm_backward(g, x, weight, mean, invstd, gx, grad_w, grad_b):
    """Layer norm backward over rows of ``x`` (M, D); ``grad_w``/``grad_b`` are (T, D) float64
    per-thread partials, T <= M (the caller sums them over T).

    Per row, with dxhat = dy * w: s1 = sum dxhat, s2 = sum dxhat * (x - mean);
    grad_x = invstd * w * dy - invstd^3 * s2 / D * (x - mean) - invstd * s1 / D.
    Loop nest: prange t < T { rows r of chunk t: [d < D: partials += dy * xhat, dy;
    s1, s2]; d < D: grad_x }.
    """
    rows, d_ = x.shape
    chunks = grad_w.shape[0]
    tp = x.dtype.type
    for ch in prange(chunks):
        pw = grad_w[ch]
        pb = grad_b[ch]
        for r in range(ch * rows // chunks, (ch + 1) * rows // chunks):
            m = mean[r]
            inv = invstd[r]
            gr = g[r]
            xr = x[r]
            s1, s2 = _row_grad(gr, xr, weight, m, inv, pw, pb)
            mt = tp(m)
            it = tp(inv)
            beta = tp(-inv * inv * inv * s2 / d_)
            gamma = tp(-inv * s1 / d_)
            gxr = gx[r]
            for d in range(d_):
                gxr[d] = it * weight[d] * gr[d] + beta * (xr[d] - mt) + gamma
