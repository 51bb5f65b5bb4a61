"""Timing, one way for every benchmark: warm up, then the median of repeated runs.

A benchmark module ``benchmarks/bench_<family>.py`` defines ``cases(quick)``
returning :class:`Case` objects; ``python -m benchmarks`` times them all in one
process, ours and the reference alternately, and prints reference / ours.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    ours: Callable[[], object]
    reference: Callable[[], object]
    reference_name: str
    target: float | None = None  # the ratio (reference time / our time) we aim for
    bytes_moved: int | None = None  # per call, to report GB/s for memory-bound kernels


@dataclass(frozen=True)
class Timing:
    case: Case
    ours_s: float
    reference_s: float

    @property
    def ratio(self) -> float:
        return self.reference_s / self.ours_s

    def gbps(self, seconds: float) -> float | None:
        return None if self.case.bytes_moved is None else self.case.bytes_moved / seconds / 1e9


def median_time(fn: Callable[[], object], min_time: float = 0.4, max_reps: int = 200,
                warmup: int = 2) -> float:
    """Median seconds per call, after ``warmup`` calls (which absorb compilation)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_case(case: Case, min_time: float = 0.4) -> Timing:
    # Interleave so that a slow patch of the machine hits both sides alike.
    ours1 = median_time(case.ours, min_time / 2)
    ref1 = median_time(case.reference, min_time / 2)
    ours2 = median_time(case.ours, min_time / 2, warmup=0)
    ref2 = median_time(case.reference, min_time / 2, warmup=0)
    return Timing(case, min(ours1, ours2), min(ref1, ref2))
