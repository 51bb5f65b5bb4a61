"""CUDA kernels for ReLU, linear and cross-entropy, behind :mod:`kernels.activation`.

The host wrappers take device arrays (checked by :func:`._arrays.device` with the CPU
path's messages, before any launch) and return device arrays; only the ``mean`` and
``sum`` of :func:`cross_entropy` come back as a host scalar of the logits' dtype.
Every float32 kernel stays float32: constants (0, -inf, 1 - ε, ...) come in as
arguments of the array's dtype, since a bare ``0.0`` literal would compile to ``.f64``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .._checks import is_device
from .._rules import activation as rules
from ._arrays import device, empty, stream
from ._launch import THREADS, TILE, grid_1d, grid_2d, grid_rows, launch, row_parts
from ._reduce import block_max, block_sum
from .ptx import register

# ---------------------------------------------------------------- kernels

@cuda.jit
def _relu(x, y, zero):
    """y = x where not x <= 0 (NaN passes), else 0.

    Thread mapping: one thread per element of the flat arrays.
    Optimizations: coalesced loads and stores; ``zero`` in the dtype keeps float32 f32.
    """
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        y[i] = zero if v <= zero else v


@cuda.jit
def _relu_backward(grad_out, x, grad_x, zero):
    """grad_x = grad_out where not x <= 0, else 0 (torch's ``threshold_backward``).

    Thread mapping: one thread per element of the flat arrays.
    Optimizations: as :func:`_relu`.
    """
    i = cuda.grid(1)
    if i < x.size:
        grad_x[i] = zero if x[i] <= zero else grad_out[i]


@cuda.jit
def _matmul(a, a_rs, a_cs, b, b_rs, b_cs, bias, c, m, n, k, zero, has_bias):
    """c[i, j] = Σ_q A[i, q] B[q, j] (+ bias[j]), with A[i, q] = a[i*a_rs + q*a_cs] and
    B[q, j] = b[q*b_rs + j*b_cs] over flat arrays: the strides say which operand is
    transposed, so one kernel serves ``x @ w.T``, ``g @ w`` and ``g.T @ x``.

    Thread mapping: a TILE x TILE block per TILE x TILE tile of ``c`` (x along the
    columns j, y along the rows i), one thread per output element.
    Optimizations:
    - shared-memory tiling: each block stages a TILE x TILE tile of A and of B per step
      along q, so every global element is read TILE times less often;
    - out-of-range tile entries are staged as 0, so the inner loop has no bounds tests;
    - the bias is added in the same pass as the store.
    """
    sa = cuda.shared.array((TILE, TILE), dtype=a.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=b.dtype)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    i = cuda.blockIdx.y * TILE + ty
    j = cuda.blockIdx.x * TILE + tx
    acc = zero
    for q0 in range(0, k, TILE):
        qa, qb = q0 + tx, q0 + ty
        sa[ty, tx] = a[i * a_rs + qa * a_cs] if i < m and qa < k else zero
        sb[ty, tx] = b[qb * b_rs + j * b_cs] if qb < k and j < n else zero
        cuda.syncthreads()
        for q in range(TILE):
            acc += sa[ty, q] * sb[q, tx]
        cuda.syncthreads()  # before the next tiles overwrite these
    if i < m and j < n:
        if has_bias:
            acc += bias[j]
        c[i * n + j] = acc


@cuda.jit
def _column_sum(g, out, m, n, zero):
    """out[j] = Σ_i g[i*n + j]: the bias gradient of :func:`linear` (g is m x n, flat).

    Thread mapping: one thread per column j, looping over the rows.
    Optimizations: neighbouring threads read neighbouring columns, so each row's loads
    coalesce; the running sum stays in a register.
    """
    j = cuda.grid(1)
    if j < n:
        acc = zero
        for i in range(m):
            acc += g[i * n + j]
        out[j] = acc


@cuda.jit(device=True)
def _row_stats(logits, i, red, neg_inf, zero, smoothing):
    """(m, Σ_c exp(z_ic - m), Σ_c (z_ic - m)) of row ``i``, m = max_c z_ic; the last only
    when ``smoothing`` is not 0. Every thread of the block gets them."""
    tid, step = cuda.threadIdx.x, cuda.blockDim.x
    c = logits.shape[1]
    m = neg_inf
    for j in range(tid, c, step):
        v = logits[i, j]
        m = v if v > m else m
    m = block_max(red, m)
    s = zero
    total = zero
    for j in range(tid, c, step):
        d = logits[i, j] - m
        s += math.exp(d)
        if smoothing != zero:
            total += d
    return m, block_sum(red, s), block_sum(red, total)


@cuda.jit
def _cross_entropy(logits, target, losses, keep, smoothing, inv_c, neg_inf, zero):
    """losses[i] = (1-ε)(log s_i - (z[i, t_i] - m_i)) + ε(log s_i - Σ_c (z_ic - m_i) / C),
    s_i = Σ_c exp(z_ic - m_i), m_i = max_c z_ic: ``lse_i - z_it`` with every term taken
    relative to the row max, so float32 keeps its precision for large logits.

    Thread mapping: one block per row i (``grid_rows``), threads striding over the C
    classes; reductions across the block in shared memory; thread 0 stores the loss.
    Optimizations: the row is read twice (max, then exp and Σ), coalesced across the
    block; the block is the smallest power of two covering C; all in the dtype.
    """
    red = cuda.shared.array(THREADS, dtype=logits.dtype)
    n = logits.shape[0]
    i = min(cuda.blockIdx.x, n - 1)  # NOTE: clamped, not branched: the reductions sync
    m, s, total = _row_stats(logits, i, red, neg_inf, zero, smoothing)
    if cuda.threadIdx.x == 0 and cuda.blockIdx.x < n:
        log_s = math.log(s)
        losses[i] = (keep * (log_s - (logits[i, target[i]] - m))
                     + smoothing * (log_s - total * inv_c))


@cuda.jit
def _cross_entropy_backward(logits, target, scale, grad, smoothing_c, keep, neg_inf, zero):
    """grad[i, c] = scale_i (softmax(z_i)_c - ε/C - (1-ε)[c = t_i]), computed as the CPU
    kernel does: exp(z_ic - m_i) · (scale_i / s_i) - scale_i ε/C, minus scale_i (1-ε) at t_i.

    Thread mapping: one block per row i, threads striding over the classes.
    Optimizations: as :func:`_cross_entropy`; the third pass writes the gradient row
    with coalesced stores.
    """
    red = cuda.shared.array(THREADS, dtype=logits.dtype)
    n, c = logits.shape
    i = min(cuda.blockIdx.x, n - 1)  # NOTE: clamped, not branched: the reductions sync
    m, s, _ = _row_stats(logits, i, red, neg_inf, zero, zero)
    a = scale[i]
    b = a / s
    shift = a * smoothing_c
    t = target[i]
    if cuda.blockIdx.x < n:
        for j in range(cuda.threadIdx.x, c, cuda.blockDim.x):
            v = math.exp(logits[i, j] - m) * b - shift
            if j == t:
                v -= a * keep
            grad[i, j] = v


# ---------------------------------------------------------------- host wrappers

def _elementwise(kernel, s, *arrays):
    """A new array like the last of ``arrays``, filled by ``kernel`` over the flat views."""
    like = arrays[-1]
    out = empty(like.shape, like.dtype, s)
    b, t = grid_1d(out.size)
    launch(kernel, b, t, s, *(x.reshape(x.size) for x in (*arrays, out)), out.dtype.type(0))
    return out


def relu(x):
    """``F.relu(x)`` on the device (any shape; NaN propagates)."""
    return _elementwise(_relu, stream(x), device(x, "x"))


def relu_backward(grad_out, x):
    """Gradient of :func:`relu` on the device: ``grad_out`` where ``x > 0``, else 0."""
    g = device(grad_out, "grad_out")
    d = device(x, "x", dtype=g.dtype)
    rules._same_shape(d, "x", g, "grad_out")
    return _elementwise(_relu_backward, stream(grad_out, x), g, d)


def _matmul_into(c, a, a_strides, b, b_strides, m, n, k, s, bias=None):
    """Launch :func:`_matmul` for the ``m x n`` product into flat ``c``: in parts of at
    most ``MAX_GRID_Y`` tiles of rows (row ``r0`` of A and of c starts at flat offset
    ``r0 * row stride``, whichever the layout)."""
    a, b, zero = a.reshape(a.size), b.reshape(b.size), c.dtype.type(0)
    parts = row_parts(m)
    for r0 in parts:
        rows = min(parts.step, m - r0)
        blocks, threads = grid_2d(rows, n)
        launch(_matmul, blocks, threads, s, a[r0 * a_strides[0]:], *a_strides, b, *b_strides,
               c if bias is None else bias, c[r0 * n:], rows, n, k, zero, bias is not None)


def linear(x, w, b=None):
    """``F.linear(x, w, b) = x @ w.T + b`` on the device, by a tiled shared-memory matmul."""
    x, w = rules._linear_args(x, w, device)
    if b is not None:
        b = device(b, "b", 1, dtype=w.dtype)
        if b.shape != (w.shape[0],):
            raise ValueError(f"b has shape {b.shape}, expected ({w.shape[0]},) for w {w.shape}")
    s = stream(x, w, b)
    n, k = w.shape
    m = x.size // k
    y = empty((m * n,), w.dtype, s)
    _matmul_into(y, x, (k, 1), w, (1, k), m, n, k, s, bias=b)
    return y.reshape(*x.shape[:-1], n)


def linear_backward(grad_out, x, w):
    """``(grad_x, grad_w, grad_b)`` of :func:`linear` on the device."""
    x, w = rules._linear_args(x, w, device)
    g = device(grad_out, "grad_out", dtype=w.dtype)
    if g.shape != x.shape[:-1] + (w.shape[0],):
        raise ValueError(f"grad_out has shape {g.shape}, expected "
                         f"{x.shape[:-1] + (w.shape[0],)}")
    s = stream(grad_out, x, w)
    n, k = w.shape
    m = x.size // k
    grad_x, grad_w, grad_b = empty((m * k,), w.dtype, s), empty((n * k,), w.dtype, s), \
        empty((n,), w.dtype, s)
    _matmul_into(grad_x, g, (n, 1), w, (k, 1), m, k, n, s)  # g @ w
    _matmul_into(grad_w, g, (1, n), x, (k, 1), n, k, m, s)  # g.T @ x
    blocks, threads = grid_1d(n)
    launch(_column_sum, blocks, threads, s, g.reshape(g.size), grad_b, m, n, w.dtype.type(0))
    return grad_x.reshape(*x.shape), grad_w.reshape(n, k), grad_b


def _target(target, logits, s):
    """``target`` checked as the CPU path checks it (on a host copy of its N indices, so
    a bad index is caught before any launch), as an int64 device array."""
    if isinstance(target, np.ndarray):
        raise TypeError("target is a NumPy (host) array but logits are on the GPU: pass "
                        "all arrays on one device")
    t = device(target, "target", floats=False)
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"target must be an integer array of class indices, got {t.dtype}")
    host = t.copy_to_host()
    rules._check_target(host, logits.shape)
    return t if t.dtype == np.int64 else cuda.to_device(host.astype(np.int64), stream=s)


def _cross_entropy_args(logits, target, reduction, label_smoothing):
    logits = device(logits, "logits", 2)
    smoothing = rules._check_options(reduction, label_smoothing)  # before the target's upload
    s = stream(logits, target)
    return logits, _target(target, logits, s), smoothing, s


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """``F.cross_entropy`` on the device: N losses as a device array (``none``), or their
    mean / sum as a host scalar of the logits' dtype, summed in float64 on the host from
    the per-sample losses, as the CPU path does (N values cross; the caller waits)."""
    logits, target, smoothing, s = _cross_entropy_args(logits, target, reduction,
                                                       label_smoothing)
    n, c = logits.shape
    t = logits.dtype.type
    losses = empty((n,), logits.dtype, s)
    blocks, threads = grid_rows(n, c)
    launch(_cross_entropy, blocks, threads, s, logits, target, losses, t(1 - smoothing),
           t(smoothing), t(1 / c), t(-np.inf), t(0))
    if reduction == "none":
        return losses
    host = losses.copy_to_host(stream=s)
    s.synchronize()
    total = host.astype(np.float64)
    return t(total.mean() if reduction == "mean" else total.sum())


def cross_entropy_backward(logits, target, reduction="mean", label_smoothing=0.0,
                           grad_out=None):
    """``∂L/∂logits`` of :func:`cross_entropy` on the device, as a device array.
    ``grad_out`` may be a host scalar / array or a device array (its N values or one
    value are read on the host to build each row's scale, as the CPU path does)."""
    logits, target, smoothing, s = _cross_entropy_args(logits, target, reduction,
                                                       label_smoothing)
    n, c = logits.shape
    t = logits.dtype.type
    if is_device(grad_out):
        grad_out = device(grad_out, "grad_out", floats=False).copy_to_host()
    scale = cuda.to_device(rules._row_scale(grad_out, n, reduction, logits.dtype), stream=s)
    grad = empty((n, c), logits.dtype, s)
    blocks, threads = grid_rows(n, c)
    launch(_cross_entropy_backward, blocks, threads, s, logits, target, scale, grad,
           t(smoothing / c), t(1 - smoothing), t(-np.inf), t(0))
    return grad


# ---------------------------------------------------------------- the PTX check (tier 2)

def _sigs(*types):
    """The float32 and float64 versions of a signature written with ``F`` for the dtype."""
    return [tuple(a.replace("F", f) for a in types) for f in ("float32", "float64")]


register(_relu, "relu", _sigs("F[::1]", "F[::1]", "F"))
register(_relu_backward, "relu_backward", _sigs("F[::1]", "F[::1]", "F[::1]", "F"))
register(_matmul, "linear_matmul", _sigs("F[::1]", "int64", "int64", "F[::1]", "int64",
                                         "int64", "F[::1]", "F[::1]", "int64", "int64",
                                         "int64", "F", "boolean"))
register(_column_sum, "linear_column_sum", _sigs("F[::1]", "F[::1]", "int64", "int64", "F"))
register(_cross_entropy, "cross_entropy",
         _sigs("F[:, ::1]", "int64[::1]", "F[::1]", "F", "F", "F", "F", "F"))
register(_cross_entropy_backward, "cross_entropy_backward",
         _sigs("F[:, ::1]", "int64[::1]", "F[::1]", "F[:, ::1]", "F", "F", "F", "F"))
