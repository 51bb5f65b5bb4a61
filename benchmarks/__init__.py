"""Side-by-side timings of the kernels against PyTorch and SciPy (``python -m benchmarks``)."""
