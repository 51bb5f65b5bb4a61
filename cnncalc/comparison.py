"""Two analyses side by side: per quantity, both values, ``B - A`` and ``B / A``.

Differences and ratios are exact and simplified with sympy, so symbolic networks
compare as formulas (``B / A`` of two convs is a rational function of the channels).
Each simplification runs under a time budget (:func:`cnncalc.symbolic.within`); one
that runs out leaves its value exact but unsimplified, and says so in ``notes``.
Nothing here formats; ``render/compare.py`` does. (Not named compare.py: the package
attribute ``cnncalc.compare`` is the function.)
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .analysis import Analysis
from .symbolic import SIMPLIFY_SECONDS, unfold, within

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
    notes: tuple[str, ...] = ()
    # the output shapes in the inputs' symbols (each network names its own sizes, H₃, ...)
    output_a: tuple = ()
    output_b: tuple = ()


def compare(a: Analysis, b: Analysis, label_a: str = "A", label_b: str = "B") -> Comparison:
    """Compare the totals of two analyses.

    >>> from cnncalc import analyze
    >>> c = compare(analyze("conv(K, k=3)", input="CxHxW"), analyze("conv(K, k=1)", input="CxHxW"))
    >>> c.lines[0].difference, c.lines[0].ratio
    (-8*C*K, (C + 1)/(9*C + 1))
    """
    lines, late = [], []
    for q in COMPARED:
        # named sizes written out: A's H₃ and B's H₃ need not be the same size
        va, vb = unfold(sp.sympify(a.total[q])), unfold(sp.sympify(b.total[q]))
        ratio = None if va == 0 else _simplified(vb / va, sp.factor, q, late)
        lines.append(Line(q, va, vb, _simplified(vb - va, None, q, late), ratio))
    notes = () if not late else (
        f"{', '.join(dict.fromkeys(late))}: not simplified within {SIMPLIFY_SECONDS:g} s; "
        "shown exact, as built",)
    return Comparison(a, b, label_a, label_b, tuple(lines), notes,
                      tuple(unfold(d) for d in a.output_shape),
                      tuple(unfold(d) for d in b.output_shape))


def _simplified(value: sp.Expr, then, quantity: str, late: list) -> sp.Expr:
    """``simplify`` (then ``then``) within the budget, else ``value`` as it is."""
    if value.is_number:
        return value
    done = within(SIMPLIFY_SECONDS, lambda: (then or (lambda v: v))(sp.simplify(value)))
    if done is None:
        late.append(quantity)
        return value
    return done
