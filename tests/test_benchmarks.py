"""The benchmark commands run end to end (tiny sizes; their times mean nothing here).

``python -m benchmarks`` times CPU kernels against torch and scipy; ``python -m
benchmarks.cuda`` times the CUDA kernels against torch on a GPU, and in Numba's
simulator with ``--quick`` it runs the same code as a smoke test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def test_cpu_benchmarks_quick(tmp_path):
    out = tmp_path / "t.json"
    done = run("benchmarks", "--quick", "--only", "correlate", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())
    assert {r["reference"] for r in rows} == {"scipy.signal.correlate2d"}
    assert all(r["ours_s"] > 0 and r["reference_s"] > 0 for r in rows)


def test_cuda_benchmarks_quick_in_the_simulator(tmp_path):
    out = tmp_path / "t.json"
    done = run("benchmarks.cuda", "--quick", "--only", "cross_entropy", "--json", str(out),
               env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["device"] == "Numba CUDA simulator" and result["copy_gbps"] > 0
    assert [c["case"] for c in result["cases"]] == ["relu + cross_entropy fwd+bwd 4x3"]


def test_symbolic_benchmarks_quick(tmp_path):
    out = tmp_path / "s.json"
    done = run("benchmarks.symbolic", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert [n["case"] for n in result["networks"]] == ["conv s2 x40"]
    assert all(n["symbolic_s"] > 0 and n["numeric_s"] > 0 for n in result["networks"])
    assert {s["case"] for s in result["stacks"]} == {"plain 3x3 conv", "strided 3x3 conv",
                                                     "fully symbolic conv"}
    assert result["derivations"][0]["case"] == "tan(tan(x))"
