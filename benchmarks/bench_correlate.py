"""Cross-correlation: ``kernels.correlate2d`` vs ``scipy.signal.correlate2d``.

Every combination of dtype (float32, float64), kernel size (3x3, 15x15) and mode (full,
same, valid) on one 512x512 image. Both sides take the same inputs and allocate their own
output in the inputs' dtype.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

import kernels

from .harness import Case

TARGET = 10.0
DTYPES = ((np.float32, "f32"), (np.float64, "f64"))
KERNEL_SIZES = (3, 15)
MODES = ("full", "same", "valid")


def out_side(size: int, k: int, mode: str) -> int:
    return {"full": size + k - 1, "same": size, "valid": size - k + 1}[mode]


def cases(quick: bool) -> list[Case]:
    size = 64 if quick else 512
    rng = np.random.default_rng(0)
    image64 = rng.standard_normal((size, size))
    kernels64 = {k: rng.standard_normal((k, k)) for k in KERNEL_SIZES}
    out: list[Case] = []
    for dtype, tag in DTYPES:
        image = image64.astype(dtype)
        for k in KERNEL_SIZES:
            kernel = kernels64[k].astype(dtype)
            for mode in MODES:
                h = out_side(size, k, mode)
                out.append(Case(
                    name=f"correlate2d {size}x{size} {tag}, {k}x{k} {mode}",
                    ours=lambda image=image, kernel=kernel, mode=mode: kernels.correlate2d(
                        image, kernel, mode),
                    reference=lambda image=image, kernel=kernel, mode=mode:
                        scipy.signal.correlate2d(image, kernel, mode),
                    reference_name="scipy.signal.correlate2d",
                    target=TARGET,
                    bytes_moved=image.itemsize * (image.size + kernel.size + h * h),
                ))
    return out
