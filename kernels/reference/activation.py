"""ReLU, linear and cross-entropy in NumPy: the living definition of the
``torch.nn.functional`` functions of the same names and their autograd.

- ``relu(x) = max(x, 0)``, NaN propagating; its gradient passes ``grad_out``
  where ``x > 0`` (or NaN) and is 0 where ``x <= 0`` (torch: 0 at ``x == 0``).
- ``linear(x, w, b) = x @ w.T + b`` over the last axis of ``x``.
- cross-entropy of logits ``z`` (N×C) and class targets ``t`` (N) with label
  smoothing ``ε``: with ``lse_i = log Σ_c exp z_ic`` (computed as
  ``m_i + log Σ_c exp(z_ic - m_i)``, ``m_i = max_c z_ic``, so it never overflows),

      loss_i = (1 - ε) (lse_i - z_i,t_i) + (ε / C) Σ_c (lse_i - z_ic)
      ∂loss_i / ∂z_ic = softmax(z_i)_c - (1 - ε) [c = t_i] - ε / C

  reduced by ``mean`` (÷ N), ``sum`` or ``none``.
"""

from __future__ import annotations

import numpy as np


def relu(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0, np.zeros((), x.dtype), x)


def relu_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0, np.zeros((), grad_out.dtype), grad_out)


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    y = x @ w.T
    return y if b is None else y + b


def linear_backward(grad_out: np.ndarray, x: np.ndarray, w: np.ndarray):
    """``(grad_x, grad_w, grad_b)``; every leading axis of ``x`` is a batch axis."""
    g = grad_out.reshape(-1, w.shape[0])
    return grad_out @ w, g.T @ x.reshape(-1, w.shape[1]), g.sum(axis=0)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy(logits: np.ndarray, target: np.ndarray, reduction: str = "mean",
                  label_smoothing: float = 0.0):
    """Per-sample losses reduced as ``reduction``; float64 arithmetic, cast to the logits' dtype."""
    n, c = logits.shape
    logp = _log_softmax(logits.astype(np.float64))
    losses = -(1 - label_smoothing) * logp[np.arange(n), target]
    losses -= label_smoothing / c * logp.sum(axis=1)
    if reduction == "none":
        return losses.astype(logits.dtype)
    return logits.dtype.type(losses.mean() if reduction == "mean" else losses.sum())


def cross_entropy_backward(logits: np.ndarray, target: np.ndarray, reduction: str = "mean",
                           label_smoothing: float = 0.0, grad_out=None) -> np.ndarray:
    """``∂L/∂logits`` for an upstream gradient ``grad_out`` (a scalar, or N values for
    ``reduction="none"``; default ones)."""
    n, c = logits.shape
    grad = np.exp(_log_softmax(logits.astype(np.float64))) - label_smoothing / c
    grad[np.arange(n), target] -= 1 - label_smoothing
    scale = np.ones(n) if grad_out is None else np.broadcast_to(grad_out, (n,))
    if reduction == "mean":
        scale = scale / n
    return (grad * scale[:, None]).astype(logits.dtype)
