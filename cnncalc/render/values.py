"""Turning sympy values and worked steps into text: plain, pretty (unicode) and LaTeX.

Shared by every renderer, so a number or a formula reads the same everywhere.
"""

from __future__ import annotations

import re
from functools import lru_cache

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from ..quantities import Step


def is_numeric(value) -> bool:
    return not getattr(value, "free_symbols", None)


def plain(value) -> str:
    """Exact text: ``1474560``, ``-100/3``, ``16*H*W`` (what JSON and CSV carry)."""
    return str(value)


def pretty(value) -> str:
    """For people: ``1,474,560``, ``-33.33 (= -100/3)``, ``16·H·W``."""
    value = sp.sympify(value)
    if value.is_Integer:
        return f"{int(value):,}"
    if value.is_Rational:
        return f"{float(value):,.4g} (= {value})"
    if value.is_number:
        return f"{float(value):,.6g}"
    return _formula_text(value)


@lru_cache(maxsize=4096)
def _formula_text(value: sp.Expr) -> str:
    """``16·N·⌈H/2⌉``, ``1,769,472·N``; cached, as a network repeats its sizes in many
    cells."""
    return _floor(_unicode(_GROUPED.sub(_group, sp.sstr(value))))


# an integer of four or more digits standing alone (not in a name, a decimal or an exponent)
_GROUPED = re.compile(r"(?<![\w.^])\d{4,}(?![\w.])")


def _group(match: re.Match) -> str:
    """Thousands separators, as :func:`pretty` writes a whole number."""
    return f"{int(match.group()):,}"


def where_lines(sizes, text=pretty) -> list[str]:
    """``H₂ = ⌊(H₁ + 2·P − F)/S⌋ + 1, W₂ = …``: the definitions of an analysis' named sizes
    (``Analysis.named_sizes``), one line per row that named them."""
    lines: list[str] = []
    last = None
    for size in sizes:
        entry = f"{text(size)} = {text(size.definition)}"
        if lines and size.index == last:
            lines[-1] += ", " + entry
        else:
            lines.append(entry)
        last = size.index
    return lines


def _dim(size, text) -> str:
    """One size of a shape, bracketed when it is a sum (``8×(⌊(H - F)/S⌋ + 1)×W``, not a
    ``+ 1×`` that reads as one term)."""
    return f"({text(size)})" if getattr(size, "is_Add", False) else text(size)


def pretty_shape(shape) -> str:
    return " × ".join(_dim(d, pretty) for d in shape) if shape else "()"


def compact_shape(shape) -> str:
    """``6×28×28``: for narrow table columns."""
    return "×".join(_dim(d, pretty) for d in shape) if shape else "()"


def plain_shape(shape) -> str:
    return "x".join(_dim(d, plain) for d in shape)


def si(value) -> str:
    """``4,089,184,256`` -> ``4.09 G``; empty for symbolic values."""
    value = sp.sympify(value)
    if not value.is_number:
        return ""
    v = float(value)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return ""


def nbytes(value) -> str:
    """``46,758,048 B (44.6 MiB)``; symbolic byte counts as a formula in bytes."""
    value = sp.sympify(value)
    if not value.is_number:
        return pretty(value) + " B"
    v = float(value)
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(v) >= scale:
            return f"{pretty(value)} B ({v / scale:.3g} {unit})"
    return f"{pretty(value)} B"


def per_dim(values) -> str:
    """One value per spatial dimension: ``435`` when they agree, else ``435×211``."""
    values = [sp.sympify(v) for v in values]
    if values and all(v == values[0] for v in values):
        return pretty(values[0])
    return "×".join(pretty(v) for v in values)


def percent(value) -> str:
    value = sp.sympify(value)
    if value.is_Integer:
        return f"{int(value):+d}%" if value else "0%"
    if value.is_number:
        return f"{float(value):+.2f}%"
    return _formula_text(value) + " %"


def _unicode(text: str) -> str:
    return text.replace("**", "^").replace("*", "·")


def _atomic(value) -> bool:
    """Whether a bound value can stand in a formula without brackets."""
    return isinstance(value, sp.Symbol) or (isinstance(value, sp.Integer) and value >= 0)


class _BoundStr(StrPrinter):
    """Prints a formula with each bound symbol replaced by its value."""

    def __init__(self, bindings: dict):
        super().__init__()
        self.bindings = bindings

    def _print_Symbol(self, expr):
        if expr in self.bindings:
            value = self.bindings[expr]
            text = sp.sstr(value)
            return text if _atomic(value) else f"({text})"
        return super()._print_Symbol(expr)


class SizeLatex(LatexPrinter):
    r"""LaTeX with a size over a whole number written as a person would: ``\lceil H/32
    \rceil`` rather than ``\left\lceil{\frac{H}{32}}\right\rceil``."""

    def __init__(self, settings: dict | None = None):
        super().__init__({"mul_symbol": "dot", **(settings or {})})

    def _rounded(self, expr, left: str, right: str) -> str | None:
        num, den = expr.args[0].as_numer_denom()
        if den.is_Integer and den > 1 and (num.is_Symbol or num.is_Integer):
            return rf"{left} {self._print(num)}/{den} {right}"
        return None

    def _print_ceiling(self, expr, exp=None):
        text = self._rounded(expr, r"\lceil", r"\rceil")
        if text is None:
            return super()._print_ceiling(expr, exp)
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"

    def _print_floor(self, expr, exp=None):
        text = self._rounded(expr, r"\lfloor", r"\rfloor")
        if text is None:
            return super()._print_floor(expr, exp)
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


class _BoundLatex(SizeLatex):
    def __init__(self, bindings: dict):
        super().__init__()
        self.bindings = bindings

    def _print_Symbol(self, expr, style="plain"):
        if expr in self.bindings:
            value = self.bindings[expr]
            text = SizeLatex().doprint(value)
            return text if _atomic(value) else rf"\left({text}\right)"
        return super()._print_Symbol(expr)


def step_plain(step: Step) -> tuple[str, str, str]:
    """(formula, substituted arithmetic, value) as exact plain text."""
    return (sp.sstr(step.formula), _BoundStr(step.bindings).doprint(step.formula),
            plain(step.value))


def step_pretty(step: Step) -> str:
    """``H_out = ⌊(H_in + 2·p − …)/s⌋ + 1 = ⌊(64 + 2·1 − …)/2⌋ + 1 = 32``."""
    formula, substituted, _ = step_plain(step)
    value = percent(step.value) if step.quantity == "memory_change" else pretty(step.value)
    parts = [step.quantity, _floor(_unicode(formula))]
    if substituted != formula:
        parts.append(_floor(_unicode(substituted)))
    if parts[-1].replace(",", "") != value.replace(",", ""):
        parts.append(value)
    return " = ".join(parts)


def step_latex(step: Step) -> str:
    printer = SizeLatex()
    q = step.quantity
    lhs = {"params": r"\text{params}", "macs": r"\text{MACs}",
           "memory_change": r"\Delta_{\text{mem}}\,[\%]"}.get(q, printer.doprint(sp.Symbol(q)))
    parts = [lhs, printer.doprint(step.formula), _BoundLatex(step.bindings).doprint(step.formula),
             latex_value(step.value)]
    out = [parts[0]]
    for p in parts[1:]:
        if p != out[-1]:
            out.append(p)
    return " = ".join(out)


def latex_value(value) -> str:
    value = sp.sympify(value)
    if value.is_Integer:
        return f"{int(value):,}".replace(",", "{,}")
    return SizeLatex({"mul_symbol": None}).doprint(value)


def _floor(text: str) -> str:
    """``floor(x)`` -> ``⌊x⌋`` (and ceiling), matching brackets properly."""
    for name, left, right in (("floor(", "⌊", "⌋"), ("ceiling(", "⌈", "⌉")):
        while name in text:
            start = text.index(name)
            depth, i = 0, start + len(name) - 1
            for i in range(start + len(name) - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                if depth == 0:
                    break
            text = text[:start] + left + text[start + len(name):i] + right + text[i + 1:]
    return text
