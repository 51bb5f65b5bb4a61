"""First-call cost of the kernels in a new process: compiling from scratch, then from cache.

    python -m benchmarks.compile_time

Each family's first call runs in a fresh interpreter with ``NUMBA_CACHE_DIR`` set
to an empty folder (so Numba compiles everything it needs), then again in
another fresh interpreter with that folder filled (so it loads from the cache).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

FIRST_CALLS = {
    "correlate2d": "kernels.correlate2d(a2, a2[:3, :3])",
    # a LeNet-sized first layer (serial kernels), then ResNet 3x3 layers (parallel ones;
    # in float32 with AVX-512, by Winograd's F(2x2, 3x3), at stride 1 and 2)
    "conv2d + backward, LeNet b8": ("y = kernels.conv2d(xl, wl); "
                                    "kernels.conv2d_backward(y, xl, wl)"),
    "conv2d + backward, 3x3 b8": ("y = kernels.conv2d(xr, wr, padding=1); "
                                  "kernels.conv2d_backward(y, xr, wr, padding=1)"),
    "conv2d + backward, 3x3 s2 b8": ("y = kernels.conv2d(xs, ws, stride=2, padding=1); "
                                     "kernels.conv2d_backward(y, xs, ws, stride=2, padding=1)"),
    "max_pool2d + backward": ("y, i = kernels.max_pool2d(x, 2); "
                              "kernels.max_pool2d_backward(y, i, x.shape)"),
    "batch_norm + backward": ("y, m, s = kernels.batch_norm(x, training=True, return_stats=True);"
                              " kernels.batch_norm_backward(y, x, None, m, s)"),
    "relu + cross_entropy": ("z = kernels.relu(x.reshape(2, -1)); "
                             "kernels.cross_entropy_backward(z, np.zeros(2, dtype=np.int64))"),
    "Adam step": "p = [x.copy()]; kernels.optim.Adam(p).step([x])",
}

TEMPLATE = """
import time
t0 = time.perf_counter()
import numpy as np
import kernels
x = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
w = np.random.default_rng(1).random((4, 3, 3, 3), dtype=np.float32)
a2 = x[0, 0].copy()
xl = np.random.default_rng(2).random((8, 3, 32, 32), dtype=np.float32)
wl = np.random.default_rng(3).random((6, 3, 5, 5), dtype=np.float32)
xr = np.random.default_rng(4).random((8, 64, 28, 28), dtype=np.float32)
wr = np.random.default_rng(5).random((64, 64, 3, 3), dtype=np.float32)
xs = np.random.default_rng(6).random((8, 128, 32, 32), dtype=np.float32)
ws = np.random.default_rng(7).random((128, 128, 3, 3), dtype=np.float32)
t1 = time.perf_counter()
{call}
print(time.perf_counter() - t1)
"""


def first_call(call: str, cache_dir: str) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    result = subprocess.run([sys.executable, "-c", TEMPLATE.format(call=call)], env=env,
                            capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> int:
    print(f"{'first call (float32)':<28} {'compile':>10} {'cached':>10}")
    total_cold = total_warm = 0.0
    for name, call in FIRST_CALLS.items():
        with tempfile.TemporaryDirectory() as cache_dir:
            cold = first_call(call, cache_dir)
            warm = first_call(call, cache_dir)
        total_cold, total_warm = total_cold + cold, total_warm + warm
        print(f"{name:<28} {cold:>9.2f}s {warm:>9.2f}s")
    print(f"{'total':<28} {total_cold:>9.2f}s {total_warm:>9.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
