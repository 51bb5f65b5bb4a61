"""Machine and document formats of an analysis: JSON, CSV, Markdown, LaTeX.

Each takes a finished :class:`~cnncalc.analysis.Analysis` and returns text;
none of them computes anything.
"""

from __future__ import annotations

import csv
import io
import json

import sympy as sp

from ..analysis import QUANTITIES, Analysis
from ..training import QUANTITIES as TRAINING
from .summary import field_cells, receptive_summary, training_cells, training_summary
from .values import (
    is_numeric,
    latex_value,
    percent,
    plain,
    plain_shape,
    pretty,
    pretty_shape,
    step_latex,
    step_plain,
    step_pretty,
    where_lines,
)

ROW_KEYS = ("output_shape", *QUANTITIES, "memory_change")


def json_value(value):
    """Integers stay integers, exact non-integers become floats, symbolic ones strings."""
    value = sp.sympify(value)
    if not is_numeric(value):
        return str(value)
    if value.is_Integer:
        return int(value)
    return float(value)


def _work(steps) -> list[dict]:
    out = []
    for step in steps:
        formula, substituted, value = step_plain(step)
        out.append({"quantity": step.quantity, "formula": formula,
                    "substituted": substituted, "value": value})
    return out


def receptive_dict(field, layer: int | None = None) -> dict | None:
    """``{"size": [..], "jump": [..], "start": [..]}`` per spatial dimension, or None."""
    if field is None:
        return None
    doc = {key: [json_value(v) for v in getattr(field, key)]
           for key in ("size", "jump", "start")}
    if layer is not None:
        doc["layer"] = layer
    return doc


_RECEPTIVE_KEYS = ("receptive_field", "receptive_field_layer")


def to_dict(a: Analysis, show_work: bool = False) -> dict:
    """The JSON schema (docs/conventions.md), with the training and receptive-field keys."""
    layers = []
    for r in a.layers:
        row = {"index": r.index, "name": r.name, "type": r.type, "depth": r.depth,
               "input_shape": [json_value(d) for d in r.input_shape],
               "output_shape": [json_value(d) for d in r.output_shape]}
        row.update({q: json_value(getattr(r, q)) for q in (*QUANTITIES, "memory_change")})
        row["frozen"] = r.frozen
        row.update({q: json_value(getattr(r, q)) for q in TRAINING})
        row["receptive_field"] = receptive_dict(r.receptive_field)
        if show_work:
            row["work"] = _work(r.steps)
        layers.append(row)
    total = {q: json_value(v) for q, v in a.total.items() if q not in _RECEPTIVE_KEYS}
    total["receptive_field"] = receptive_dict(a.total.get("receptive_field"),
                                              a.total.get("receptive_field_layer"))
    total["memory_change"] = json_value(a.memory_change)
    total["output_shape"] = [json_value(d) for d in a.output_shape]
    doc = {"model": a.name, "input_shape": [json_value(d) for d in a.input_shape],
           "batch": json_value(a.batch), "layout": a.layout,
           "symbols": [s.name for s in a.symbols],
           "named_sizes": {s.name: plain(s.definition) for s in a.named_sizes},
           "layers": layers, "total": total,
           "training": {"optimizer": a.optimizer, "dtype": a.dtype, "freeze": a.freeze,
                        "freezing_saves": None if a.freezing_saves is None else {
                            q: json_value(v) for q, v in a.freezing_saves.items()}}}
    if show_work:
        doc["total"]["work"] = _work([a.memory_step])
    unsupported = getattr(a, "unsupported", None)  # from_torch analyses only
    if unsupported is not None:
        doc["unsupported"] = [{"name": u.name, "type": u.type, "reason": u.reason}
                              for u in unsupported]
    if unsupported is not None or a.notes:
        doc["notes"] = list(a.notes)
    return doc


def to_json(a: Analysis, show_work: bool = False) -> str:
    return json.dumps(to_dict(a, show_work), indent=2, ensure_ascii=False)  # H₃ as written


def _plain_field(field) -> list[str]:
    if field is None:
        return ["", "", ""]
    return ["x".join(plain(v) for v in getattr(field, k)) for k in ("size", "jump", "start")]


def to_csv(a: Analysis, show_work: bool = False, training: bool = False,
           receptive: bool = False) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra = [*(("frozen", *TRAINING) if training else ()),
             *(("receptive_field", "receptive_field_jump", "receptive_field_start")
               if receptive else ())]
    w.writerow(["index", "name", "type", *ROW_KEYS, *extra])
    for r in a.layers:
        w.writerow([r.index, r.name, r.type, plain_shape(r.output_shape),
                    *(plain(getattr(r, q)) for q in (*QUANTITIES, "memory_change")),
                    *((str(r.frozen).lower(), *(plain(getattr(r, q)) for q in TRAINING))
                      if training else ()),
                    *(_plain_field(r.receptive_field) if receptive else ())])
    w.writerow(["", "total", "", plain_shape(a.output_shape),
                *(plain(a.total[q]) for q in QUANTITIES), plain(a.memory_change),
                *(("", *(plain(a.total[q]) for q in TRAINING)) if training else ()),
                *(_plain_field(a.total["receptive_field"]) if receptive else ())])
    for size in a.named_sizes:  # the definitions of the sizes named in the rows above
        w.writerow(["", size.name, "named size", plain(size.definition)])
    for note in a.notes:  # an assumption the figures rest on travels with them
        w.writerow(["note", note])
    return buf.getvalue()


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(a: Analysis, show_work: bool = False, training: bool = False,
                receptive: bool = False) -> str:
    head = ["#", "layer", "type", "output shape", "params", "MACs", "activations", "memory Δ",
            *(("frozen", "∂x MACs", "∂W MACs", "kept for ∂ [B]") if training else ()),
            *(("RF", "jump", "start") if receptive else ())]
    lines = [f"**{a.name or 'network'}**: input {pretty_shape(a.input_shape)} "
             f"({a.layout.upper()}), batch {pretty(a.batch)}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in a.layers:
        cells = [str(r.index), "&nbsp;" * 2 * r.depth + r.name, r.type,
                 pretty_shape(r.output_shape), pretty(r.params), pretty(r.macs),
                 pretty(r.activations), percent(r.memory_change),
                 *(training_cells(r) if training else ()),
                 *(field_cells(r.receptive_field) if receptive else ())]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    t = a.total
    lines.append("| | **total** | | " + " | ".join(_md(c) for c in (
        pretty_shape(a.output_shape), pretty(t["params"]), pretty(t["macs"]),
        pretty(t["activations"]), percent(a.memory_change),
        *(("", pretty(t["backward_input_macs"]), pretty(t["backward_weight_macs"]),
           pretty(t["saved_bytes"])) if training else ()),
        *(field_cells(t["receptive_field"]) if receptive else ()))) + " |")
    lines += ["", f"- params: {pretty(t['params'])} (trainable {pretty(t['trainable_params'])}, "
              f"non-trainable {pretty(t['non_trainable_params'])}); buffers: "
              f"{pretty(t['buffers'])}",
              f"- MACs: {pretty(t['macs'])}; activations: {pretty(t['activations'])} elements",
              f"- memory change, input → output: {percent(a.memory_change)}"]
    lines += [f"- where {_md(line)}" for line in where_lines(a.named_sizes)]
    lines += [f"- warning: {_md(u.name)} ({u.type}) {u.reason}"
              for u in getattr(a, "unsupported", ())]
    lines += [f"- note: {_md(n)}" for n in a.notes]
    if training:
        lines += [f"- {label}: {text}" for label, text in training_summary(a)]
    if receptive:
        lines.append(f"- receptive field: {receptive_summary(a)}")
    if show_work:
        lines += ["", "### Worked solution", ""]
        for r in a.layers:
            if r.steps:
                lines.append(f"**{r.index} {r.name}** ({r.type})")
                lines += [f"- `{step_pretty(s)}`" for s in r.steps]
                lines.append("")
        lines.append(f"**network, input → output**: `{step_pretty(a.memory_step)}`")
    return "\n".join(lines) + "\n"


def _tex_text(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"),
                 ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(a, b)
    return text


def _tex(value) -> str:
    return f"${latex_value(value)}$"


def _tex_shape(shape) -> str:
    dims = [latex_value(d) if sp.sympify(d).is_Atom else rf"\left({latex_value(d)}\right)"
            for d in shape]
    return "$" + r" \times ".join(dims) + "$"


def to_latex(a: Analysis, show_work: bool = False, training: bool = False,
             receptive: bool = False) -> str:
    """The table as LaTeX (the training and receptive-field views are in the other
    formats)."""
    lines = [r"% cnncalc: input " + " x ".join(plain(d) for d in a.input_shape)
             + f" ({a.layout}), batch {plain(a.batch)}",
             r"\begin{tabular}{rlllrrrr}", r"\hline",
             r"\# & layer & type & output shape & params & MACs & activations & "
             r"memory $\Delta$ [\%] \\", r"\hline"]
    for r in a.layers:
        cells = [str(r.index), r"\quad " * r.depth + _tex_text(r.name), _tex_text(r.type),
                 _tex_shape(r.output_shape), _tex(r.params), _tex(r.macs), _tex(r.activations),
                 _tex(r.memory_change)]
        lines.append(" & ".join(cells) + r" \\")
    t = a.total
    lines += [r"\hline", " & ".join(["", r"\textbf{total}", "", _tex_shape(a.output_shape),
                                     _tex(t["params"]), _tex(t["macs"]), _tex(t["activations"]),
                                     _tex(a.memory_change)]) + r" \\",
              r"\hline", r"\end{tabular}"]
    if a.named_sizes:
        lines += ["", "where", r"\begin{align*}"]
        lines += [rf"{latex_value(s)} &= {latex_value(s.definition)} \\" for s in a.named_sizes]
        lines.append(r"\end{align*}")
    lines += [r"\par\noindent\emph{note: " + _tex_text(n) + "}" for n in a.notes]
    if show_work:
        lines += ["", r"\begin{align*}"]
        for r in a.layers:
            for s in r.steps:
                lines.append(rf"\text{{{_tex_text(r.name)}}}\colon\; & {step_latex(s)} \\")
        lines.append(rf"\text{{network}}\colon\; & {step_latex(a.memory_step)}")
        lines.append(r"\end{align*}")
    return "\n".join(lines) + "\n"
