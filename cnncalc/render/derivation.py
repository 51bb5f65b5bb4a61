"""Derivations in every format: rich text, JSON, Markdown, LaTeX.

Values are sympy expressions or matrices; they are only formatted here.
"""

from __future__ import annotations

import json
import unicodedata

import sympy as sp

from ..derive.result import Derivation, Item


def json_value(value):
    """Exact values as JSON: integers stay integers, anything else is ``str(expr)``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, sp.MatrixBase):
        return [[json_value(v) for v in value.row(i)] for i in range(value.rows)]
    if isinstance(value, sp.NDimArray):
        return json_value(value.tolist())
    if isinstance(value, (tuple, list)):
        return [json_value(v) for v in value]
    value = sp.sympify(value)
    if value.is_Integer:
        return int(value)
    return str(value)


def text_value(value) -> str:
    """A value as a person reads it on a terminal (2-D for matrices and fractions)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)) and not isinstance(value, sp.MatrixBase):
        return "(" + ", ".join(text_value(v) for v in value) + ")"
    if isinstance(value, sp.MatrixBase) and value.cols == 1 and value.rows > 1:
        # A column vector reads better on one line, transposed.
        row = sp.pretty(value.T, use_unicode=True, wrap_line=False).split("\n")
        mid = len(row) // 2
        return "\n".join(line + ("ᵀ" if i == mid else "") for i, line in enumerate(row))
    return sp.pretty(value, use_unicode=True, wrap_line=False)


def latex_value(value) -> str:
    if isinstance(value, str):
        return r"\text{" + value.replace("_", r"\_") + "}"
    if isinstance(value, (tuple, list)) and not isinstance(value, sp.MatrixBase):
        return r"\left(" + ", ".join(latex_value(v) for v in value) + r"\right)"
    return sp.latex(value, mat_str="bmatrix", mat_delim="")


def _item_text(item: Item) -> str:
    body = text_value(item.value)
    lines = body.split("\n")
    prefix = f"{item.label} = "
    if len(lines) == 1:
        out = prefix + body
    else:
        mid = len(lines) // 2
        pad = " " * sum(not unicodedata.combining(c) for c in prefix)  # z̃ is one column
        out = "\n".join((prefix if i == mid else pad) + line for i, line in enumerate(lines))
    return out + (f"\n  ({item.note})" if item.note else "")


def to_text(d: Derivation, show_work: bool = False) -> str:
    parts = [d.title, "=" * len(d.title)]
    if d.inputs:
        parts += ["Given:"] + [_item_text(i) for i in d.inputs] + [""]
    if show_work and d.steps:
        parts += ["Worked solution:"] + [_item_text(i) for i in d.steps] + [""]
    parts += ["Result:"] + [_item_text(i) for i in d.results]
    if d.checks:
        parts += ["", "Checked:"] + [f"  {'✓' if c.holds else '✗ FAILED:'} {c.claim}"
                                     for c in d.checks]
    if d.notes:
        parts += ["", "Notes:"] + [f"  - {n}" for n in d.notes]
    return "\n".join(parts) + "\n"


def _items_json(items) -> list[dict]:
    return [{"label": i.label, "value": json_value(i.value), **({"note": i.note} if i.note
                                                                 else {})} for i in items]


def to_json(d: Derivation, show_work: bool = False) -> str:
    doc = {"title": d.title, "inputs": _items_json(d.inputs), "results": _items_json(d.results),
           "checks": [{"claim": c.claim, "holds": c.holds} for c in d.checks],
           "notes": list(d.notes)}
    if show_work:
        doc["steps"] = _items_json(d.steps)
    return json.dumps(doc, indent=2) + "\n"


def _latex_label(item: Item) -> str:
    return item.latex if item.latex is not None else r"\text{" + item.label + "}"


def _sections(d: Derivation, show_work: bool) -> list[tuple[str, tuple[Item, ...]]]:
    """The non-empty groups of items, in reading order."""
    groups = [("Given", d.inputs), ("Worked solution", d.steps if show_work else ()),
              ("Result", d.results)]
    return [(name, items) for name, items in groups if items]


def to_latex(d: Derivation, show_work: bool = False) -> str:
    lines = [f"% cnncalc: {d.title}"]
    for name, items in _sections(d, show_work):
        lines += [f"% {name}", r"\begin{align*}"]
        lines += [f"{_latex_label(i)} &= {latex_value(i.value)} \\\\" for i in items]
        lines[-1] = lines[-1].removesuffix(" \\\\")
        lines.append(r"\end{align*}")
    for c in d.checks:
        lines.append(f"% checked: {c.claim}: {'holds' if c.holds else 'FAILED'}")
    return "\n".join(lines) + "\n"


def to_markdown(d: Derivation, show_work: bool = False) -> str:
    lines = [f"### {d.title}", ""]
    for name, items in _sections(d, show_work):
        lines += [f"**{name}**", "", "```"] + [_item_text(i) for i in items] + ["```", ""]
    if d.checks:
        lines += ["**Checked**", ""] + [f"- {'✓' if c.holds else '✗ FAILED:'} {c.claim}"
                                        for c in d.checks] + [""]
    if d.notes:
        lines += ["**Notes**", ""] + [f"- {n}" for n in d.notes] + [""]
    return "\n".join(lines)


RENDERERS = {"table": to_text, "json": to_json, "markdown": to_markdown, "latex": to_latex}
