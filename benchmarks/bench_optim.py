"""Optimizer steps on 10M float32 parameters: ours vs torch.optim (foreach=True, fused=True).

The step is memory-bound, so each case also reports GB/s: the bytes each step must
read and write at the least (Adam reads p, g, m, v and writes p, m, v: 7 x 4 bytes
per parameter), against the bandwidth of a plain copy (the first case). torch 2.x
has CPU fused kernels for SGD, Adagrad, Adam and AdamW; RMSprop has none, so it is
compared with foreach only.
"""

from __future__ import annotations

import numpy as np

from .harness import Case

# name, hyperparameters, arrays touched per step (read + written), torch has fused=True
OPTIMIZERS = [
    ("SGD", dict(lr=1e-3, momentum=0.9), 5, True),  # p, g, buf read; p, buf written
    ("Adagrad", dict(lr=1e-2), 5, True),  # p, g, sum; p, sum
    ("RMSprop", dict(lr=1e-2), 5, False),  # p, g, square_avg; p, square_avg
    ("Adam", dict(lr=1e-3), 7, True),  # p, g, m, v; p, m, v
    ("AdamW", dict(lr=1e-3), 7, True),
]


def _ours(name, kw, n):
    from kernels import optim
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    opt = getattr(optim, name)([p], **kw)
    return lambda: opt.step([g])


def _torch(name, kw, n, **mode):
    import torch
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(n, generator=gen, dtype=torch.float32, requires_grad=True)
    p.grad = torch.randn(n, generator=gen, dtype=torch.float32)
    opt = getattr(torch.optim, name)([p], **kw, **mode)
    return opt.step


def cases(quick: bool) -> list[Case]:
    import torch
    n = 10_000 if quick else 10_000_000
    size = "10k" if quick else "10M"
    src = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    dst = np.empty_like(src)
    tsrc, tdst = torch.from_numpy(src.copy()), torch.empty(n)
    out = [Case(f"copy {size} float32 (np.copyto)", lambda: np.copyto(dst, src),
                lambda: tdst.copy_(tsrc), "torch.Tensor.copy_", None, 2 * 4 * n)]
    for name, kw, arrays, fused in OPTIMIZERS:
        ours = _ours(name, kw, n)
        modes = [("foreach", 1.5)] + ([("fused", 1.0)] if fused else [])
        for mode, target in modes:
            out.append(Case(f"{name} step {size} float32 vs {mode}", ours,
                            _torch(name, kw, n, **{mode: True}),
                            f"torch.optim.{name}({mode}=True)", target, arrays * 4 * n))
    return out
