"""What a derivation command returns: named results, worked steps, verified claims.

A derivation never formats itself; ``cnncalc.render.derivation`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """One named value: a sympy expression or Matrix, a tuple of them, or plain text.

    ``label`` is what a textbook writes on the left (``A``, ``μ``, ``∂L/∂X``),
    ``latex`` the same in LaTeX, ``note`` one line saying what it is.
    """

    label: str
    value: Any
    note: str = ""
    latex: str | None = None


@dataclass(frozen=True)
class Check:
    """A claim the command verified itself (symbolically or exactly), and the outcome."""

    claim: str
    holds: bool


@dataclass(frozen=True)
class Derivation:
    title: str
    results: tuple[Item, ...]
    steps: tuple[Item, ...] = ()  # the worked solution, shown with --show-work
    checks: tuple[Check, ...] = ()
    notes: tuple[str, ...] = ()  # conventions and caveats, one sentence each
    inputs: tuple[Item, ...] = field(default=())  # the given values, echoed back

    def result(self, label: str) -> Any:
        """The value of the result named ``label`` (for tests and the Python API)."""
        for item in self.results:
            if item.label == label:
                return item.value
        raise KeyError(label)
