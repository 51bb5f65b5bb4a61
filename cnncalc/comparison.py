"""Two analyses side by side: per quantity, both values, ``B - A`` and ``B / A``.

Differences and ratios are exact and simplified with sympy, so symbolic networks
compare as formulas (``B / A`` of two convs is a rational function of the channels).
Nothing here formats; ``render/compare.py`` does. (Not named compare.py: the package
attribute ``cnncalc.compare`` is the function.)
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .analysis import Analysis

COMPARED = ("params", "trainable_params", "non_trainable_params", "buffers", "macs",
            "activations")


@dataclass(frozen=True)
class Line:
    """One quantity of both networks; ``ratio`` is None where A's value is 0."""

    quantity: str
    a: sp.Expr
    b: sp.Expr
    difference: sp.Expr
    ratio: sp.Expr | None


@dataclass(frozen=True)
class Comparison:
    a: Analysis
    b: Analysis
    label_a: str
    label_b: str
    lines: tuple[Line, ...]


def compare(a: Analysis, b: Analysis, label_a: str = "A", label_b: str = "B") -> Comparison:
    """Compare the totals of two analyses.

    >>> from cnncalc import analyze
    >>> c = compare(analyze("conv(K, k=3)", input="CxHxW"), analyze("conv(K, k=1)", input="CxHxW"))
    >>> c.lines[0].difference, c.lines[0].ratio
    (-8*C*K, (C + 1)/(9*C + 1))
    """
    lines = []
    for q in COMPARED:
        va, vb = sp.sympify(a.total[q]), sp.sympify(b.total[q])
        ratio = None if va == 0 else sp.factor(sp.simplify(vb / va))
        lines.append(Line(q, va, vb, sp.simplify(vb - va), ratio))
    return Comparison(a, b, label_a, label_b, tuple(lines))
