"""The numbers behind the pictures: per-layer shares, bars and the training-step timeline.

Pure functions over a finished :class:`~cnncalc.analysis.Analysis`; the rich table
(``render/table.py``) and the matplotlib drawing (``render/plot.py``) only draw what
these return, so the tests check the data, not pixels.

A plot needs numbers: a size that is still a symbol is refused (``--subs`` gives it
a value), never guessed.

The training step is the analysis' own quantities laid out in time, under the
conventions of :mod:`cnncalc.training`:

* parameters, buffers and optimizer state are held throughout (the state of an
  optimizer that has stepped before);
* the activations a layer keeps for backward (``saved_bytes``) are held from its
  forward until its backward has run; a tensor that two layers keep is charged to the
  first of them, whose backward runs last, so it is released then;
* each layer's gradients appear when its backward runs and are held to the end of
  the step (``zero_grad(set_to_none=True)``, torch's default, frees them before the
  next forward);
* a segment run by ``torch.utils.checkpoint`` keeps only its inputs through the
  forward; when backward reaches it, it runs again, and each of its layers holds what
  it keeps (``recompute_bytes``) until its own backward.

The peak of the timeline is therefore at most the analysis' ``training_bytes``, which
adds every tensor as if all were held at once, plus, with checkpointing, what one
segment keeps while it runs again.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate

import sympy as sp

from .errors import CnnCalcError
from .training import DTYPE_BYTES

# Bars spanning at least this ratio (largest to smallest non-zero) get a log axis.
LOG_SPAN = 100


@dataclass(frozen=True)
class Series:
    """One per-layer quantity: a value per row, and whether it wants a log axis."""

    quantity: str
    label: str
    values: tuple[int, ...]

    @property
    def log(self) -> bool:
        return spans_decades(self.values)


@dataclass(frozen=True)
class Timeline:
    """Memory held after each step of one training step: every layer's forward in order,
    then every layer's backward in reverse. All lists have one entry per step."""

    steps: tuple[str, ...]  # "conv1 →" (forward), "conv1 ←" (backward)
    forward_steps: int
    params: tuple[int, ...]  # parameters and buffers
    optimizer: tuple[int, ...]
    grads: tuple[int, ...]
    saved: tuple[int, ...]

    @property
    def held(self) -> tuple[int, ...]:
        return tuple(map(sum, zip(self.params, self.optimizer, self.grads, self.saved)))

    @property
    def peak(self) -> tuple[int, int]:
        """(bytes, step index) of the most memory held."""
        held = self.held
        top = max(held)
        return top, held.index(top)


@dataclass(frozen=True)
class Chart:
    """Everything one network's plot shows."""

    title: str
    names: tuple[str, ...]
    types: tuple[str, ...]
    bars: tuple[Series, ...]  # MACs, params, activation memory
    timeline: Timeline
    uncosted: tuple[tuple[str, str], ...] = ()  # (name, type): what a --torch trace could
    # not cost (the plot says so, as the table does)


def spans_decades(values) -> bool:
    """Whether the non-zero values differ by a factor of ``LOG_SPAN`` or more."""
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) >= LOG_SPAN * min(positive)


def share(part, whole) -> Fraction | None:
    """``part / whole`` exactly, or None when either is symbolic or the whole is 0."""
    part, whole = sp.sympify(part), sp.sympify(whole)
    if not (part.is_Integer and whole.is_Integer) or whole == 0:
        return None
    return Fraction(int(part), int(whole))


def shares(a, quantity: str) -> list[Fraction] | None:
    """Each row's share of the total of ``quantity``; None for a symbolic or zero total."""
    total = sp.sympify(a.total[quantity])
    if not total.is_Integer or total == 0:
        return None
    return [share(getattr(r, quantity), total) for r in a.layers]


def require_numbers(a, what: str = "--plot") -> None:
    """Refuse an analysis that still has symbols, naming them and the fix."""
    symbols = [s.name for s in a.symbols]
    if symbols:
        example = ",".join(f"{s}=…" for s in symbols)
        raise CnnCalcError(f"{what} needs numbers, but {', '.join(symbols)} "
                           f"{'is' if len(symbols) == 1 else 'are'} still symbolic "
                           f"(give values with --subs {example})")


def _int(value, row, quantity: str) -> int:
    value = sp.sympify(value)
    if not value.is_Integer:  # require_numbers came first; this would be a bug
        raise CnnCalcError(f"{quantity} of layer {row.index} ({row.name}) is {value}, "
                           "not a whole number")
    return int(value)


def chart(a, title: str | None = None) -> Chart:
    """The bars and the training timeline of a numeric analysis."""
    require_numbers(a)
    rows = a.layers
    if not rows:
        raise CnnCalcError("--plot: the network has no layers to plot")
    b = DTYPE_BYTES[a.dtype]
    bars = (Series("macs", "MACs", tuple(_int(r.macs, r, "MACs") for r in rows)),
            Series("params", "parameters", tuple(_int(r.params, r, "params") for r in rows)),
            Series("activation_bytes", f"activation memory [B, {a.dtype}]",
                   tuple(_int(r.activations, r, "activations") * b for r in rows)))
    uncosted = tuple((u.name, u.type) for u in getattr(a, "unsupported", ()))
    return Chart(title or a.name or "network", tuple(r.name for r in rows),
                 tuple(r.type for r in rows), bars, timeline(a), uncosted)


def timeline(a) -> Timeline:
    """The memory a training step holds, after each layer's forward and backward."""
    rows = a.layers

    def column(quantity):
        return [_int(getattr(r, quantity), r, quantity) for r in rows]

    saved, grads = column("saved_bytes"), column("grad_bytes")
    state = sum(column("param_bytes")) + sum(column("buffer_bytes"))
    optimizer = sum(column("optimizer_bytes"))
    n = len(rows)
    kept = list(accumulate(saved))  # after forward i: layers 0..i keep theirs
    # after backward i (run in reverse): layers 0..i-1 still keep theirs, i.. hold grads;
    # the layers of i's checkpointed segment before it, what its run again made
    again, rerun = column("recompute_bytes"), [0] * n
    for i in range(1, n):
        if rows[i].segment >= 0 and rows[i].segment == rows[i - 1].segment:
            rerun[i] = rerun[i - 1] + again[i - 1]
    kept_back = [kept[i] - saved[i] + rerun[i] for i in reversed(range(n))]
    grads_back = list(accumulate(grads[i] for i in reversed(range(n))))
    return Timeline(
        steps=tuple([f"{r.name} →" for r in rows] + [f"{r.name} ←" for r in reversed(rows)]),
        forward_steps=n, params=(state,) * (2 * n), optimizer=(optimizer,) * (2 * n),
        grads=tuple([0] * n + grads_back), saved=tuple(kept + kept_back))
