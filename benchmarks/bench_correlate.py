"""Cross-correlation: ``kernels.correlate2d`` vs ``scipy.signal.correlate2d`` (float32 both sides).

Both sides take the same float32 inputs and allocate their own float32 output.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

import kernels

from .harness import Case

TARGET = 10.0


def cases(quick: bool) -> list[Case]:
    size = 64 if quick else 512
    rng = np.random.default_rng(0)
    image = rng.standard_normal((size, size)).astype(np.float32)
    out: list[Case] = []
    for k in (3, 15):
        kernel = rng.standard_normal((k, k)).astype(np.float32)
        for mode in ("full", "same"):
            h = size + k - 1 if mode == "full" else size
            out.append(Case(
                name=f"correlate2d {size}x{size} f32, {k}x{k} {mode}",
                ours=lambda kernel=kernel, mode=mode: kernels.correlate2d(image, kernel, mode),
                reference=lambda kernel=kernel, mode=mode: scipy.signal.correlate2d(
                    image, kernel, mode),
                reference_name="scipy.signal.correlate2d",
                target=TARGET,
                bytes_moved=4 * (image.size + kernel.size + h * h),
            ))
    return out
