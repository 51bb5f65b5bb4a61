"""The symbolic engine, timed as a user meets it: whole processes, symbolic next to numeric.

    python -m benchmarks.symbolic [--quick] [--json PATH]

Each case runs ``cnncalc ...`` in a fresh interpreter (the best of a few runs, so a
busy moment of the machine does not count) with symbolic sizes and again with numbers
in their place. Deep stacks are also timed in-process at several depths, so growth with
depth shows as the ratio of times (linear: twice the layers, about twice the time).
Derivations that once hung or failed are timed whole-process too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, symbolic command, its numeric counterpart or None)
NETWORKS = [
    ("resnet50", ["params", "--model", "resnet50", "--input", "3xHxW"],
     ["params", "--model", "resnet50", "--input", "3x224x224"]),
    ("mobilenet_v2", ["params", "--model", "mobilenet_v2", "--input", "3xHxW"],
     ["params", "--model", "mobilenet_v2", "--input", "3x224x224"]),
    ("vgg16", ["params", "--model", "vgg16", "--input", "3xHxW"],
     ["params", "--model", "vgg16", "--input", "3x224x224"]),
    ("conv s2 x40", ["params", "--layers", "conv(8,k=3,s=2,p=1)*40", "--input", "CxHxW"],
     ["params", "--layers", "conv(8,k=3,s=2,p=1)*40", "--input", "3x224x224"]),
    ("conv s3 x12", ["params", "--layers", "conv(8,k=3,s=3,p=1)*12", "--input", "CxHxW"],
     ["params", "--layers", "conv(8,k=3,s=3,p=1)*12", "--input", "3x224x224"]),
    ("conv k=F,s=S,p=P x10", ["params", "--layers", "conv(8,k=F,s=S,p=P)*10",
                              "--input", "CxHxW"],
     ["params", "--layers", "conv(8,k=1,s=1,p=0)*10", "--input", "3x224x224"]),
    ("conv k=F,s=S,p=P x40", ["params", "--layers", "conv(8,k=F,s=S,p=P)*40",
                              "--input", "CxHxW"],
     ["params", "--layers", "conv(8,k=1,s=1,p=0)*40", "--input", "3x224x224"]),
    ("conv k=F,s=S,p=P x80", ["params", "--layers", "conv(8,k=F,s=S,p=P)*80",
                              "--input", "CxHxW"],
     ["params", "--layers", "conv(8,k=1,s=1,p=0)*80", "--input", "3x224x224"]),
    ("conv + relu*9999", ["params", "--layers", "conv(4,k=3,p=1), relu*9999",
                          "--input", "1xHxW"],
     ["params", "--layers", "conv(4,k=3,p=1), relu*9999", "--input", "1x28x28"]),
]
DERIVATIONS = ["tan(tan(x))", "sin(cos(tan(x)))", "exp(tan(x))"]
# in-process: (name, layer text with {n} repeats, input)
STACKS = [("plain 3x3 conv", "conv(8,k=3,p=1)*{n}", "CxHxW"),
          ("strided 3x3 conv", "conv(8,k=3,s=2,p=1)*{n}", "CxHxW"),
          ("fully symbolic conv", "conv(8,k=F,s=S,p=P)*{n}", "CxHxW")]


def whole_process(args: list[str], runs: int) -> float:
    """Best wall time of ``runs`` fresh ``python -m cnncalc ARGS`` processes."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "cnncalc", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        best = min(best, time.perf_counter() - start)
        if done.returncode not in (0, 2):
            raise SystemExit(f"cnncalc {' '.join(args)} failed:\n{done.stderr}")
    return best


def in_process(text: str, shape: str, runs: int) -> float:
    """Best time of ``analyze``, with sympy's cache emptied before each run (a second run
    of the same network would otherwise find every expression already built)."""
    from sympy.core.cache import clear_cache

    from cnncalc import analyze
    analyze("conv(8,k=3,s=2,p=F)", input="CxHxW")  # sympy's first calls import and set up
    best = float("inf")
    for _ in range(runs):
        clear_cache()
        start = time.perf_counter()
        analyze(text, input=shape)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run each, shallow stacks")
    parser.add_argument("--json", type=Path, help="also write the timings here")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    networks = NETWORKS[3:4] if args.quick else NETWORKS
    derivations = DERIVATIONS[:1] if args.quick else DERIVATIONS
    depths = (5, 10) if args.quick else (10, 20, 40, 80)

    result: dict = {"networks": [], "stacks": [], "derivations": []}
    print(f"{'whole process':<24}{'symbolic':>10}{'numeric':>10}")
    for name, symbolic, numeric in networks:
        s = whole_process(symbolic, runs)
        n = whole_process(numeric, runs) if numeric else None
        result["networks"].append({"case": name, "symbolic_s": s, "numeric_s": n})
        print(f"{name:<24}{s:>9.2f}s{'' if n is None else f'{n:>9.2f}s':>10}")
    print(f"\n{'in-process analyze':<24}" + "".join(f"{f'x{d}':>10}" for d in depths)
          + f"{'ratio':>8}")
    for name, text, shape in STACKS:
        times = [in_process(text.format(n=d), shape, runs) for d in depths]
        result["stacks"].append({"case": name, "depths": list(depths), "seconds": times})
        ratio = times[-1] / times[0]
        print(f"{name:<24}" + "".join(f"{t * 1e3:>8.0f}ms" for t in times)
              + f"{ratio:>7.1f}x")
    print(f"\n{'derive (whole process)':<24}{'time':>10}")
    for text in derivations:
        t = whole_process(["derive", text], runs)
        result["derivations"].append({"case": text, "seconds": t})
        print(f"{text:<24}{t:>9.2f}s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
