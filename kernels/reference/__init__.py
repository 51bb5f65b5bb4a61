"""NumPy definitions of every kernel: slow, obvious, and the tests' living definition."""
