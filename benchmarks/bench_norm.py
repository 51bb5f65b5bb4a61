"""Batch, layer, instance and group norm, forward + backward, float32, vs torch.

Each case is one training step of the layer: the forward (keeping the statistics the
backward needs) and the backward for x, weight and bias. Torch runs the same
``torch.nn.functional`` call and ``torch.autograd.grad`` (no ``.grad`` accumulation),
with weight and bias requiring grad; batch norm updates running statistics on both sides.
bytes_moved counts the unavoidable traffic: read x, write y; read dy and x, write dx.
"""

from __future__ import annotations

import numpy as np

from kernels import norm

from .harness import Case


def training_steps(x, dy, weight, bias, lweight, lbias, running_mean, running_var, groups):
    """Our four training steps (forward keeping the statistics, then backward for x,
    weight and bias) on these arrays, host or device: the CPU and CUDA benchmarks'."""
    c, h, w = x.shape[1:]
    shape = (int(c), int(h), int(w))

    def batch():
        y, mean, invstd = norm.batch_norm(x, running_mean, running_var, weight, bias, True,
                                          return_stats=True)
        return y, norm.batch_norm_backward(dy, x, weight, mean, invstd, has_bias=True)

    def layer():
        y, mean, invstd = norm.layer_norm(x, shape, lweight, lbias, return_stats=True)
        return y, norm.layer_norm_backward(dy, x, shape, lweight, mean, invstd, has_bias=True)

    def instance():
        y, mean, invstd = norm.instance_norm(x, weight=weight, bias=bias, return_stats=True)
        return y, norm.instance_norm_backward(dy, x, weight, mean, invstd, has_bias=True)

    def group():
        y, mean, invstd = norm.group_norm(x, groups, weight, bias, return_stats=True)
        return y, norm.group_norm_backward(dy, x, groups, weight, mean, invstd, has_bias=True)

    return batch, layer, instance, group


def cases(quick: bool) -> list[Case]:
    import torch

    n, c, h, w = (4, 8, 6, 6) if quick else (64, 64, 50, 50)
    groups = 4 if quick else 32
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    weight = rng.standard_normal(c, dtype=np.float32)
    bias = rng.standard_normal(c, dtype=np.float32)
    lweight = rng.standard_normal((c, h, w), dtype=np.float32)
    lbias = rng.standard_normal((c, h, w), dtype=np.float32)
    running_mean, running_var = np.zeros(c, np.float32), np.ones(c, np.float32)

    tx = torch.from_numpy(x.copy()).requires_grad_()
    tdy = torch.from_numpy(dy)
    tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (weight, bias))
    tlw, tlb = (torch.from_numpy(a.copy()).requires_grad_() for a in (lweight, lbias))
    trm, trv = torch.zeros(c), torch.ones(c)

    steps = training_steps(x, dy, weight, bias, lweight, lbias, running_mean, running_var,
                           groups)
    return torch_cases(steps, (tx, tdy, tw, tb, tlw, tlb, trm, trv), groups,
                       "x".join(map(str, x.shape)) + " f32", 5 * x.nbytes)


def torch_cases(steps, tensors, groups: int, label: str, moved: int) -> list[Case]:
    """The four norm cases: our ``steps`` (from :func:`training_steps`) against torch's
    functional call and ``autograd.grad`` on ``tensors`` = (x, dy, weight, bias, layer
    weight, layer bias, running mean, running var), host or device: the CPU and CUDA
    benchmarks'. ``label`` names the tensor, ``moved`` the bytes a step must move."""
    import torch
    import torch.nn.functional as F

    tx, tdy, tw, tb, tlw, tlb, trm, trv = tensors
    c, h, w = tx.shape[1:]

    def torch_step(forward, params):
        return lambda: torch.autograd.grad(forward(), (tx,) + params, tdy)

    ours_batch, ours_layer, ours_instance, ours_group = steps
    return [
        Case(f"batch_norm fwd+bwd {label}", ours_batch,
             torch_step(lambda: F.batch_norm(tx, trm, trv, tw, tb, training=True), (tw, tb)),
             "torch F.batch_norm + autograd", 1.0, moved),
        Case(f"layer_norm fwd+bwd {label} over CxHxW", ours_layer,
             torch_step(lambda: F.layer_norm(tx, (c, h, w), tlw, tlb), (tlw, tlb)),
             "torch F.layer_norm + autograd", 1.0, moved),
        Case(f"instance_norm fwd+bwd {label}", ours_instance,
             torch_step(lambda: F.instance_norm(tx, weight=tw, bias=tb), (tw, tb)),
             "torch F.instance_norm + autograd", 1.0, moved),
        Case(f"group_norm fwd+bwd {label} {groups} groups", ours_group,
             torch_step(lambda: F.group_norm(tx, groups, tw, tb), (tw, tb)),
             "torch F.group_norm + autograd", 1.0, moved),
    ]
