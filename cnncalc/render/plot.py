"""Draw :mod:`cnncalc.charts` data with matplotlib: PNG, SVG or PDF by the file's extension.

matplotlib is imported here only, when a plot is asked for, and used through its
object-oriented API (a ``Figure`` on the Agg canvas): no pyplot, no global backend
switched in the caller's process. The file is written whole or not at all (a temporary
file beside it, then ``os.replace``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CnnCalcError
from ..files import write_atomic

PLOT_FORMATS = ("png", "svg", "pdf")
# colours of the stacked training memory, bottom to top
_STACK = (("params", "parameters and buffers", "#9e9e9e"),
          ("optimizer", "optimizer state", "#ffb74d"),
          ("grads", "gradients", "#e57373"),
          ("saved", "activations kept for backward", "#64b5f6"))
_BARS = {"macs": "#5c6bc0", "params": "#26a69a", "activation_bytes": "#8d6e63"}
MAX_TICK_LABELS = 48  # more layers than this: label every k-th bar


def plot_format(path: str) -> str:
    """The format named by ``path``'s extension, or a clear error."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise CnnCalcError(f"--plot: {path!r} should end in .png, .svg or .pdf")
    return ext


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CnnCalcError("--plot needs matplotlib: pip install 'cnncalc[examples]' "
                           "(or pip install matplotlib)") from None


def check_target(path: str) -> str:
    """Fail before any analysis if the plot could not be written; return its format."""
    fmt = plot_format(path)
    folder = Path(path).parent
    if not folder.is_dir():
        raise CnnCalcError(f"--plot: the folder {str(folder)!r} does not exist")
    require_matplotlib()
    return fmt


def draw(charts, path: str) -> None:
    """One column per chart (two for ``compare``): the per-layer bars, then the training
    step's memory. Rows of the figure share their y-axis across columns."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fmt = plot_format(path)
    n_bars = len(charts[0].bars)
    width = max(8.0, min(18.0, 4.0 + 0.06 * max(len(c.names) for c in charts))) * len(charts)
    fig = Figure(figsize=(width, 2.6 * (n_bars + 1.4)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_bars + 1, len(charts), squeeze=False,
                        gridspec_kw={"height_ratios": [1] * n_bars + [1.6]})
    for col, c in enumerate(charts):
        for row, series in enumerate(c.bars):
            _bars(axes[row][col], c, series, last=row == n_bars - 1)
        _timeline(axes[n_bars][col], c.timeline)
        axes[0][col].set_title(c.title)
        if c.uncosted:
            names = ", ".join(f"{name or kind} ({kind})" for name, kind in c.uncosted)
            axes[0][col].text(0, 1.02, f"could not cost (see the table): {names}", color="#c62828",
                              fontsize=7, transform=axes[0][col].transAxes, va="bottom",
                              wrap=True)
    if len(charts) > 1:
        for row in axes:
            _one_scale(row)
    for row, series in enumerate(charts[0].bars):
        for ax in axes[row]:
            log = " (log)" if ax.get_yscale() == "log" else ""
            ax.set_ylabel(series.label + log, fontsize=8)
    _write(fig, path, fmt)


def _one_scale(axes) -> None:
    """Side by side on one y-scale: log for all if any wants it, and the widest range."""
    if any(ax.get_yscale() == "log" for ax in axes):
        for ax in axes:
            ax.set_yscale("log")
            ax.autoscale_view()
    low = min(ax.get_ylim()[0] for ax in axes)
    top = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(low, top)


def _ticks(ax, names, last: bool, offset: float = 0.0) -> None:
    """Every name, or every k-th when there are many; ``offset`` centres them on steps."""
    step = max(1, -(-len(names) // MAX_TICK_LABELS))
    ax.set_xticks([i + offset for i in range(0, len(names), step)])
    if last:
        ax.set_xticklabels(names[::step], rotation=90, fontsize=6)
    else:
        ax.set_xticklabels([])


def _bars(ax, c, series, last: bool) -> None:
    ax.bar(range(len(series.values)), series.values, width=0.8,
           color=_BARS.get(series.quantity, "#5c6bc0"))
    if series.log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    _ticks(ax, c.names, last)
    ax.set_xlim(-0.6, len(c.names) - 0.4)


def _timeline(ax, t) -> None:
    """Step i holds its memory over [i, i + 1): a staircase, the last step included."""
    x = range(len(t.steps) + 1)
    ax.stackplot(x, *((*getattr(t, key), getattr(t, key)[-1]) for key, _, _ in _STACK),
                 labels=[label for _, label, _ in _STACK],
                 colors=[colour for _, _, colour in _STACK], step="post")
    ax.axvline(t.forward_steps, color="black", lw=0.8, ls="--")
    peak, at = t.peak
    ax.annotate(f"peak {_mib(peak)}", (at + 0.5, peak), xytext=(4, -12),
                textcoords="offset points", fontsize=8)
    ax.set_ylabel("memory held [B]", fontsize=8)
    ax.set_xlabel("training step: forward →, then backward ←", fontsize=8)
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    _ticks(ax, t.steps, True, 0.5)
    ax.set_xlim(0, len(t.steps))


def _mib(n: int) -> str:
    return f"{n:,} B ({n / 2**20:.3g} MiB)"


def _write(fig, path: str, fmt: str) -> None:
    write_atomic(path, lambda handle: fig.savefig(handle, format=fmt, dpi=120), "--plot")
