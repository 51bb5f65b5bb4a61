"""``python -m benchmarks.cuda [--quick] [--json PATH]``: the CUDA kernels against PyTorch
(cuDNN, cuBLAS and torch's own CUDA kernels) on the same GPU, in one process.

The workloads are the CPU benchmarks' (``benchmarks/bench_*.py``) plus LeNet's layers at
batch 256. Our functions take the same PyTorch CUDA tensors as torch (zero-copy through
``__cuda_array_interface__``) and launch on torch's current stream, so both sides see
identical inputs and each call's time includes its own launch overhead and output
allocation. A time is the median, over 7 batches, of a batch's wall time over its calls,
with the device synchronized around each batch; ours and torch's are measured twice,
interleaved, and the smaller of each pair is kept (as ``benchmarks.harness`` does).

Memory-bound cases report GB/s: the fewest bytes the step must read and write, over our
time, and that as a share of the card's bandwidth, measured first as a 1 GiB
device-to-device copy (bytes read + written).

Without a GPU, ``--quick`` runs the same code in Numba's simulator with torch on the CPU
as the reference (a smoke test of this script; its times mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .harness import Case


class Device:
    """Where the tensors live: a real GPU (torch CUDA tensors for both sides), or the
    simulator (Numba simulator arrays for us, CPU tensors for torch)."""

    def __init__(self):
        import torch
        from numba import config, cuda

        self.torch = torch
        self.sim = bool(config.ENABLE_CUDASIM)
        self.gpu = not self.sim and torch.cuda.is_available()
        if not (self.gpu or self.sim):
            raise SystemExit("benchmarks.cuda needs a CUDA GPU (or NUMBA_ENABLE_CUDASIM=1 "
                             "with --quick for a smoke test)")
        self.cuda = cuda
        self.name = (torch.cuda.get_device_name() if self.gpu else "Numba CUDA simulator")

    def ours(self, a: np.ndarray):
        """``a`` as our kernels' input: a torch CUDA tensor, or a simulator array."""
        if self.gpu:
            return self.torch.from_numpy(a).cuda()
        return self.cuda.to_device(a)

    def ref(self, a: np.ndarray, grad: bool = False):
        """``a`` as torch's input, on the GPU when there is one."""
        t = self.torch.from_numpy(a.copy())
        t = t.cuda() if self.gpu else t
        return t.requires_grad_() if grad else t

    def sync(self):
        if self.gpu:
            self.torch.cuda.synchronize()  # the whole device: torch's and Numba's streams
        else:
            self.cuda.synchronize()


def gpu_time(fn: Callable[[], object], sync: Callable[[], None], batches: int = 7,
             batch_s: float = 0.02, warmup: int = 3) -> float:
    """Median seconds per call: ``batches`` batches of back-to-back calls, each batch
    timed between device synchronizations (so the time counts launches, queueing and
    the kernels, as a training loop sees them)."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    reps = max(3, min(2000, int(batch_s / max(time.perf_counter() - t0, 1e-7))))
    samples = []
    for _ in range(batches):
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / reps)
    return statistics.median(samples)


def run(case: Case, sync, quick: bool) -> tuple[float, float]:
    """(ours, torch's) seconds per call: each timed twice, interleaved, the smaller kept
    (once each with ``quick``)."""
    kw = dict(batches=2, batch_s=0.0, warmup=1) if quick else {}
    ours, ref = gpu_time(case.ours, sync, **kw), gpu_time(case.reference, sync, **kw)
    if not quick:
        ours = min(ours, gpu_time(case.ours, sync, warmup=0))
        ref = min(ref, gpu_time(case.reference, sync, warmup=0))
    return ours, ref


# ---------------------------------------------------------------- the workloads

def correlate_cases(d: Device, quick: bool) -> list[Case]:
    """correlate2d (scipy semantics) against torch's conv2d, which is a correlation:
    ``full`` mode is conv2d with ``k - 1`` zero padding on each side."""
    import torch.nn.functional as F

    import kernels

    size = 16 if quick else 512
    rng = np.random.default_rng(0)
    image = rng.standard_normal((size, size), dtype=np.float32)
    out = []
    for k in (3, 15):
        kernel = rng.standard_normal((k, k), dtype=np.float32)
        oi, ok = d.ours(image), d.ours(kernel)
        ti, tk = d.ref(image)[None, None], d.ref(kernel)[None, None]
        out.append(Case(
            f"correlate2d {size}x{size} f32, {k}x{k} full",
            lambda oi=oi, ok=ok: kernels.correlate2d(oi, ok, "full"),
            lambda ti=ti, tk=tk, k=k: F.conv2d(ti, tk, padding=k - 1),
            "torch conv2d (cuDNN)", bytes_moved=4 * (image.size + (size + k - 1) ** 2)))
    return out


# name, x shape, w shape, padding
CONV_SHAPES = [
    ("LeNet conv1 MNIST b64", (64, 1, 28, 28), (6, 1, 5, 5), 0),
    ("LeNet conv1 CIFAR b64", (64, 3, 32, 32), (6, 3, 5, 5), 0),
    ("LeNet conv2 b64", (64, 6, 14, 14), (16, 6, 5, 5), 0),
    ("LeNet conv1 CIFAR b256", (256, 3, 32, 32), (6, 3, 5, 5), 0),
    ("LeNet conv2 b256", (256, 6, 14, 14), (16, 6, 5, 5), 0),
    ("3x3 64->64 56x56 b8", (8, 64, 56, 56), (64, 64, 3, 3), 1),
]
QUICK_CONV = [("conv 3->4 3x3 b2", (2, 3, 6, 6), (4, 3, 3, 3), 1)]
LENET = ("LeNet", "conv1", "conv2")  # the shapes the 2x target is set on


def conv_cases(d: Device, quick: bool) -> list[Case]:
    import torch
    import torch.nn.functional as F

    import kernels

    out = []
    for name, xs, ws, pad in QUICK_CONV if quick else CONV_SHAPES:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32) * 0.1
        b = rng.standard_normal(ws[0], dtype=np.float32)
        ys = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=pad).shape
        g = rng.standard_normal(tuple(ys), dtype=np.float32)
        ox, ow, ob, og = (d.ours(a) for a in (x, w, b, g))
        tx, tw, tb = (d.ref(a) for a in (x, w, b))
        rx, rw, rb = (d.ref(a, grad=True) for a in (x, w, b))
        tg = d.ref(g)
        target = 0.5 if all(s in name for s in LENET[:1]) else None

        def ours_fb(ox=ox, ow=ow, ob=ob, og=og, pad=pad):
            kernels.conv2d(ox, ow, ob, padding=pad)
            return kernels.conv2d_backward(og, ox, ow, padding=pad)

        def torch_fb(rx=rx, rw=rw, rb=rb, tg=tg, pad=pad):
            return torch.autograd.grad(F.conv2d(rx, rw, rb, padding=pad), (rx, rw, rb), tg)

        out += [
            Case(f"conv2d {name}",
                 lambda ox=ox, ow=ow, ob=ob, pad=pad: kernels.conv2d(ox, ow, ob, padding=pad),
                 lambda tx=tx, tw=tw, tb=tb, pad=pad: F.conv2d(tx, tw, tb, padding=pad),
                 "torch conv2d (cuDNN)", target),
            Case(f"conv2d+bwd {name}", ours_fb, torch_fb, "torch conv2d + autograd", target),
        ]
    return out


def norm_cases(d: Device, quick: bool) -> list[Case]:
    from .bench_norm import torch_cases, training_steps

    n, c, h, w = (2, 4, 3, 3) if quick else (64, 64, 50, 50)
    groups = 2 if quick else 32
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    weight, bias = (rng.standard_normal(c, dtype=np.float32) for _ in range(2))
    lweight, lbias = (rng.standard_normal((c, h, w), dtype=np.float32) for _ in range(2))
    ox, ody, ow, ob, olw, olb = (d.ours(a) for a in (x, dy, weight, bias, lweight, lbias))
    orm, orv = d.ours(np.zeros(c, np.float32)), d.ours(np.ones(c, np.float32))
    tx = d.ref(x, grad=True)
    tdy = d.ref(dy)
    tw, tb, tlw, tlb = (d.ref(a, grad=True) for a in (weight, bias, lweight, lbias))
    trm, trv = d.ref(np.zeros(c, np.float32)), d.ref(np.ones(c, np.float32))

    steps = training_steps(ox, ody, ow, ob, olw, olb, orm, orv, groups)
    return torch_cases(steps, (tx, tdy, tw, tb, tlw, tlb, trm, trv), groups,
                       "x".join(map(str, x.shape)), 5 * x.nbytes)


POOLS = [
    ("LeNet pool1 2x2", (64, 6, 28, 28), 2, 2, 0),
    ("LeNet pool1 2x2", (256, 6, 28, 28), 2, 2, 0),
    ("LeNet pool2 2x2", (64, 16, 10, 10), 2, 2, 0),
    ("ResNet stem 3x3 s2 p1", (8, 64, 112, 112), 3, 2, 1),
]
QUICK_POOLS = [("tiny 2x2", (1, 2, 4, 4), 2, 2, 0)]


def pool_loss_cases(d: Device, quick: bool) -> list[Case]:
    import torch
    import torch.nn.functional as F

    import kernels

    out = []
    for name, shape, k, s, p in QUICK_POOLS if quick else POOLS:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        y = F.max_pool2d(torch.from_numpy(x), k, s, p)
        g = rng.standard_normal(tuple(y.shape), dtype=np.float32)
        ox, og, tx, tg = d.ours(x), d.ours(g), d.ref(x, grad=True), d.ref(g)

        def ours(ox=ox, og=og, k=k, s=s, p=p, shape=shape):
            _, indices = kernels.max_pool2d(ox, k, s, p)
            return kernels.max_pool2d_backward(og, indices, shape)

        def reference(tx=tx, tg=tg, k=k, s=s, p=p):
            yt, _ = F.max_pool2d(tx, k, s, p, return_indices=True)
            return torch.autograd.grad(yt, tx, tg)

        moved = x.nbytes * 2 + y.numel() * (4 * 3 + 8 * 2)
        out.append(Case(f"max_pool2d fwd+bwd {name} {'x'.join(map(str, shape))}", ours,
                        reference, "torch max_pool2d + autograd", 1.0, moved))
    for n, c in [(4, 3)] if quick else [(64, 10), (1024, 1000)]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, c), dtype=np.float32)
        target = rng.integers(0, c, n)
        ox, ot, tx, tt = d.ours(x), d.ours(target), d.ref(x, grad=True), d.ref(target)

        def ours_ce(ox=ox, ot=ot):
            h = kernels.relu(ox)
            kernels.cross_entropy(h, ot)
            return kernels.relu_backward(kernels.cross_entropy_backward(h, ot), ox)

        out.append(Case(f"relu + cross_entropy fwd+bwd {n}x{c}", ours_ce,
                        lambda tx=tx, tt=tt: torch.autograd.grad(
                            F.cross_entropy(F.relu(tx), tt), tx),
                        "torch relu + cross_entropy + autograd", 1.0))
    return out


OPTIMIZERS = [  # name, hyperparameters, arrays read + written per step, torch has fused
    ("SGD", dict(lr=1e-3, momentum=0.9), 5, True),
    ("Adagrad", dict(lr=1e-2), 5, True),
    ("RMSprop", dict(lr=1e-2), 5, False),
    ("Adam", dict(lr=1e-3), 7, True),
    ("AdamW", dict(lr=1e-3), 7, True),
]


def optimizer_cases(d: Device, quick: bool) -> list[Case]:
    """A 10M-parameter step: ours, one fused kernel, against torch.optim with
    ``foreach=True`` and, where torch has one for CUDA, ``fused=True``."""
    import torch

    from kernels import optim

    n = 1000 if quick else 10_000_000
    out = []
    for name, kw, arrays, fused in OPTIMIZERS:
        rng = np.random.default_rng(0)
        p = rng.standard_normal(n, dtype=np.float32)
        g = rng.standard_normal(n, dtype=np.float32)
        op, og = d.ours(p), d.ours(g)
        ours = getattr(optim, name)([op], **kw)
        modes = ["foreach"] + (["fused"] if fused and d.gpu else [])
        for mode in modes:
            tp = d.ref(p, grad=True)
            tp.grad = d.ref(g)
            topt = getattr(torch.optim, name)([tp], **kw, **{mode: True})
            try:
                topt.step()
            except RuntimeError:  # e.g. Adagrad(fused=True) is CPU-only in torch
                continue
            out.append(Case(f"{name} step {n:,} f32 vs {mode}",
                            lambda ours=ours, og=og: ours.step([og]), topt.step,
                            f"torch.optim.{name}({mode}=True)", 1.0, arrays * 4 * n))
    return out


FAMILIES = [correlate_cases, conv_cases, norm_cases, pool_loss_cases, optimizer_cases]


def copy_bandwidth(d: Device, quick: bool) -> float:
    """Bytes read + written per second by a device-to-device copy of 1 GiB (torch's)."""
    torch = d.torch
    n = 1 << (10 if quick else 28)
    src = torch.ones(n, device="cuda" if d.gpu else "cpu")
    dst = torch.empty_like(src)
    t = gpu_time(lambda: dst.copy_(src), d.sync, batches=3 if quick else 7)
    return 2 * 4 * n / t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--only", help="run only the cases whose name has this")
    parser.add_argument("--json", type=Path, help="also write the timings here")
    args = parser.parse_args()

    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    d = Device()
    bandwidth = copy_bandwidth(d, args.quick)
    cases = [c for family in FAMILIES for c in family(d, args.quick)
             if args.only is None or args.only in c.name]
    rows = []
    for case in track(cases, description="timing", transient=True):
        ours_s, ref_s = run(case, d.sync, args.quick)
        rows.append((case, ours_s, ref_s))

    import numba
    import torch

    table = Table(title=f"CUDA kernels vs torch — {d.name}, torch {torch.__version__}, "
                        f"numba {numba.__version__}; copy bandwidth "
                        f"{bandwidth / 1e9:,.0f} GB/s", title_justify="left")
    for col in ("case", "ours", "reference", "ref time", "ratio", "target", "GB/s ours",
                "of copy"):
        table.add_column(col, justify="left" if col in ("case", "reference") else "right")
    records = []
    for case, ours_s, ref_s in rows:
        ratio = ref_s / ours_s
        ok = case.target is None or ratio >= case.target
        gbps = None if case.bytes_moved is None else case.bytes_moved / ours_s
        table.add_row(case.name, f"{ours_s * 1e3:.3f} ms", case.reference_name,
                      f"{ref_s * 1e3:.3f} ms", f"[{'green' if ok else 'red'}]{ratio:.2f}x[/]",
                      "" if case.target is None else f"≥ {case.target:g}x",
                      "" if gbps is None else f"{gbps / 1e9:,.0f}",
                      "" if gbps is None else f"{gbps / bandwidth:.0%}")
        records.append({"case": case.name, "ours_s": ours_s, "reference": case.reference_name,
                        "reference_s": ref_s, "ratio": ratio,
                        "gbps": None if gbps is None else gbps / 1e9})
    Console(width=200).print(table)
    if args.json:
        args.json.write_text(json.dumps({"device": d.name, "copy_gbps": bandwidth / 1e9,
                                         "cases": records}, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS", "0")  # tiny grids are the point
    sys.exit(main())
