"""NumPy definitions of one optimizer step: ``torch.optim`` (single-tensor path), op for op.

Each function updates ``param`` and its state arrays in place, exactly as the
matching ``torch.optim._single_tensor_*`` function does, in the same order of
floating-point operations: scalars (learning rates, bias corrections) are worked
out in Python float64 and cast to the parameter's dtype once, then every array
operation runs in that dtype. ``step`` is the step number *after* incrementing
(1 on the first step). The Numba kernels in ``kernels.cpu.optim`` fuse the same
operations into one pass; the tests hold both to this file and to torch.

Torch's elementwise helpers, spelled out (``w``: a scalar cast to the dtype):

* ``a.add_(b, alpha=w)``        -> ``a + w * b``
* ``a.addcmul_(b, c, value=w)`` -> ``a + w * b * c``
* ``a.addcdiv_(b, c, value=w)`` -> ``a + w * b / c``
* ``a.lerp_(b, w)``             -> ``a + w * (b - a)`` if ``|w| < 0.5``
  else ``b - (b - a) * (1 - w)``
"""

from __future__ import annotations

import numpy as np


def lerp(a: np.ndarray, b: np.ndarray, w) -> np.ndarray:
    """``torch.lerp(a, b, w)`` for a scalar weight, with torch's two-sided formula."""
    w = a.dtype.type(w)
    if abs(w) < 0.5:
        return a + w * (b - a)
    return b - (b - a) * (a.dtype.type(1) - w)


def sgd(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay,
        nesterov, maximize):
    """One ``torch.optim.SGD`` step; returns the momentum buffer (created on the first step).

    g = -grad if maximize else grad;  g += weight_decay * param
    buf = g (first step) or momentum * buf + (1 - dampening) * g
    g = g + momentum * buf (nesterov) or buf;  param -= lr * g
    """
    t = param.dtype.type
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + t(weight_decay) * param
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = g.copy()
        else:
            momentum_buffer[...] = momentum_buffer * t(momentum) + t(1 - dampening) * g
        g = g + t(momentum) * momentum_buffer if nesterov else momentum_buffer
    param[...] = param + t(-lr) * g
    return momentum_buffer


def adagrad(param, grad, state_sum, *, step, lr, lr_decay, weight_decay, eps, maximize):
    """One ``torch.optim.Adagrad`` step.

    clr = lr / (1 + (step - 1) * lr_decay);  sum += g * g
    param -= clr * g / (sqrt(sum) + eps)
    """
    t = param.dtype.type
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + t(weight_decay) * param
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum[...] = state_sum + g * g
    std = np.sqrt(state_sum) + t(eps)
    param[...] = param + t(-clr) * g / std


def rmsprop(param, grad, square_avg, grad_avg, momentum_buffer, *, lr, alpha, eps,
            weight_decay, momentum, centered, maximize):
    """One ``torch.optim.RMSprop`` step (``grad_avg`` used if centered, the buffer if momentum).

    square_avg = alpha * square_avg + (1 - alpha) * g * g
    avg = sqrt(square_avg - grad_avg**2) (centered, grad_avg = lerp(grad_avg, g, 1 - alpha))
          or sqrt(square_avg), plus eps
    buf = momentum * buf + g / avg; param -= lr * buf   (momentum > 0)
    param -= lr * g / avg                                (otherwise)
    """
    t = param.dtype.type
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + t(weight_decay) * param
    square_avg[...] = square_avg * t(alpha) + t(1 - alpha) * g * g
    if centered:
        grad_avg[...] = lerp(grad_avg, g, 1 - alpha)
        avg = np.sqrt(square_avg + t(-1) * grad_avg * grad_avg)
    else:
        avg = np.sqrt(square_avg)
    avg = avg + t(eps)
    if momentum > 0:
        momentum_buffer[...] = momentum_buffer * t(momentum) + g / avg
        param[...] = param + t(-lr) * momentum_buffer
    else:
        param[...] = param + t(-lr) * g / avg


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1, beta2, eps,
         weight_decay, amsgrad, maximize, decoupled_weight_decay):
    """One ``torch.optim.Adam`` step (``AdamW``: ``decoupled_weight_decay=True``).

    Kingma & Ba, Algorithm 1, in torch's arrangement of the bias corrections:
    m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
    v_hat = max(v_hat, v) (amsgrad: the max of the raw second moment, not of v / bc2)
    denom = sqrt(v or v_hat) / sqrt(1 - beta2**step) + eps
    param -= lr / (1 - beta1**step) * m / denom
    Weight decay: coupled adds weight_decay * param to g; decoupled multiplies param by
    1 - lr * weight_decay first.
    """
    t = param.dtype.type
    g = -grad if maximize else grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param[...] = param * t(1 - lr * weight_decay)
        else:
            g = g + t(weight_decay) * param
    exp_avg[...] = lerp(exp_avg, g, 1 - beta1)
    exp_avg_sq[...] = exp_avg_sq * t(beta2) + t(1 - beta2) * g * g
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    denom = np.sqrt(second) / t(bias_correction2**0.5) + t(eps)
    param[...] = param + t(-step_size) * exp_avg / denom
