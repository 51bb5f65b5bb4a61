"""Pooling (max and average, forward + backward) and ReLU + cross-entropy (forward +
backward) against PyTorch's CPU ops with autograd, float32.

Both sides do the same work and allocate their outputs: torch computes the
pooled output with indices and then the input gradient through autograd; we call
the forward and the backward kernel.
"""

from __future__ import annotations

import numpy as np

from .harness import Case

# (name, input shape, kernel, stride, padding)
POOLS = [
    ("LeNet pool1 2x2", (64, 6, 28, 28), 2, 2, 0),
    ("LeNet pool2 2x2", (64, 16, 10, 10), 2, 2, 0),
    ("ResNet stem 3x3 s2 p1", (8, 64, 112, 112), 3, 2, 1),
]
QUICK_POOLS = [("tiny 2x2", (2, 3, 8, 8), 2, 2, 0), ("tiny 3x3 s2 p1", (2, 3, 9, 9), 3, 2, 1)]
LOSSES = [(64, 10), (1024, 1000)]
QUICK_LOSSES = [(4, 3)]


def _max_pool_case(name, shape, k, s, p) -> Case:
    import torch
    import torch.nn.functional as F

    import kernels

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    y, _ = kernels.max_pool2d(x, k, s, p)
    g = rng.standard_normal(y.shape, dtype=np.float32)
    xt, gt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

    def ours():
        _, indices = kernels.max_pool2d(x, k, s, p)
        return kernels.max_pool2d_backward(g, indices, x.shape)

    def reference():
        yt, _ = F.max_pool2d(xt, k, s, p, return_indices=True)
        return torch.autograd.grad(yt, xt, gt)

    moved = x.nbytes * 2 + y.nbytes * 3 + y.size * 8 * 2  # x, grad_x; y, g; indices
    return Case(f"max_pool2d fwd+bwd {name} {'x'.join(map(str, shape))}", ours, reference,
                "torch max_pool2d + autograd", target=1.0, bytes_moved=moved)


def _avg_pool_case(name, shape, k, s, p) -> Case:
    import torch
    import torch.nn.functional as F

    import kernels

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = kernels.avg_pool2d(x, k, s, p)
    g = rng.standard_normal(y.shape, dtype=np.float32)
    xt, gt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

    def ours():
        kernels.avg_pool2d(x, k, s, p)
        return kernels.avg_pool2d_backward(g, x.shape, k, s, p)

    def reference():
        return torch.autograd.grad(F.avg_pool2d(xt, k, s, p), xt, gt)

    return Case(f"avg_pool2d fwd+bwd {name} {'x'.join(map(str, shape))}", ours, reference,
                "torch avg_pool2d + autograd", target=1.0,
                bytes_moved=(x.nbytes + y.nbytes) * 2)


def _relu_cross_entropy_case(n, c) -> Case:
    import torch
    import torch.nn.functional as F

    import kernels

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c), dtype=np.float32)
    target = rng.integers(0, c, n)
    xt, tt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(target)

    def ours():
        h = kernels.relu(x)
        kernels.cross_entropy(h, target)
        return kernels.relu_backward(kernels.cross_entropy_backward(h, target), x)

    def reference():
        return torch.autograd.grad(F.cross_entropy(F.relu(xt), tt), xt)

    return Case(f"relu + cross_entropy fwd+bwd {n}x{c}", ours, reference,
                "torch relu + cross_entropy + autograd", target=1.0)


def cases(quick: bool) -> list[Case]:
    pools = QUICK_POOLS if quick else POOLS
    return ([_max_pool_case(*p) for p in pools] + [_avg_pool_case(*pools[0])]
            + [_relu_cross_entropy_case(n, c) for n, c in (QUICK_LOSSES if quick else LOSSES)])
