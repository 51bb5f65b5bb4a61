r"""Forward and backward pass of a small fully connected net, exactly, in the homework's notation.

Learning From Data's layout: :math:`W^{(l)}` is :math:`(d^{(l-1)}+1) \times d^{(l)}`
with the bias in row 0, and every hidden :math:`x^{(l)}` starts with the bias
coordinate 1::

    x^(0) = [1; x]
    s^(l) = (W^(l))ᵀ x^(l-1)
    x^(l) = [1; θ(s^(l))]              hidden layers, l < L
    x^(L) = θ_out(s^(L))               no bias coordinate on the output
    e     = Σ_j (x^(L)_j − y_j)²        no 1/2 or 1/N factor, as the homework problems
    δ^(L) = 2 (x^(L) − y) ⊗ θ_out'(s^(L))
    δ^(l) = θ'(s^(l)) ⊗ [W^(l+1) δ^(l+1)] with its bias row dropped
    ∂e/∂W^(l) = x^(l-1) (δ^(l))ᵀ

Values stay exact: ``0.1`` is 1/10 and ``tanh(7/10)`` stays ``tanh(7/10)``;
named weights (``w1``) make the whole pass symbolic. During the pass each
irrational activation value is a name (:class:`Names`), so the arithmetic stays
polynomial; the closed forms, and the numbers to any precision, go back in at
the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import sympy as sp

from ..errors import CnnCalcError
from .calculus import relu, sigmoid
from .result import Check, Derivation, Item

Matrix = sp.ImmutableMatrix
DIGITS = 15  # significant digits of the numeric values: a float64 holds 15 to 17
WORKING_DIGITS = 50  # for the signs relu needs during the pass, and for the self-check
MAX_WORKING_DIGITS = 1000
MAX_CHECKED_WEIGHTS = 64  # the self-check differentiates e(W) once per weight


@dataclass(frozen=True)
class Activation:
    r"""A nonlinearity θ and its derivative, written in terms of s and θ(s).

    tanh' = 1 − θ², σ' = σ(1 − σ) (the homework's form), relu' = Heaviside(s, 0), so
    relu'(0) = 0 as in PyTorch. ``smooth`` activations turn a number into a new
    irrational one (which the pass names); the others are linear on each side of 0.
    The tests check each ``slope`` against ``sympy.diff`` of ``theta``.
    """

    name: str
    theta: Callable[[sp.Expr], sp.Expr]
    slope: Callable[[sp.Expr, sp.Expr], sp.Expr]  # θ'(s), given s and θ(s)
    smooth: bool
    derivative_text: str


ACTIVATIONS = {
    "tanh": Activation("tanh", sp.tanh, lambda s, out: 1 - out**2, True,
                       "θ'(s) = 1 − tanh²(s) = 1 − θ(s)²"),
    "relu": Activation("relu", relu, lambda s, out: sp.Heaviside(s, 0), False,
                       "θ'(s) = 1 for s > 0, else 0 (relu'(0) = 0, as PyTorch)"),
    "sigmoid": Activation("sigmoid", sigmoid, lambda s, out: out * (1 - out), True,
                          "θ'(s) = σ(s)(1 − σ(s))"),
    "identity": Activation("identity", sp.Id, lambda s, out: sp.S.One, False, "θ'(s) = 1"),
}


def numeric(values: list[sp.Expr], dps: int, known: dict | None = None) -> list[sp.Expr]:
    """Expressions evaluated bottom-up in ``dps``-digit arithmetic, each part once.

    ``known`` gives values to symbols. ``evalf`` on nested forms evaluates a
    shared part once per use, which grows exponentially with depth.
    """
    known = dict(known or {})

    def value(expr: sp.Basic) -> sp.Basic:
        if expr not in known:
            known[expr] = (expr if not expr.args else
                           expr.func(*(value(a) for a in expr.args))).evalf(dps)
        return known[expr]

    return [value(v) for v in values]


class Names:
    """Irrational activation values under names, ``a = θ(s)``, so that the pass stays small.

    Written out, ``tanh(s^(2))`` holds ``tanh(s^(1))`` inside it and every δ below
    holds both: the closed forms nest, and sympy's arithmetic on nested numbers
    evaluates them to learn their signs, at a cost that grows exponentially with
    depth. With a name for each value the pass is polynomial in the names; the
    closed forms and the numbers go back in at the end.
    """

    def __init__(self):
        self.definitions: dict[sp.Dummy, sp.Expr] = {}  # in the order they were made
        self._values: dict[sp.Dummy, sp.Expr] = {}  # to WORKING_DIGITS

    def apply(self, act: Activation, s: sp.Expr, label: str) -> tuple[sp.Expr, sp.Expr]:
        """``(θ(s), θ'(s))``, naming θ(s) when it is a new irrational number."""
        if self.symbolic(s):
            out = act.theta(s)
        elif act.smooth:
            out = act.theta(s)
            if not out.is_Rational:
                out = self._name(out, label)
        else:  # linear on each side of 0: θ(s) = θ'(s) s, the side given by the sign of s
            slope = act.slope(self.value(s), None)
            return slope * s, slope
        return out, act.slope(s, out)

    def _name(self, definition: sp.Expr, label: str) -> sp.Dummy:
        name = sp.Dummy(label, real=True)
        self._values[name] = self.value(definition)
        self.definitions[name] = definition
        return name

    def symbolic(self, expr: sp.Expr) -> bool:
        """Whether ``expr`` holds the user's own symbols (not only names)."""
        return bool(expr.free_symbols - self.definitions.keys())

    def value(self, expr: sp.Expr) -> sp.Expr:
        return numeric([expr], WORKING_DIGITS, self._values)[0]

    def values(self, dps: int) -> dict[sp.Dummy, sp.Expr]:
        known: dict[sp.Dummy, sp.Expr] = {}
        for name, definition in self.definitions.items():
            known[name] = numeric([definition], dps, known)[0]
        return known

    def closed_forms(self) -> dict[sp.Dummy, sp.Expr]:
        closed: dict[sp.Dummy, sp.Expr] = {}
        for name, definition in self.definitions.items():
            closed[name] = definition.xreplace(closed)
        return closed


@dataclass(frozen=True)
class Pass:
    r"""Every quantity of one forward and backward pass; lists are indexed by layer − 1.

    ``xs`` runs from :math:`x^{(0)}` to :math:`x^{(L)}`, so ``xs[l]`` is
    :math:`x^{(l)}`; ``back[l-1]`` is :math:`W^{(l+1)}\delta^{(l+1)}` before its bias
    row is dropped (``None`` for the last layer).
    """

    xs: tuple[Matrix, ...]
    ss: tuple[Matrix, ...]
    error: sp.Expr
    slopes: tuple[Matrix, ...]  # θ'(s^(l))
    back: tuple[Matrix | None, ...]
    deltas: tuple[Matrix, ...]
    grads: tuple[Matrix, ...]

    def map(self, f: Callable[[sp.Expr], sp.Expr]) -> Pass:
        """The same pass with ``f`` applied to every number in it."""
        def each(value):
            if value is None:
                return None
            if isinstance(value, tuple):
                return tuple(each(v) for v in value)
            return value.applyfunc(f) if isinstance(value, sp.MatrixBase) else f(value)

        return Pass(*(each(getattr(self, field.name)) for field in fields(Pass)))

    def entries(self) -> list[sp.Expr]:
        found = [self.error]
        for field in fields(Pass):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                found += [v for m in value if m is not None for v in m]
        return found


def check_shapes(weights: list[Matrix], x: list, y: list) -> None:
    """Consecutive layers must fit: :math:`W^{(l)}` has :math:`d^{(l-1)}+1` rows."""
    if not weights:
        raise CnnCalcError("give at least one weight matrix (--weights)")
    width = len(x)
    for layer, w in enumerate(weights, start=1):
        if w.rows != width + 1:
            raise CnnCalcError(f"W^({layer}) has {_count(w.rows, 'row')}; it needs "
                               f"d^({layer - 1})+1 = {width + 1} (bias row first)")
        width = w.cols
    if len(y) != width:
        raise CnnCalcError(f"--y has {_count(len(y), 'value')}; the output layer "
                           f"W^({len(weights)}) has {_count(width, 'column')}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def forward(weights, x, hidden: Activation, output: Activation, names: Names):
    r""":math:`x^{(l)}`, :math:`s^{(l)}` and :math:`\theta'(s^{(l)})` for every layer."""
    xs, ss, slopes = [Matrix([1, *x])], [], []
    for layer, w in enumerate(weights, start=1):
        last = layer == len(weights)
        s = Matrix(w.T * xs[-1])
        pairs = [names.apply(output if last else hidden, v, f"θ(s^({layer})_{i})")
                 for i, v in enumerate(s, start=1)]
        outs = [out for out, _ in pairs]
        ss.append(s)
        slopes.append(Matrix([slope for _, slope in pairs]))
        xs.append(Matrix(outs if last else [1, *outs]))
    return xs, ss, slopes


def run(weights, x, y, hidden: Activation, output: Activation) -> tuple[Pass, Names]:
    """The forward pass, then the sensitivities from the output back to layer 1."""
    names = Names()
    xs, ss, slopes = forward(weights, x, hidden, output, names)
    residual = xs[-1] - Matrix(y)
    error = sp.Add(*(r**2 for r in residual))
    count = len(weights)
    deltas = [Matrix((2 * residual).multiply_elementwise(slopes[-1]))]
    back = [None]
    for layer in range(count - 1, 0, -1):  # δ^(layer) from δ^(layer+1)
        carried = Matrix(weights[layer] * deltas[0])  # weights[layer] is W^(layer+1)
        back.insert(0, carried)
        deltas.insert(0, Matrix(slopes[layer - 1].multiply_elementwise(carried[1:, :])))
    grads = [Matrix(xs[layer - 1] * deltas[layer - 1].T) for layer in range(1, count + 1)]
    return Pass(tuple(xs), tuple(ss), error, tuple(slopes), tuple(back), tuple(deltas),
                tuple(grads)), names


def autodiff_gradients(weights, x, y, hidden: Activation, output: Activation):
    r""":math:`\partial e/\partial W^{(l)}` as functions of symbolic weights, by sympy.diff.

    An independent route to the gradients: every weight becomes a symbol, the
    forward pass builds e(W) as one expression and sympy differentiates it. No
    sensitivities are involved. Returns the symbols and the derivatives.
    """
    symbols = [Matrix(w.rows, w.cols, lambda i, j, k=k: sp.Dummy(f"w{k}_{i}{j}", real=True))
               for k, w in enumerate(weights, start=1)]
    xs, _, _ = forward(symbols, x, hidden, output, Names())
    error = sp.Add(*((o - t) ** 2 for o, t in zip(xs[-1], y)))
    return symbols, [ws.applyfunc(lambda w: sp.diff(error, w)) for ws in symbols]


def approximations(p: Pass, names: Names, digits: int) -> tuple[Callable, int]:
    """How each number of the pass is shown: exact if rational, else to ``digits`` digits.

    The irrational values are computed in ``digits + 10``-digit arithmetic and
    again with twice that; the precision doubles until both agree to ``digits``
    significant digits, so every digit shown is right even where terms cancel.
    Returns the map and the working precision (0 if nothing needed computing).
    """
    wanted = list(dict.fromkeys(v for v in p.entries()
                                if not v.is_Rational and not names.symbolic(v)))
    dps, rough = digits + 10, None
    while dps <= MAX_WORKING_DIGITS:
        fine = numeric(wanted, dps, names.values(dps))
        if rough is not None and all(abs(a - b) <= sp.Float(10) ** -(digits + 1) * abs(b)
                                     for a, b in zip(rough, fine)):
            break
        rough, dps = fine, 2 * dps
    else:
        raise CnnCalcError(f"the values cancel too much to show {digits} digits reliably "
                           f"(tried {MAX_WORKING_DIGITS} digits); use --exact")
    shown = {v: sp.Float(f, digits) for v, f in zip(wanted, fine)}
    in_symbols = {n: sp.Float(v, digits) for n, v in names.values(dps).items()}

    def show(value: sp.Expr) -> sp.Expr:
        return shown[value] if value in shown else value.xreplace(in_symbols)

    return show, (dps if wanted else 0)


def backprop(weights: list, x: list, y: list, activation: str = "tanh",
             output: str = "identity", exact: bool = False, digits: int = DIGITS) -> Derivation:
    r"""Every :math:`s^{(l)}, x^{(l)}, \delta^{(l)}` and :math:`\partial e/\partial W^{(l)}`.

    Values print to ``digits`` significant digits where they are not rational;
    ``exact=True`` prints the closed forms, each followed by its value.

    >>> d = backprop([sp.Matrix([[0], [1]])], [3], [1], output="identity")
    >>> d.result("δ^(1)"), d.result("∂e/∂W^(1)")
    (Matrix([[4]]), Matrix([
    [ 4],
    [12]]))
    """
    hidden, out = _activation(activation, "--activation"), _activation(output, "--output")
    weights = [Matrix(w) for w in weights]
    check_shapes(weights, x, y)
    p, names = run(weights, x, y, hidden, out)
    show, working = approximations(p, names, digits)
    approx = p.map(show)
    if exact:  # writing the closed forms out is the slow part: only on request
        closed = names.closed_forms()
        view = p.map(lambda v: v.xreplace(closed))
    else:
        view = approx
    results = _results(view, approx, exact, digits)
    steps = _steps(view, weights, y, hidden, out)
    checks = _checks(p, names, weights, x, y, hidden, out)
    if working:
        checks.append(Check(f"the values shown are right to {digits} significant digits "
                            f"(computed in {working // 2}- and {working}-digit arithmetic, "
                            "which agree)", True))
    notes = _notes(hidden, out, weights, exact, digits)
    inputs = tuple(Item(f"W^({layer})", w, latex=f"W^{{({layer})}}") for layer, w in
                   enumerate(weights, start=1)) + (
        Item("x", Matrix(x)), Item("y", Matrix(y)),
        Item("θ (hidden)", hidden.name, hidden.derivative_text),
        Item("θ (output)", out.name, out.derivative_text))
    return Derivation("Backpropagation", tuple(results), tuple(steps), tuple(checks),
                      tuple(notes), inputs)


def _activation(name: str, what: str) -> Activation:
    if name not in ACTIVATIONS:
        raise CnnCalcError(f"{what}: unknown activation {name!r}; choose one of "
                           f"{', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _results(p: Pass, approx: Pass, exact: bool, digits: int) -> list[Item]:
    """Forward quantities layer by layer, the error, δ from the output back, then gradients.

    Each is shown by value; with ``exact`` by its closed form, followed by its
    value where the two differ.
    """
    def show(label: str, field: str, index: int | None, latex: str, note: str = ""):
        value, value_approx = getattr(p, field), getattr(approx, field)
        if index is not None:
            value, value_approx = value[index], value_approx[index]
        if not exact:
            return [Item(label, value_approx, note, latex)]
        return [Item(label, value, note, latex)] + (
            [Item(f"{label} ({digits} digits)", value_approx, "",
                  latex + rf"\ (\text{{{digits} digits}})")] if value_approx != value else [])

    count = len(p.ss)
    items = show("x^(0)", "xs", 0, "x^{(0)}", "the input with the bias coordinate 1 first")
    for layer in range(1, count + 1):
        items += show(f"s^({layer})", "ss", layer - 1, f"s^{{({layer})}}")
        items += show(f"x^({layer})", "xs", layer, f"x^{{({layer})}}",
                      "the output θ_out(s)" if layer == count else "[1; θ(s)]")
    items += show("e", "error", None, "e", "squared error Σ (x^(L) − y)²")
    for layer in range(count, 0, -1):
        items += show(f"δ^({layer})", "deltas", layer - 1, rf"\delta^{{({layer})}}", "∂e/∂s")
    for layer in range(1, count + 1):
        items += show(f"∂e/∂W^({layer})", "grads", layer - 1,
                      rf"\frac{{\partial e}}{{\partial W^{{({layer})}}}}",
                      f"x^({layer - 1}) (δ^({layer}))ᵀ")
    return items


def _steps(p: Pass, weights, y, hidden, out) -> list[Item]:
    """The worked solution: each product written out with the numbers that go into it."""
    count = len(weights)
    steps = [Item(f"s^({layer}) = (W^({layer}))ᵀ x^({layer - 1})",
                  sp.MatMul(weights[layer - 1].T, p.xs[layer - 1], evaluate=False),
                  latex=rf"s^{{({layer})}} = (W^{{({layer})}})^T x^{{({layer - 1})}}")
             for layer in range(1, count + 1)]
    steps.append(Item(f"θ'(s^({count}))", p.slopes[-1], out.derivative_text,
                      latex=rf"\theta'(s^{{({count})}})"))
    steps.append(Item(f"δ^({count}) = 2(x^({count}) − y) ⊗ θ'(s^({count}))",
                      sp.HadamardProduct(2 * (p.xs[-1] - Matrix(y)), p.slopes[-1]),
                      latex=rf"\delta^{{({count})}} = 2(x^{{({count})}} - y) \otimes "
                            rf"\theta'(s^{{({count})}})"))
    for layer in range(count - 1, 0, -1):
        steps += [
            Item(f"W^({layer + 1}) δ^({layer + 1})", p.back[layer - 1],
                 "the first entry (bias row) is dropped",
                 latex=rf"W^{{({layer + 1})}} \delta^{{({layer + 1})}}"),
            Item(f"θ'(s^({layer}))", p.slopes[layer - 1], hidden.derivative_text,
                 latex=rf"\theta'(s^{{({layer})}})"),
            Item(f"δ^({layer}) = θ'(s^({layer})) ⊗ [W^({layer + 1}) δ^({layer + 1})] without row 0",
                 sp.HadamardProduct(p.slopes[layer - 1], p.back[layer - 1][1:, :]),
                 latex=rf"\delta^{{({layer})}} = \theta'(s^{{({layer})}}) \otimes "
                       rf"[W^{{({layer + 1})}} \delta^{{({layer + 1})}}]_{{1:}}"),
        ]
    steps += [Item(f"∂e/∂W^({layer}) = x^({layer - 1}) (δ^({layer}))ᵀ",
                   sp.MatMul(p.xs[layer - 1], p.deltas[layer - 1].T, evaluate=False),
                   latex=rf"\frac{{\partial e}}{{\partial W^{{({layer})}}}} = "
                         rf"x^{{({layer - 1})}} (\delta^{{({layer})}})^T")
              for layer in range(1, count + 1)]
    return steps


def _checks(p: Pass, names: Names, weights, x, y, hidden, out) -> list[Check]:
    """Each ∂e/∂W^(l) against sympy.diff of e(W) composed from the forward pass."""
    if sum(len(w) for w in weights) > MAX_CHECKED_WEIGHTS:
        return []
    symbols, direct = autodiff_gradients(weights, x, y, hidden, out)
    given = {s: v for ss, w in zip(symbols, weights) for s, v in zip(ss, w)}
    checks = []
    for layer, (ours, theirs) in enumerate(zip(p.grads, direct), start=1):
        hows = [agree(a, b, names, given) for a, b in zip(ours, theirs)]
        holds = None not in hows
        how = max(hows, key=_strength) if holds else "they differ"
        checks.append(Check(f"∂e/∂W^({layer}) equals sympy.diff of e(W) composed from the "
                            f"forward pass ({how})", holds))
    return checks


def agree(ours: sp.Expr, direct: sp.Expr, names: Names, given: dict) -> str | None:
    """How ``ours`` (in names) was found equal to ``direct`` at the given weights, or None.

    Exactly when no irrational value arose; symbolically for symbolic inputs; else
    numerically, both sides computed in :data:`WORKING_DIGITS`-digit arithmetic.
    """
    if not names.definitions and not names.symbolic(ours):
        return "exactly" if sp.expand(ours - direct.xreplace(given)) == 0 else None
    if names.symbolic(ours) or any(not v.is_number for v in given.values()):
        difference = ours.xreplace(names.closed_forms()) - direct.xreplace(given)
        same = sp.expand(difference) == 0 or sp.simplify(difference) == 0
        return "symbolically" if same else None
    a = numeric([ours], WORKING_DIGITS, names.values(WORKING_DIGITS))[0]
    b = numeric([direct], WORKING_DIGITS, given)[0]
    close = abs(a - b) <= sp.Float(10) ** (10 - WORKING_DIGITS) * (1 + abs(b))
    return f"to {WORKING_DIGITS - 10} digits" if close else None


def _strength(how: str) -> int:
    """Order confirmations from strongest to weakest, so a check reports its weakest one."""
    return 0 if how == "exactly" else 1 if how == "symbolically" else 2


def _notes(hidden, out, weights, exact, digits) -> list[str]:
    notes = ["e = Σ_j (x^(L)_j − y_j)², with no 1/2 or 1/N factor (as the homework problems), so "
             "δ^(L) = 2(x^(L) − y) ⊗ θ_out'(s^(L)).",
             "W^(l) is (d^(l−1)+1) × d^(l) with the bias in row 0; hidden x^(l) start with the "
             "bias coordinate 1, which W^(l+1) δ^(l+1) drops on the way back."]
    if "relu" in (hidden.name, out.name):
        notes.append("relu'(0) is taken as 0, as PyTorch does.")
    if sum(len(w) for w in weights) > MAX_CHECKED_WEIGHTS:
        notes.append(f"Not cross-checked against sympy.diff of e(W): more than "
                     f"{MAX_CHECKED_WEIGHTS} weights.")
    notes.append(f"Irrational values are shown to {digits} significant digits; rational ones "
                 "stay exact" + ("." if exact else " (--exact adds the closed forms)."))
    return notes
