"""conv2d forward, and forward + backward, against torch (float32, 2 threads).

Both sides do the same work: allocate the output, then (fwd+bwd) compute the
input, weight and bias gradients for a fixed random ``grad_out``.
"""

from __future__ import annotations

import numpy as np

from .harness import Case

# name, x shape, w shape, padding
SHAPES = [
    ("LeNet conv1 CIFAR b64", (64, 3, 32, 32), (6, 3, 5, 5), 0),
    ("LeNet conv1 MNIST b64", (64, 1, 28, 28), (6, 1, 5, 5), 0),
    ("LeNet conv2 b64", (64, 6, 14, 14), (16, 6, 5, 5), 0),
    ("3x3 64->64 56x56 b8", (8, 64, 56, 56), (64, 64, 3, 3), 1),
]
QUICK = [
    ("conv 3->6 5x5 b2", (2, 3, 12, 12), (6, 3, 5, 5), 0),
    ("conv 8->8 3x3 b2", (2, 8, 10, 10), (8, 8, 3, 3), 1),
]


def _cases(name, x_shape, w_shape, padding) -> list[Case]:
    import torch
    import torch.nn.functional as F

    import kernels

    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32) * 0.1
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    g = rng.standard_normal(kernels.conv2d(x, w, b, padding=padding).shape, dtype=np.float32)
    tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, g))
    rx, rw, rb = (t.clone().requires_grad_() for t in (tx, tw, tb))

    def ours_fb():
        kernels.conv2d(x, w, b, padding=padding)
        return kernels.conv2d_backward(g, x, w, padding=padding)

    def torch_fb():
        y = F.conv2d(rx, rw, rb, padding=padding)
        return torch.autograd.grad(y, (rx, rw, rb), tg)

    return [
        Case(f"conv2d {name}", lambda: kernels.conv2d(x, w, b, padding=padding),
             lambda: F.conv2d(tx, tw, tb, padding=padding), "torch conv2d", target=1.0),
        Case(f"conv2d+bwd {name}", ours_fb, torch_fb, "torch conv2d+autograd", target=1.0),
    ]


def cases(quick: bool) -> list[Case]:
    return [c for shape in (QUICK if quick else SHAPES) for c in _cases(*shape)]
