"""Numba kernels for the operations cnncalc analyses: correlation, conv2d, pooling,
norms, losses and optimizers.

Every public function takes NumPy arrays (the CPU kernels) and, once the CUDA
backend exists, device arrays (anything with ``__cuda_array_interface__``).
Semantics follow ``scipy.signal`` and ``torch.nn.functional`` exactly; the NumPy
definitions in ``kernels.reference`` are the living definition the tests use.
Modules load on first use, so ``import kernels`` is cheap and needs no GPU.
"""

from __future__ import annotations

import importlib

# public name -> module that defines it
_LAZY = {
    "correlate1d": "kernels.correlate", "correlate2d": "kernels.correlate",
    "conv2d": "kernels.conv", "conv2d_backward": "kernels.conv",
    "max_pool2d": "kernels.pool", "max_pool2d_backward": "kernels.pool",
    "avg_pool2d": "kernels.pool", "avg_pool2d_backward": "kernels.pool",
    "batch_norm": "kernels.norm", "batch_norm_backward": "kernels.norm",
    "layer_norm": "kernels.norm", "layer_norm_backward": "kernels.norm",
    "instance_norm": "kernels.norm", "instance_norm_backward": "kernels.norm",
    "group_norm": "kernels.norm", "group_norm_backward": "kernels.norm",
    "relu": "kernels.activation", "relu_backward": "kernels.activation",
    "linear": "kernels.activation", "linear_backward": "kernels.activation",
    "cross_entropy": "kernels.activation", "cross_entropy_backward": "kernels.activation",
    "optim": "kernels.optim", "nn": "kernels.nn",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'kernels' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    return module if _LAZY[name] == f"kernels.{name}" else getattr(module, name)
