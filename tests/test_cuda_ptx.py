"""Tier 2 of the CUDA tests: every registered kernel compiles to PTX for a real GPU
architecture, with no GPU, and float32 kernels emit no float64 arithmetic.

The simulator (tier 1, ``NUMBA_ENABLE_CUDASIM=1`` from conftest) runs kernels as Python
and never types them, so the check runs in a subprocess without it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kernels.cuda import ptx

ROOT = Path(__file__).resolve().parent.parent
# our own kernels: each must be registered in float32 and in float64
OURS = {"fill", "relu", "relu_backward", "linear_matmul", "linear_column_sum",
        "cross_entropy", "cross_entropy_backward", "sgd", "adagrad", "rmsprop", "adam"}


def _run(*args: str) -> subprocess.CompletedProcess:
    """``python *args`` from the repository root, with the simulator switched off."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def registry():
    """Every (name, signature) the family modules register (importing them all)."""
    ptx._load_all()
    return [(name, sig) for name, _, sig in ptx.REGISTRY]


def test_registry_covers_every_kernel_in_both_dtypes(registry):
    names = {name for name, _ in registry}
    assert OURS <= names
    for name in OURS:
        sigs = [sig for n, sig in registry if n == name]
        for dtype in ("float32", "float64"):
            assert any(all("float" not in a or dtype in a for a in sig) for sig in sigs), \
                f"{name} has no {dtype} signature"


def test_every_kernel_compiles_to_ptx_without_float64_in_float32(registry):
    done = _run("-m", "kernels.cuda.ptx")
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"^(\d+) kernel signatures compiled to PTX for sm_\d+: all clean$",
                      done.stdout, re.M)
    assert found, done.stdout
    assert int(found.group(1)) == len(registry) >= 2 * len(OURS)


BAD_AND_GOOD = '''
import sys

from numba import cuda

from kernels.cuda import ptx


@cuda.jit
def bad_sum(x, out):
    acc = 0.0  # a float64 accumulator: the sum runs in .f64
    for j in range(x.size):
        acc += x[j]
    out[0] = acc


@cuda.jit
def good_sum(x, out, zero):
    acc = zero  # the array's dtype
    for j in range(x.size):
        acc += x[j]
    out[0] = acc


ptx._load_all = lambda: None  # only these two
ptx.register(bad_sum, "bad_sum", [("float32[::1]", "float32[::1]"),
                                  ("float64[::1]", "float64[::1]")])
ptx.register(good_sum, "good_sum", [("float32[::1]", "float32[::1]", "float32")])
sys.exit(ptx.main())
'''


def test_float64_detector_flags_a_float32_kernel_with_a_float_literal(tmp_path):
    """The check can fail: a ``0.0`` accumulator in a float32 kernel is reported (and only
    in its float32 signature), a dtype-typed one is not."""
    script = tmp_path / "bad_kernel.py"
    script.write_text(textwrap.dedent(BAD_AND_GOOD))
    done = _run(str(script))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stdout
    assert lines[0].startswith("bad_sum('float32[::1]', 'float32[::1]'): float32 kernel does "
                               "float64 arithmetic: ")
    assert ".f64" in lines[0]
    assert lines[1].startswith("3 kernel signatures compiled") and "1 problem(s)" in lines[1]
