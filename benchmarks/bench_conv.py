"""conv2d forward, and forward + backward, against torch (float32, 2 threads).

Both sides do the same work: allocate the output, then (fwd+bwd) compute the
input, weight and bias gradients for a fixed random ``grad_out``.
"""

from __future__ import annotations

import numpy as np

from .harness import Case

# name, x shape, w shape, keyword arguments: LeNet's layers, then the layers of the
# ResNet-50 / ResNeXt / MobileNetV2 / EfficientNet families at batch 8, 56x56 down to 7x7
SHAPES = [
    ("LeNet conv1 CIFAR b64", (64, 3, 32, 32), (6, 3, 5, 5), {}),
    ("LeNet conv1 MNIST b64", (64, 1, 28, 28), (6, 1, 5, 5), {}),
    ("LeNet conv2 b64", (64, 6, 14, 14), (16, 6, 5, 5), {}),
    ("7x7 s2 stem 3->64 224x224 b8", (8, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)),
    ("3x3 64->64 56x56 b8", (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ("1x1 64->256 56x56 b8", (8, 64, 56, 56), (256, 64, 1, 1), {}),
    ("1x1 256->64 56x56 b8", (8, 256, 56, 56), (64, 256, 1, 1), {}),
    ("3x3 s2 128->128 56x56 b8", (8, 128, 56, 56), (128, 128, 3, 3), dict(stride=2, padding=1)),
    ("1x1 s2 256->512 56x56 b8", (8, 256, 56, 56), (512, 256, 1, 1), dict(stride=2)),
    ("3x3 128->128 28x28 b8", (8, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ("3x3 256->256 14x14 b8", (8, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    ("1x1 1024->256 14x14 b8", (8, 1024, 14, 14), (256, 1024, 1, 1), {}),
    ("3x3 512->512 7x7 b8", (8, 512, 7, 7), (512, 512, 3, 3), dict(padding=1)),
    ("1x1 2048->512 7x7 b8", (8, 2048, 7, 7), (512, 2048, 1, 1), {}),
    ("3x3 g32 128->128 56x56 b8", (8, 128, 56, 56), (128, 4, 3, 3), dict(padding=1, groups=32)),
    ("3x3 g32 s2 256->256 56x56 b8", (8, 256, 56, 56), (256, 8, 3, 3),
     dict(stride=2, padding=1, groups=32)),
    ("3x3 g32 512->512 14x14 b8", (8, 512, 14, 14), (512, 16, 3, 3), dict(padding=1, groups=32)),
    ("3x3 g32 1024->1024 7x7 b8", (8, 1024, 7, 7), (1024, 32, 3, 3),
     dict(padding=1, groups=32)),
    ("1x1 24->144 56x56 b8", (8, 24, 56, 56), (144, 24, 1, 1), {}),
    ("dw 3x3 144 56x56 b8", (8, 144, 56, 56), (144, 1, 3, 3), dict(padding=1, groups=144)),
    ("dw 3x3 s2 144 56x56 b8", (8, 144, 56, 56), (144, 1, 3, 3),
     dict(stride=2, padding=1, groups=144)),
    ("1x1 144->24 56x56 b8", (8, 144, 56, 56), (24, 144, 1, 1), {}),
    ("dw 5x5 240 28x28 b8", (8, 240, 28, 28), (240, 1, 5, 5), dict(padding=2, groups=240)),
    ("dw 5x5 s2 144 56x56 b8", (8, 144, 56, 56), (144, 1, 5, 5),
     dict(stride=2, padding=2, groups=144)),
    ("dw 3x3 960 7x7 b8", (8, 960, 7, 7), (960, 1, 3, 3), dict(padding=1, groups=960)),
    ("dw 5x5 1152 7x7 b8", (8, 1152, 7, 7), (1152, 1, 5, 5), dict(padding=2, groups=1152)),
    # an image-to-image network's RGB output (a U-Net's or a decoder's last layer)
    ("3x3 32->3 112x112 b8", (8, 32, 112, 112), (3, 32, 3, 3), dict(padding=1)),
]
QUICK = [
    ("conv 3->6 5x5 b2", (2, 3, 12, 12), (6, 3, 5, 5), {}),
    ("conv 8->8 3x3 b2", (2, 8, 10, 10), (8, 8, 3, 3), dict(padding=1)),
]


def _cases(name, x_shape, w_shape, kw) -> list[Case]:
    import torch
    import torch.nn.functional as F

    import kernels

    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32) * 0.1
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    g = rng.standard_normal(kernels.conv2d(x, w, b, **kw).shape, dtype=np.float32)
    tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, g))
    rx, rw, rb = (t.clone().requires_grad_() for t in (tx, tw, tb))

    def ours_fb():
        kernels.conv2d(x, w, b, **kw)
        return kernels.conv2d_backward(g, x, w, **kw)

    def torch_fb():
        y = F.conv2d(rx, rw, rb, **kw)
        return torch.autograd.grad(y, (rx, rw, rb), tg)

    return [
        Case(f"conv2d {name}", lambda: kernels.conv2d(x, w, b, **kw),
             lambda: F.conv2d(tx, tw, tb, **kw), "torch conv2d", target=1.0),
        Case(f"conv2d+bwd {name}", ours_fb, torch_fb, "torch conv2d+autograd", target=1.0),
    ]


def cases(quick: bool) -> list[Case]:
    return [c for shape in (QUICK if quick else SHAPES) for c in _cases(*shape)]
