"""The data behind the pictures: share columns, --plot bars and the training timeline.

The bars are checked against the analysis' own rows (whose numbers the other test
files check against torch), and the drawn figure against the bars, patch by patch;
the timeline against the totals it must reach. No pixels are compared.
"""

from __future__ import annotations

import re
import sys
import textwrap
from fractions import Fraction

import pytest
from cli_helpers import run_any, run_ok

from cnncalc import analyze
from cnncalc.charts import chart, shares, spans_decades, timeline
from cnncalc.errors import CnnCalcError

LENET = ("conv(6,k=5), relu, maxpool(2), conv(16,k=5), relu, maxpool(2), flatten, "
         "fc(120), relu, fc(84), relu, fc(10)")
RESIDUAL = "conv(16,k=3,p=1), bn, relu, residual(conv(16,k=3,p=1), bn, relu, conv(16,k=3,p=1), bn)"


def lenet(**kw):
    return analyze(LENET, input="3x32x32", **kw)


# -- the share column ----------------------------------------------------------------------

def test_shares_are_exact_and_add_up_to_one():
    a = lenet()
    macs = shares(a, "macs")
    # LeNet-5's conv1 on 3x32x32: 5*5*3*6 MACs at each of 28*28 outputs
    assert macs[0] == Fraction(5 * 5 * 3 * 6 * 28 * 28, int(a.total["macs"]))
    assert sum(macs) == 1 and sum(shares(a, "training_bytes")) == 1


def test_no_share_for_a_symbolic_or_empty_total():
    assert shares(analyze("conv(K,k=3)", input="CxHxW"), "macs") is None
    assert shares(analyze("relu, flatten", input="3x4x4"), "macs") is None


def _table_text(a, width, training=False):
    from rich.console import Console

    from cnncalc.render.table import analysis_table
    console = Console(width=width, record=True, color_system=None)
    console.print(analysis_table(a, training=training, width=width))
    return console.export_text()


def _percent(part: int, whole: int) -> str:
    """How a share is written: 0%, <0.1% for a sliver, else one decimal."""
    return "0%" if part == 0 else "<0.1%" if 1000 * part < whole else f"{100 * part / whole:.1f}%"


def _share_cells(text: str, column: int) -> dict[str, str]:
    """layer name -> the text of the share column ``column`` (counted from the right)."""
    cells = {}
    for line in text.splitlines():
        parts = line.split("│")
        if len(parts) > 3 and parts[2].strip():
            cells[parts[2].strip()] = parts[-1 - column].strip()
    return cells


def test_share_bars_follow_the_macs(capsys):
    a = lenet()
    cells = _share_cells(_table_text(a, 160), 1)
    macs = {r.name: int(r.macs) for r in a.layers}
    heaviest = max(macs.values())
    for name, m in macs.items():
        bar, _, pct = cells[name].rpartition(" ")
        assert pct == _percent(m, int(a.total["macs"])), name
        # ten cells for the heaviest layer, in eighths for the rest
        assert len(bar.strip().replace(" ", "")) == -(-round(80 * m / heaviest) // 8), name
    assert cells["total"] == "100%"


def test_training_adds_a_memory_share():
    a = lenet(optimizer="adam")
    cells = _share_cells(_table_text(a, 260, training=True), 1)
    total = int(a.total["training_bytes"])
    for r in a.layers:
        assert cells[r.name].split()[-1] == _percent(int(r.training_bytes), total), r.name


def test_narrow_consoles_drop_the_bar_then_the_column():
    """The bar narrows to make room, then goes; the rest of the table stays as it was."""
    from rich.console import Console

    from cnncalc.render.table import _table
    a = lenet()
    assert "share" not in _table_text(a, 80)
    natural = Console(width=1000).measure(_table(a, False, False, [], 0)).maximum
    text = _table_text(a, natural + 9)  # room for a percentage, not for a bar
    assert "MACs" in text and "█" not in text and max(map(len, text.splitlines())) <= natural + 9
    assert "54.1%" in text  # conv1: 352,800 of 651,720 MACs


def test_piped_table_shows_the_bars(capsys):
    out = run_ok(["params", "--model", "lenet5"], capsys)
    assert "MACs share" in out and "██████████" in out


# -- --plot: the data ----------------------------------------------------------------------

def test_bars_are_the_analysis_numbers():
    a = lenet(dtype="float16")
    c = chart(a)
    bars = {s.quantity: s.values for s in c.bars}
    assert c.names == tuple(r.name for r in a.layers)
    assert bars["macs"] == tuple(int(r.macs) for r in a.layers)
    assert bars["params"] == tuple(int(r.params) for r in a.layers)
    assert bars["activation_bytes"] == tuple(2 * int(r.activations) for r in a.layers)
    assert sum(bars["params"]) == 62_006  # LeNet-5 with biases, as published


def test_log_axis_only_when_values_span_decades():
    assert spans_decades([1, 0, 100]) and not spans_decades([3, 0, 299])
    assert not spans_decades([0, 0])


@pytest.mark.parametrize("optimizer, freeze", [("sgd", None), ("adam", "0-3")])
def test_timeline_reaches_the_analysis_totals(optimizer, freeze):
    a = analyze(RESIDUAL, input="3x16x16", batch=4, optimizer=optimizer, freeze=freeze)
    t = timeline(a)
    n, total = len(a.layers), a.total
    assert len(t.steps) == 2 * n and t.forward_steps == n
    assert set(t.params) == {int(total["param_bytes"] + total["buffer_bytes"])}
    assert set(t.optimizer) == {int(total["optimizer_bytes"])}
    # the forward keeps activations, the backward releases them and makes gradients
    assert t.saved[n - 1] == int(total["saved_bytes"]) and t.saved[-1] == 0
    assert all(x <= y for x, y in zip(t.saved[:n], t.saved[1:n]))
    assert all(x >= y for x, y in zip(t.saved[n:], t.saved[n + 1:]))
    assert t.grads[:n] == (0,) * n and t.grads[-1] == int(total["grad_bytes"])
    # layer i's backward releases exactly what it kept
    for k, r in enumerate(reversed(a.layers)):
        before = t.saved[n + k - 1]
        assert before - t.saved[n + k] == int(r.saved_bytes), r.name
    peak, at = t.peak
    assert peak == max(t.held) and peak <= int(total["training_bytes"])
    assert t.held[at] == peak


def test_symbolic_sizes_are_refused_with_the_fix():
    with pytest.raises(CnnCalcError, match=r"H, W are still symbolic.*--subs H=…,W=…"):
        chart(analyze("conv(8,k=3)", input="3xHxW"))
    chart(analyze("conv(8,k=3)", input="3xHxW", subs={"H": 8, "W": 8}))


# -- --plot: the drawing -------------------------------------------------------------------

@pytest.fixture
def captured(monkeypatch):
    """The figures ``draw`` would write, kept instead of written."""
    from cnncalc.render import plot
    figures = []
    monkeypatch.setattr(plot, "_write", lambda fig, path, fmt: figures.append(fig))
    return figures


def _bar_heights(ax) -> list[float]:
    return [p.get_height() for p in ax.patches]


def test_drawn_bars_are_the_chart_numbers(captured, capsys):
    run_ok(["params", "--input", "3x32x32", "--layers", LENET, "--plot", "x.png"], capsys)
    a = lenet()
    axes = captured[0].axes
    assert len(axes) == 4
    assert _bar_heights(axes[0]) == [int(r.macs) for r in a.layers]
    assert _bar_heights(axes[1]) == [int(r.params) for r in a.layers]
    assert _bar_heights(axes[2]) == [4 * int(r.activations) for r in a.layers]
    # LeNet's MACs run from 840 (fc3) to 352,800 (conv1): a log axis
    assert all(ax.get_yscale() == "log" for ax in axes[:3])


def test_compare_plots_two_columns(captured, capsys):
    run_ok(["compare", "conv(32,k=3,p=1)", "dwconv(k=3,p=1), conv(32,k=1)", "--input",
            "16x8x8", "--plot", "x.svg"], capsys)
    axes = captured[0].axes
    assert len(axes) == 8  # 4 rows x 2 columns, row by row
    a = analyze("conv(32,k=3,p=1)", input="16x8x8")
    b = analyze("dwconv(k=3,p=1), conv(32,k=1)", input="16x8x8")
    assert _bar_heights(axes[0]) == [int(r.macs) for r in a.layers]
    assert _bar_heights(axes[1]) == [int(r.macs) for r in b.layers]
    assert axes[0].get_ylim() == axes[1].get_ylim()  # one scale side by side
    # A's one conv; B's dwconv (9,216 MACs) and 1x1 conv (32,768): within decades, linear
    assert axes[0].get_yscale() == axes[1].get_yscale() == "linear"


@pytest.mark.parametrize("ext, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"),
                                        ("pdf", b"%PDF")])
def test_plot_writes_each_format(tmp_path, capsys, ext, magic):
    path = tmp_path / f"lenet.{ext}"
    code, out, err = run_any(["params", "--model", "lenet5", "--plot", str(path), "--format",
                              "json"], capsys)
    assert code == 0 and out.startswith("{") and f"wrote {path}" in err
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_a_failed_write_leaves_the_old_file(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure
    path = tmp_path / "keep.png"
    path.write_bytes(b"old")

    def broken(self, handle, **kw):
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken)
    code, _, err = run_any(["params", "--model", "lenet5", "--plot", str(path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "No space left" in err
    assert path.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_plot_of_a_torch_model(tmp_path, capsys, monkeypatch):
    (tmp_path / "branchy.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 3, padding=1)
                self.fc = nn.Linear(8 * 6 * 6, 10)

            def forward(self, x):
                return self.fc(torch.cat([self.a(x), self.b(x)], 1).flatten(1))
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "net.png"
    run_ok(["params", "--torch", "branchy:Net", "--input", "3x6x6", "--plot", str(path)],
           capsys)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_plot_names_what_a_trace_could_not_cost(captured):
    from torch import nn

    from cnncalc import from_torch
    from cnncalc.render.plot import draw

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Bilinear(144, 144, 2))
    model.forward = lambda x: model[2](model[1](model[0](x)), model[1](model[0](x)))
    c = chart(from_torch(model, "3x8x8"))
    assert c.uncosted == (("2", "Bilinear"),)
    draw([c], "x.png")
    texts = [t.get_text() for t in captured[0].axes[0].texts]
    assert any("could not cost" in t and "2 (Bilinear)" in t for t in texts)


@pytest.mark.parametrize("args, message", [
    (["--input", "3xHxW", "--layers", "conv(8,k=3)", "--plot", "x.png"],
     "H, W are still symbolic"),
    (["--model", "lenet5", "--plot", "x.gif"], "should end in .png, .svg or .pdf"),
    (["--model", "lenet5", "--plot", "no/such/folder/x.png"], "does not exist"),
])
def test_plot_errors_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_any(["params", *args], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert out == "" and list(tmp_path.iterdir()) == []


def test_missing_matplotlib_is_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    code, _, err = run_any(["params", "--model", "lenet5", "--plot", str(tmp_path / "x.png")],
                           capsys)
    assert code == 2 and err.count("\n") == 1
    assert re.search(r"needs matplotlib: pip install 'cnncalc\[examples\]'", err)
