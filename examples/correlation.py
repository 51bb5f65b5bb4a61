"""2-D cross-correlation with ``kernels.correlate2d``: the correlation and normalization
homework, problem 2 (d)-(g).

    python examples/correlation.py [--cases 6] [--max-size 160] [--downsample 1] [--seed 0]
                                   [--out out/correlation]

(d) ours against ``scipy.signal.correlate2d`` (mode="full") on random cases: the
    largest absolute difference and the time ratio scipy / ours.
(e) the gradient magnitude sqrt(G1² + G2²) of skimage's camera image (it stands in
    for scipy's "ascent", which scipy.datasets would download), with the
    problem's X1 = [[-3,0,3],[-10,0,10],[-3,0,3]] and X2 = X1ᵀ, plotted beside the
    image and beside scipy's doc version (convolve2d with the complex Scharr
    filter, boundary="symm"): X1 and X2 are that filter's real and imaginary parts,
    and convolving instead of correlating only flips their signs, so the two
    magnitudes agree everywhere except the one-pixel border.
(f) template matching as in scipy's correlate2d example: a mean-free patch of the
    (mean-free, noisy) image, correlated over it; the argmax is the match.
(g) multichannel correlation, H = W = D = 50, h = w = 3: the sum over d of 2-D
    correlations, against torch.nn.functional.conv2d and kernels.conv2d with
    padding h - 1 (why that is the full correlation: see ``multichannel``).

The problem writes X ⋆ Y for "X slides over a fixed Y", which is
``scipy.signal.correlate2d(Y, X)``: image first, filter second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

X1 = np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], dtype=np.float64)
X2 = X1.T


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every option's default, except the empty ones (None)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line and exits 2."""

    def error(self, message):
        from cnncalc.cli import clip  # a value thousands of characters long is cut short
        self.exit(2, f"Error: {clip(message)}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = _Parser(description="The correlation and normalization homework, problem 2: "
                "kernels.correlate2d against scipy and torch.",
                formatter_class=_Defaults)
    p.add_argument("--cases", type=_positive, default=6, help="random cases for (d)")
    p.add_argument("--max-size", type=_positive, default=160,
                   help="largest side of a random case's image")
    p.add_argument("--downsample", type=_positive, default=1,
                   help="keep every k-th pixel of the 512×512 camera image (for quick runs)")
    p.add_argument("--seed", type=int, default=0, help="draws the random cases")
    p.add_argument("--out", type=Path, default=Path("out/correlation"), help="plot folder")
    return p.parse_args(argv)


def best_time(f, *args, repeat: int = 3) -> tuple[float, object]:
    """The fastest of ``repeat`` calls (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def random_cases(n: int, max_size: int, rng, progress) -> list[dict]:
    """(d): random image/filter pairs, either order of size, full mode."""
    import scipy.signal

    import kernels

    kernels.correlate2d(np.ones((4, 4)), np.ones((2, 2)))  # compile outside the timings
    rows = []
    task = progress.add_task("(d) random cases", total=n)
    for i in range(n):
        big = tuple(int(v) for v in rng.integers(max(2, max_size // 4), max_size + 1, 2))
        small = tuple(int(v) for v in rng.integers(1, 16, 2))
        a_shape, v_shape = (big, small) if i % 3 else (small, big)  # every third swapped
        a, v = rng.standard_normal(a_shape), rng.standard_normal(v_shape)
        t_ours, ours = best_time(kernels.correlate2d, a, v, "full")
        t_ref, ref = best_time(scipy.signal.correlate2d, a, v, "full")
        rows.append({"in1": a_shape, "in2": v_shape, "max_abs_diff": float(abs(ours - ref).max()),
                     "ratio": t_ref / t_ours, "ours_s": t_ours, "scipy_s": t_ref})
        progress.advance(task)
    return rows


def gradient_magnitude(image: np.ndarray) -> dict:
    """(e): sqrt((X1 ⋆ Y)² + (X2 ⋆ Y)²), full mode, and scipy's doc version."""
    import scipy.signal

    import kernels

    g1 = kernels.correlate2d(image, X1, "full")
    g2 = kernels.correlate2d(image, X2, "full")
    magnitude = np.sqrt(g1**2 + g2**2)
    ref_full = np.hypot(scipy.signal.correlate2d(image, X1, "full"),
                        scipy.signal.correlate2d(image, X2, "full"))
    scharr = X1 + 1j * X2
    doc = np.abs(scipy.signal.convolve2d(image, scharr, boundary="symm", mode="same"))
    inner = magnitude[1:-1, 1:-1]  # the "same" window of the full result
    return {"magnitude": magnitude, "doc": doc,
            "max_abs_diff_scipy": float(abs(magnitude - ref_full).max()),
            "interior_diff_doc": float(abs(inner[1:-1, 1:-1] - doc[1:-1, 1:-1]).max()),
            "border_diff_doc": float(abs(inner - doc).max())}


def template_match(image: np.ndarray, rng, corner=(60, 220), size=(49, 49)) -> dict:
    """(f): scipy's correlate2d example on the camera image (zero fill, ``same``).

    ``corner`` and ``size`` (odd) locate the template, the cameraman's head, in
    the full 512×512 image; they are scaled down with the image."""
    import scipy.signal

    import kernels

    scale = image.shape[0] / 512
    corner = tuple(int(c * scale) for c in corner)
    size = tuple(int(m * scale) | 1 for m in size)
    y = image - image.mean()
    template = y[corner[0]:corner[0] + size[0], corner[1]:corner[1] + size[1]].copy()
    template -= template.mean()
    noisy = y + rng.standard_normal(y.shape) * 50
    t_ours, ours = best_time(kernels.correlate2d, noisy, template, "same", repeat=1)
    t_ref, ref = best_time(scipy.signal.correlate2d, noisy, template, "same", repeat=1)
    found = np.unravel_index(np.argmax(ours), ours.shape)
    found_ref = np.unravel_index(np.argmax(ref), ref.shape)
    # "same" keeps full[m2 // 2 :], and the full correlation peaks at corner + m2 - 1, so
    # the match shows at corner + m2 - 1 - m2 // 2: the centre pixel for an odd template
    truth = tuple(c + m - 1 - m // 2 for c, m in zip(corner, size))
    return {"noisy": noisy, "template": template, "corr": ours,
            "found": tuple(map(int, found)), "found_scipy": tuple(map(int, found_ref)),
            "truth": truth, "max_abs_diff": float(abs(ours - ref).max()),
            "peak": float(abs(ref).max()), "ratio": t_ref / t_ours,
            "ours_s": t_ours, "scipy_s": t_ref}


def multichannel(rng, size: int = 50, depth: int = 50, k: int = 3) -> dict:
    """(g): Σ_d X[:,:,d] ⋆ Y[:,:,d] (b = 0), against conv2d with padding k - 1.

    torch's conv2d is itself a correlation (no flip) of the zero-padded input:
    out[i, j] = Σ_{d,p,q} Y_pad[d, i+p, j+q] X[d, p, q]. With k - 1 zeros on each
    side, the first window overlaps Y only at its corner, and the output has
    H + 2(k-1) - k + 1 = H + k - 1 rows: exactly the full correlation."""
    import torch

    import kernels

    Y = rng.standard_normal((size, size, depth))  # H × W × D, as the problem writes it
    X = rng.standard_normal((k, k, depth))
    ours = sum(kernels.correlate2d(Y[:, :, d], X[:, :, d], "full") for d in range(depth))
    y_nchw = np.ascontiguousarray(Y.transpose(2, 0, 1)[None])  # 1 × D × H × W
    x_oihw = np.ascontiguousarray(X.transpose(2, 0, 1)[None])  # 1 × D × h × w
    ref = torch.nn.functional.conv2d(torch.from_numpy(y_nchw), torch.from_numpy(x_oihw),
                                     padding=k - 1)[0, 0].numpy()
    conv = kernels.conv2d(y_nchw, x_oihw, padding=k - 1)[0, 0]
    return {"shape": ours.shape, "expected_shape": (size + k - 1, size + k - 1),
            "diff_torch": float(abs(ours - ref).max()), "diff_conv2d": float(abs(conv - ref).max())}


def plot_gradient(image, grad, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.5), constrained_layout=True)
    panels = [(image, "camera (Y)"),
              (grad["magnitude"], "ours: √(G1² + G2²), full, zero fill"),
              (grad["doc"], "scipy doc: |Y * Scharr|, same, symm")]
    vmax = np.percentile(grad["doc"], 99.5)  # a few strong edges would darken the rest
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(img, cmap="gray", vmax=vmax if img is not image else None)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def plot_template(match, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), constrained_layout=True)
    axes[0].imshow(match["noisy"], cmap="gray")
    axes[0].set_title("noisy image", fontsize=9)
    axes[1].imshow(match["template"], cmap="gray")
    axes[1].set_title("template", fontsize=9)
    axes[2].imshow(match["corr"], cmap="gray")
    axes[2].set_title("cross-correlation (ours)", fontsize=9)
    for ax in (axes[0], axes[2]):
        (y, x), (ys, xs) = match["found"], match["found_scipy"]
        ax.plot(x, y, "ro", markersize=9, fillstyle="none", label="ours")
        ax.plot(xs, ys, "c+", markersize=9, label="scipy")
    axes[2].legend(loc="lower right", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def report(console, cases, grad, match, multi) -> None:
    from rich.table import Table

    table = Table(title="(d) kernels.correlate2d vs scipy.signal.correlate2d, mode='full'")
    for col in ("in1", "in2", "max |ours - scipy|", "scipy s", "ours s", "scipy / ours"):
        table.add_column(col, justify="right")
    for r in cases:
        table.add_row("×".join(map(str, r["in1"])), "×".join(map(str, r["in2"])),
                      f"{r['max_abs_diff']:.2e}", f"{r['scipy_s']:.4f}", f"{r['ours_s']:.4f}",
                      f"{r['ratio']:.1f}×")
    console.print(table)
    console.print(f"(e) gradient magnitude: max |ours - scipy| = {grad['max_abs_diff_scipy']:.2e}; "
                  f"against scipy's doc version: {grad['interior_diff_doc']:.2e} inside, "
                  f"{grad['border_diff_doc']:.0f} on the border (zero fill vs symm): "
                  "the same picture except the boundary.")
    console.print(f"(f) template centre {match['truth']}: ours found {match['found']}, "
                  f"scipy found {match['found_scipy']}; max |ours - scipy| = "
                  f"{match['max_abs_diff']:.2e} (values up to {match['peak']:.2e}); "
                  f"scipy {match['scipy_s']:.2f} s, ours {match['ours_s']:.2f} s "
                  f"({match['ratio']:.1f}×)")
    console.print(f"(g) multichannel 50×50×50 ⋆ 3×3×50: output {multi['shape']} "
                  f"(expected {multi['expected_shape']}); max |Σ_d 2-D - torch conv2d(padding=2)|"
                  f" = {multi['diff_torch']:.2e}, max |kernels.conv2d - torch| = "
                  f"{multi['diff_conv2d']:.2e}")


def main(argv=None) -> dict:
    """Run (d)-(g), print the figures, write the plots; returns the numbers for tests."""
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("correlation.py: interrupted; nothing saved (the plots are written at the end)",
              file=sys.stderr)
        raise SystemExit(130) from None  # the shell's status for Ctrl-C


def run(args) -> dict:
    from rich.console import Console
    from rich.progress import Progress
    from skimage import data

    console = Console()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    image = data.camera()[::args.downsample, ::args.downsample].astype(np.float64)
    with Progress(console=console, transient=True) as progress:
        cases = random_cases(args.cases, args.max_size, rng, progress)
        task = progress.add_task("(e)-(g)", total=3)
        grad = gradient_magnitude(image)
        progress.advance(task)
        match = template_match(image, rng)
        progress.advance(task)
        multi = multichannel(rng)
        progress.advance(task)
    report(console, cases, grad, match, multi)
    plot_gradient(image, grad, args.out / "gradient.png")
    plot_template(match, args.out / "template.png")
    console.print(f"plots: {args.out / 'gradient.png'}, {args.out / 'template.png'}")
    return {"cases": cases,
            "gradient": {k: v for k, v in grad.items() if k not in ("magnitude", "doc")},
            "template": {k: v for k, v in match.items()
                         if k not in ("noisy", "template", "corr")},
            "multichannel": multi}


if __name__ == "__main__":
    main()
