"""``python -m benchmarks [--quick] [--only NAME] [--json PATH]``: every benchmark, one process."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402

from .harness import run_case  # noqa: E402


def modules(only: str | None):
    here = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if info.name.startswith("bench_") and (only is None or only in info.name):
            yield importlib.import_module(f"benchmarks.{info.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--only", help="run only bench_<family> modules whose name has this")
    parser.add_argument("--json", type=Path, help="also write the timings here")
    args = parser.parse_args()

    import torch
    torch.set_num_threads(2)  # the machine has 2 cores; so do our Numba kernels
    cases = [c for m in modules(args.only) for c in m.cases(args.quick)]
    timings = [run_case(c, 0.1 if args.quick else 0.6)
               for c in track(cases, description="timing", transient=True)]

    table = Table(title=f"kernels vs references — {platform.processor() or platform.machine()}, "
                        f"{os.cpu_count()} cores, torch {torch.__version__}",
                  title_justify="left")
    for col in ("case", "ours", "reference", "ref time", "ratio", "target", "GB/s ours"):
        table.add_column(col, justify="left" if col in ("case", "reference") else "right")
    for t in timings:
        ok = t.case.target is None or t.ratio >= t.case.target
        gb = t.gbps(t.ours_s)
        table.add_row(t.case.name, f"{t.ours_s * 1e3:.3f} ms", t.case.reference_name,
                      f"{t.reference_s * 1e3:.3f} ms",
                      f"[{'green' if ok else 'red'}]{t.ratio:.2f}x[/]",
                      "" if t.case.target is None else f"≥ {t.case.target:g}x",
                      "" if gb is None else f"{gb:.1f}")
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps([{"case": t.case.name, "ours_s": t.ours_s,
                                          "reference": t.case.reference_name,
                                          "reference_s": t.reference_s, "ratio": t.ratio}
                                         for t in timings], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
