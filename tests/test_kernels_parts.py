"""Kernels run in parts (kernels.cpu._parts): every part runs once, with the arguments
the kernel was compiled for, and a failure is never silent."""

import numpy as np
import pytest
from numba import njit

from kernels.cpu._parts import parallel_and_serial_parts, run_parts, span


@njit
def _spans(n, parts):
    out = np.empty((parts, 2), dtype=np.int64)
    for p in range(parts):
        out[p, 0], out[p, 1] = span(n, p, parts)
    return out


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
@pytest.mark.parametrize("n", [0, 1, 5, 6, 50])
def test_span_cuts_the_tasks_into_contiguous_near_equal_shares(n, parts):
    s = _spans(n, parts)
    assert s[0, 0] == 0 and s[-1, 1] == n
    assert (s[1:, 0] == s[:-1, 1]).all()  # contiguous, in order, no overlap
    sizes = s[:, 1] - s[:, 0]
    assert sizes.min() >= 0 and sizes.max() - sizes.min() <= 1


def _scale_rows(x, y, k, times, part, parts):
    lo, hi = span(x.shape[0], part, parts)
    for i in range(lo, hi):
        for j in range(x.shape[1]):
            y[i, j] = x[i, j] * k if times else x[i, j] + k


def _mark(seen, part, parts):
    seen[part] += 1
    seen[parts + part] = parts


_scale_parallel, _scale_serial = parallel_and_serial_parts(_scale_rows)
_mark_kernel = parallel_and_serial_parts(_mark)[1].kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_and_serial_compute_the_same_as_numpy(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 5)).astype(dtype)
    x.flags.writeable = False  # a read-only argument is a type of its own
    for run in (_scale_parallel, _scale_serial):
        y = np.zeros_like(x)
        run(x, y, dtype(3), True)
        np.testing.assert_array_equal(y, x * dtype(3))


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_every_part_runs_once_and_knows_how_many_there_are(parts):
    seen = np.zeros(2 * parts, dtype=np.int64)
    run_parts(_mark_kernel, parts, seen)
    assert (seen[:parts] == 1).all() and (seen[parts:] == parts).all()


def test_one_kernel_runs_with_each_argument_type_it_is_given():
    # the same kernel compiled for two dtypes: each call reaches its own compilation
    for dtype in (np.float64, np.float32, np.float64):
        x = np.arange(12, dtype=dtype).reshape(6, 2)
        y = np.zeros_like(x)
        run_parts(_scale_parallel.kernel, 3, x, y, dtype(2), False)
        np.testing.assert_array_equal(y, x + 2)


@njit(cache=True)
def _fails_in_part(x, bad, part, parts):
    if part == bad:
        raise ValueError("this part failed")
    x[part] = 1.0


def test_a_failing_part_raises_and_names_the_kernel():
    x = np.zeros(3)
    with pytest.raises(RuntimeError, match="_fails_in_part"):
        run_parts(_fails_in_part, 2, x, 1)
    assert x[0] == 1.0  # the other part ran
    with pytest.raises(ValueError, match="this part failed"):  # one thread: its own error
        run_parts(_fails_in_part, 1, x, 0)


@njit(cache=True)
def _returns(x, part, parts):
    return x[part]


def test_a_kernel_that_returns_a_value_is_refused():
    with pytest.raises(TypeError, match="must return nothing"):
        run_parts(_returns, 2, np.zeros(2))


def test_a_python_kernel_runs_its_parts_in_turn():
    # what NUMBA_DISABLE_JIT=1 leaves: the kernel as plain Python, each part called
    calls = []
    run_parts(lambda out, part, parts: calls.append((part, parts)), 3, calls)
    assert calls == [(0, 3), (1, 3), (2, 3)]


_CACHED_PARTS = """
import sys
import numpy as np
from numba import njit
from kernels.cpu._parts import run_parts

@njit(cache=True)
def fill(x, out, flag, n, part, parts):
    out[part] = n if flag else -n

shape = tuple(int(s) for s in sys.argv[1].split(","))
out = np.zeros(4)
run_parts(fill, 2, np.ones(shape, np.float32), out, False, 5)
print(out[:2].tolist())
"""


def test_parts_loaded_from_the_disk_cache_run_in_later_processes(tmp_path):
    """Launches compiled in a process that loaded the parallel loop from the disk cache,
    then loaded from the cache by later processes (a user's second network on the
    machine, then the next run): a launch that linked the loop in by name crashed."""
    import os
    import subprocess
    import sys

    script = tmp_path / "cached_parts.py"
    script.write_text(_CACHED_PARTS)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    for shape in ("4", "4,4,3,3", "4,4,3,3", "4", "2,3"):
        run = subprocess.run([sys.executable, str(script), shape], env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, (shape, run.returncode, run.stderr[-2000:])
        assert run.stdout.strip() == "[-5.0, -5.0]", shape
