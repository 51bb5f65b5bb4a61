"""The correlation and normalization homework, problem 3: the normalization zoo, ours against torch.

    python examples/norm_zoo.py [--shape 64x64x50x50] [--groups 8] [--seed 0] [--out out/norm_zoo]

Batch, layer, instance and group norm (``kernels.batch_norm`` ... ``group_norm``,
γ = 1, β = 0) on a random N×C×H×W tensor (the problem's H(50)×W(50)×C(64)×N(64),
in PyTorch's NCHW order), against ``torch.nn.functional``, with ε = 0 and
ε = 1e-5. The table gives the problem's relative difference (3),
‖vec X − vec Y‖₂ / max(‖vec X‖₂, ‖vec Y‖₂), the same against the definition (2)
computed in float64 with NumPy (both sit at float32 rounding), and the times.

Each norm is x̂ = (x − μ) / √(σ² + ε) over a different slice (the problem's Fig. 2):
batch norm per channel over (N, H, W); layer norm per example over (C, H, W);
instance norm per (example, channel) over (H, W); group norm per (example, group
of C/G channels). torch refuses ε = 0 for batch norm in training, so its ε = 0
column uses ε = 1e-30 there (far below one rounding step of σ² ≈ 1/12).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

EPSILON_NOTE = """\
Why ε? x̂ = (x − μ)/σ divides by the slice's standard deviation. A constant
slice (a dead channel after ReLU, a blank image, a single value per slice)
has σ = 0, so x̂ = 0/0 = nan, and the nan spreads to all that follows. A nearly
constant slice is almost as bad: 1/σ is huge and amplifies rounding noise.
With ε the gain 1/√(σ² + ε) is at most 1/√ε, and a constant slice maps to 0.
For random data σ² ≈ 1/12 ≫ 1e-5, so ε = 0 and ε = 1e-5 barely differ."""


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every option's default, except the empty ones (None)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line and exits 2."""

    def error(self, message):
        from cnncalc.cli import clip  # a value thousands of characters long is cut short
        self.exit(2, f"Error: {clip(message)}\n")


def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NxCxHxW, got {text!r}") from None
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected four positive sizes NxCxHxW, got {text!r}")
    return dims


def parse_args(argv=None) -> argparse.Namespace:
    p = _Parser(description="The correlation and normalization homework, problem 3: "
                "batch/layer/instance/group norm vs torch.",
                formatter_class=_Defaults)
    p.add_argument("--shape", type=_shape, default="64x64x50x50", help="N x C x H x W")
    p.add_argument("--groups", type=int, default=8, help="groups for group norm")
    p.add_argument("--seed", type=int, default=0, help="draws the input")
    p.add_argument("--out", type=Path, default=Path("out/norm_zoo"), help="plot folder")
    args = p.parse_args(argv)
    c = args.shape[1]
    if args.groups < 1 or c % args.groups:
        p.error(f"argument --groups: {args.groups} does not divide C = {c}")
    if args.shape[0] * args.shape[2] * args.shape[3] < 2 or args.shape[2] * args.shape[3] < 2:
        p.error("argument --shape: batch and instance norm need more than one value per slice")
    return args


def relative_difference(x: np.ndarray, y: np.ndarray) -> float:
    """The problem's (3): ‖vec(X) − vec(Y)‖₂ / max(‖vec(X)‖₂, ‖vec(Y)‖₂), in float64."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    return float(np.linalg.norm(x - y) / max(np.linalg.norm(x), np.linalg.norm(y)))


def norms(groups: int):
    """name -> (ours(x, eps), torch's(t, eps)), with γ = 1, β = 0 (no affine)."""
    import torch.nn.functional as F

    import kernels

    return {
        "batch": (lambda x, e: kernels.batch_norm(x, training=True, eps=e),
                  lambda t, e: F.batch_norm(t, None, None, training=True, eps=max(e, 1e-30))),
        "layer": (lambda x, e: kernels.layer_norm(x, x.shape[1:], eps=e),
                  lambda t, e: F.layer_norm(t, t.shape[1:], eps=e)),
        "instance": (lambda x, e: kernels.instance_norm(x, eps=e),
                     lambda t, e: F.instance_norm(t, eps=e)),
        f"group({groups})": (lambda x, e: kernels.group_norm(x, groups, eps=e),
                             lambda t, e: F.group_norm(t, groups, eps=e)),
    }


def definition(x: np.ndarray, axes: tuple[int, ...], eps: float, groups: int = 0) -> np.ndarray:
    """The problem's (2) in float64: (x − μ)/√(σ² + ε) over ``axes`` (biased σ²); with
    ``groups`` the channels are first split into that many groups."""
    shape = x.shape
    x = x.astype(np.float64)
    if groups:
        n, c = x.shape[:2]
        x = x.reshape(n, groups, c // groups, *x.shape[2:])
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y.reshape(shape)


DEFINITION_AXES = {"batch": ((0, 2, 3), 0), "layer": ((1, 2, 3), 0), "instance": ((2, 3), 0)}


def timed(f, *args):
    t0 = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - t0


def compare(x: np.ndarray, groups: int, progress) -> list[dict]:
    """Each norm, each ε: relative difference ours vs torch, and the times."""
    import torch

    t = torch.from_numpy(x)
    small = np.ascontiguousarray(x[:2, :, :4, :4])
    rows = []
    cases = norms(groups)
    task = progress.add_task("norms", total=2 * len(cases))
    for name, (ours, ref) in cases.items():
        ours(small, 1e-5)  # compile outside the timing
        row = {"norm": name}
        for eps in (0.0, 1e-5):
            y, t_ours = timed(ours, x, eps)
            with torch.no_grad():
                r, t_ref = timed(ref, t, eps)
            row[eps] = relative_difference(y, r.numpy())
            row[f"t_ours_{eps}"], row[f"t_torch_{eps}"] = t_ours, t_ref
            if eps:
                axes, g = DEFINITION_AXES.get(name, ((2, 3, 4), groups))
                exact = definition(x, axes, eps, g)
                row["ours_vs_f64"] = relative_difference(y, exact)
                row["torch_vs_f64"] = relative_difference(r.numpy(), exact)
            progress.advance(task)
        rows.append(row)
    return rows


def epsilon_demo() -> dict:
    """Layer norm of a batch whose first example is constant: nan without ε, 0 with it."""
    import torch
    import torch.nn.functional as F

    import kernels

    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    x[0] = 0.5
    out = {}
    for eps in (0.0, 1e-5):
        ours = kernels.layer_norm(x, x.shape[1:], eps=eps)
        ref = F.layer_norm(torch.from_numpy(x), x.shape[1:], eps=eps).numpy()
        out[eps] = {"ours_nan": bool(np.isnan(ours[0]).all()),
                    "torch_nan": bool(np.isnan(ref[0]).all()),
                    "ours_first": float(ours[0].ravel()[0]),
                    "torch_first": float(ref[0].ravel()[0]),
                    "rest_diff": relative_difference(ours[1], ref[1])}
    return out


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), constrained_layout=True)
    names = [r["norm"] for r in rows]
    pos = np.arange(len(rows))
    for k, eps in enumerate((0.0, 1e-5)):
        ax.bar(pos + (k - 0.5) * 0.38, [max(r[eps], 1e-18) for r in rows], width=0.38,
               label=f"ε = {eps:g}")
    ax.set_yscale("log")
    ax.set_xticks(pos, names)
    ax.set_ylabel("relative difference (3), ours vs torch")
    ax.legend()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> dict:
    """Compare the four norms with torch, explain ε; returns the numbers for tests."""
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("norm_zoo.py: interrupted; nothing saved (the plot is written at the end)",
              file=sys.stderr)
        raise SystemExit(130) from None  # the shell's status for Ctrl-C


def run(args) -> dict:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(args.seed).random(args.shape, dtype=np.float32)
    with Progress(console=console, transient=True) as progress:
        rows = compare(x, args.groups, progress)
    n, c, h, w = args.shape
    table = Table(title=f"relative difference (3), ours vs torch; x ~ U(0,1), float32, "
                        f"N×C×H×W = {n}×{c}×{h}×{w}; (2) in float64, ε = 1e-5",
                  title_justify="left")
    for col in ("norm", "ε = 0", "ε = 1e-5", "ours vs (2)", "torch vs (2)",
                "ours s", "torch s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["norm"], f"{r[0.0]:.2e}", f"{r[1e-5]:.2e}", f"{r['ours_vs_f64']:.2e}",
                      f"{r['torch_vs_f64']:.2e}", f"{r['t_ours_1e-05']:.3f}",
                      f"{r['t_torch_1e-05']:.3f}")
    console.print(table)
    console.print(EPSILON_NOTE)
    demo = epsilon_demo()
    for eps, d in demo.items():
        console.print(f"Demo, ε = {eps:g}: layer norm of a constant example gives ours "
                      f"{'nan' if d['ours_nan'] else d['ours_first']}, torch "
                      f"{'nan' if d['torch_nan'] else d['torch_first']}; the other example "
                      f"agrees to {d['rest_diff']:.1e}.")
    plot(rows, args.out / "norm_zoo.png")
    console.print(f"plot: {args.out / 'norm_zoo.png'}")
    return {"rows": rows, "demo": demo}


if __name__ == "__main__":
    main()
