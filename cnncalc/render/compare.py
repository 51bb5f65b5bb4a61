"""A comparison of two networks in every format: rich table, JSON, Markdown, LaTeX, CSV.

Only formats: the values, differences and ratios come from ``cnncalc.compare``.
"""

from __future__ import annotations

import csv
import io
import json

from ..comparison import Comparison
from .formats import json_value
from .values import latex_value, plain, plain_shape, pretty, pretty_shape

HEADINGS = {"params": "params", "trainable_params": "trainable params",
            "non_trainable_params": "non-trainable params", "buffers": "buffers",
            "macs": "MACs", "activations": "activations"}


def _ratio(value) -> str:
    return "—" if value is None else pretty(value)


def _side(c: Comparison, which: str) -> tuple[str, str]:
    a = c.a if which == "a" else c.b
    label = c.label_a if which == "a" else c.label_b
    rows = f"{len(a.layers)} row" + ("s" if len(a.layers) != 1 else "")
    return label, (f"input {pretty_shape(a.input_shape)} → output "
                   f"{pretty_shape(_output(c, which))}, {rows}")


def _output(c: Comparison, which: str) -> tuple:
    """The output shape in the input's symbols (a network's own named sizes written out)."""
    shape = c.output_a if which == "a" else c.output_b
    return shape or (c.a if which == "a" else c.b).output_shape


def to_table(c: Comparison):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    heads = [Text(f"{name}: {label}   ({text})") for name, (label, text) in
             (("A", _side(c, "a")), ("B", _side(c, "b")))]
    batch = c.a.batch if c.a.batch == c.b.batch else None
    table = Table(title=None, header_style="bold")
    table.add_column("quantity", no_wrap=True)
    for head in ("A", "B", "B − A", "B / A"):
        table.add_column(head, justify="right", overflow="fold")
    for line in c.lines:
        table.add_row(HEADINGS[line.quantity], pretty(line.a), pretty(line.b),
                      pretty(line.difference), _ratio(line.ratio))
    notes = [Text(f"batch {pretty(batch)}" if batch is not None else
                  f"batch A {pretty(c.a.batch)}, B {pretty(c.b.batch)}", style="dim")]
    notes += [Text(n, style="yellow") for n in c.notes]
    return Group(*heads, table, *notes)


def to_dict(c: Comparison) -> dict:
    def side(a, label, which):
        return {"name": label, "input_shape": [json_value(d) for d in a.input_shape],
                "output_shape": [json_value(d) for d in _output(c, which)],
                "batch": json_value(a.batch), "rows": len(a.layers)}

    doc = {"a": side(c.a, c.label_a, "a"), "b": side(c.b, c.label_b, "b"), "quantities": [
        {"quantity": line.quantity, "a": json_value(line.a), "b": json_value(line.b),
         "difference": json_value(line.difference),
         "ratio": None if line.ratio is None else json_value(line.ratio),
         "ratio_exact": None if line.ratio is None else plain(line.ratio)}
        for line in c.lines]}
    if c.notes:  # a simplification out of time (the values are exact regardless)
        doc["notes"] = list(c.notes)
    return doc


def to_json(c: Comparison) -> str:
    return json.dumps(to_dict(c), indent=2) + "\n"


def to_markdown(c: Comparison) -> str:
    lines = [f"- **A**: {c.label_a} ({_side(c, 'a')[1]})",
             f"- **B**: {c.label_b} ({_side(c, 'b')[1]})", "",
             "| quantity | A | B | B − A | B / A |", "|---|---:|---:|---:|---:|"]
    for line in c.lines:
        cells = [HEADINGS[line.quantity], pretty(line.a), pretty(line.b),
                 pretty(line.difference), _ratio(line.ratio)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    lines += ["", *(f"*{n}*" for n in c.notes)] if c.notes else []
    return "\n".join(lines) + "\n"


def to_latex(c: Comparison) -> str:
    def tex(value):
        return "---" if value is None else f"${latex_value(value)}$"

    lines = [f"% cnncalc compare: A = {c.label_a}, B = {c.label_b}",
             r"\begin{tabular}{lrrrr}", r"\hline",
             r"quantity & A & B & $B - A$ & $B / A$ \\", r"\hline"]
    for line in c.lines:
        lines.append(" & ".join([HEADINGS[line.quantity], tex(line.a), tex(line.b),
                                 tex(line.difference), tex(line.ratio)]) + r" \\")
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["quantity", "a", "b", "difference", "ratio"])
    for line in c.lines:
        w.writerow([line.quantity, plain(line.a), plain(line.b), plain(line.difference),
                    "" if line.ratio is None else plain(line.ratio)])
    w.writerow(["output_shape", plain_shape(_output(c, "a")), plain_shape(_output(c, "b")),
                "", ""])
    return buf.getvalue()


RENDERERS = {"json": to_json, "markdown": to_markdown, "latex": to_latex, "csv": to_csv}
