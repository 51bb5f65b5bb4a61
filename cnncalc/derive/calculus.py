"""Symbolic derivatives and gradients of expressions typed by a user, simplified.

``tanh(x)`` differentiates to ``1 - tanh(x)**2``; a list of variables gives the
gradient; ``--show-work`` walks the chain rule one level at a time.

The text is read by the layer language's parser (:func:`cnncalc.spec.parse`,
no ``eval``): its syntax nodes map to sympy objects here, and only the
functions in :data:`FUNCTIONS` may be called. ``^`` is read as ``**``.
"""

from __future__ import annotations

import random
import re
import time

import mpmath
import sympy as sp

from .. import spec as ast
from ..errors import CnnCalcError, SpecError
from ..symbolic import within
from .result import Check, Derivation, Item
from .values import ARITHMETIC


class sigmoid(sp.Function):  # noqa: N801 -- named as it prints
    r"""The logistic function :math:`\sigma(u) = 1 / (1 + e^{-u})`.

    Kept as a named function so that its derivative prints as a textbook writes it,
    :math:`\sigma'(u) = \sigma(u)\,(1 - \sigma(u))`:

    >>> u = sp.Symbol("u", real=True)
    >>> sp.diff(sigmoid(u), u)
    (1 - sigmoid(u))*sigmoid(u)
    """

    @classmethod
    def eval(cls, u):
        if u.is_zero:
            return sp.S.Half
        return None

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, u, **kwargs):
        return 1 / (1 + sp.exp(-u))

    def _eval_mpmath(self):  # numeric values go through mpmath, as sympy's own functions
        return (lambda u: 1 / (1 + mpmath.exp(-u))), self.args

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_real or None


class relu(sp.Function):  # noqa: N801 -- named as it prints
    r"""The rectifier :math:`\max(0, u)`, with :math:`\operatorname{relu}'(0) = 0` as PyTorch.

    sympy's ``Heaviside(0)`` is 1/2; ``Heaviside(u, 0)`` makes the convention explicit:

    >>> u = sp.Symbol("u", real=True)
    >>> sp.diff(relu(u), u), relu(sp.Rational(-1, 2)), relu(3)
    (Heaviside(u, 0), 0, 3)
    """

    @classmethod
    def eval(cls, u):
        if u.is_extended_nonpositive:
            return sp.S.Zero
        if u.is_extended_positive:
            return u
        return None

    def fdiff(self, argindex=1):
        return sp.Heaviside(self.args[0], 0)

    def _eval_rewrite_as_Max(self, u, **kwargs):
        return sp.Max(0, u)

    def _eval_mpmath(self):
        return (lambda u: u if u > 0 else mpmath.mpf(0)), self.args

    def _eval_is_real(self):
        return self.args[0].is_real


# name -> the sympy function it calls; each takes one argument.
FUNCTIONS = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh,
    "asin": sp.asin, "acos": sp.acos, "atan": sp.atan,
    "exp": sp.exp, "log": sp.log, "ln": sp.log, "sqrt": sp.sqrt, "abs": sp.Abs,
    "sigmoid": sigmoid, "relu": relu,
}
CONSTANTS = {"pi": sp.pi}
MAX_POWER_DIGITS = 10_000  # 9**9**9 would take sympy minutes to write out
MAX_CHAIN_STEPS = 64
# sympy.simplify takes seconds to minutes on larger expressions (hyperbolic ones worst), so
# it is tried on a derivative up to this many operations, and on a difference to prove zero
MAX_SIMPLIFY_OPS = 12
MAX_PROOF_OPS = 30
MAX_EXPAND_OPS = 200  # expand is quick, but not on exponential forms of large expressions
# Every symbolic step (a simplification, a proof, a limit, a value at a point) runs under a
# time budget, and a derivation under a total one: ``tan(tan(x))`` once hung for good in
# evalf. A step out of time falls back to the exact unsimplified form, or is not claimed.
STEP_SECONDS = 0.75
TOTAL_SECONDS = 2.0
LIMIT_SECONDS = 4.0  # a limit asked for with --limit gets longer (tanh(w*x) as w → ∞: 1.3 s)
CHECK_DIGITS = 40
CHECK_TOLERANCE = sp.Float("1e-25", CHECK_DIGITS)  # relative to the values compared

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


# -- text -> sympy ---------------------------------------------------------------------

def parse_expression(text: str, what: str = "expression",
                     positive: frozenset[str] = frozenset()) -> sp.Expr:
    """An expression from text, through the layer language's parser (never ``eval``).

    Names are real symbols (positive ones for the names in ``positive``); numbers
    stay exact; only :data:`FUNCTIONS` may be called.

    >>> parse_expression("tanh(w*x)^2 + 0.5")
    tanh(w*x)**2 + 1/2
    """
    if not text.strip():
        raise CnnCalcError(f"{what}: empty")
    source = text.replace("^", "**")
    # source[i] came from text[origin[i]]: each "^" became two characters
    origin = [i for i, ch in enumerate(text) for _ in range(2 if ch == "^" else 1)]
    origin.append(len(text))

    def at(pos: int) -> int:
        return origin[max(0, min(pos, len(source)))]

    def fail(message: str, pos: int, end: int) -> SpecError:
        return SpecError(f"{what}: {message}", text, at(pos), max(1, at(end) - at(pos)))

    try:
        _refuse_implicit_products(source)
        items = ast.parse(source).items
    except SpecError as exc:  # the layer language's words, said of an expression
        message = exc.message.replace("a layer or a value", "a value").replace(
            "a layer or value", "a value")
        raise fail(message, exc.pos, exc.pos + exc.length) from None
    if len(items) > 1:
        raise fail("expected one expression; a second one starts here", items[1].pos,
                   items[1].end)
    return _Builder(fail, positive).build(items[0])


def _refuse_implicit_products(source: str) -> None:
    """``2x`` is not read as ``2*x``: the layer language would read ``3x5`` as a pair."""
    tokens = ast.tokenize(source)
    for tok, nxt in zip(tokens, tokens[1:]):
        if tok.kind == "NUM" and nxt.kind in ("NAME", "X") and nxt.pos == tok.pos + len(
                tok.text):
            name = _IDENTIFIER.match(source, nxt.pos).group()
            raise SpecError(f"write {tok.text}*{name} for a product", source, nxt.pos,
                            len(name))


class _Builder:
    """Syntax nodes -> sympy, refusing anything outside the whitelist."""

    def __init__(self, fail, positive: frozenset[str]):
        self.fail = fail
        self.positive = positive

    def build(self, node: ast.Node) -> sp.Expr:
        if isinstance(node, ast.Num):
            return sp.Rational(node.value.numerator, node.value.denominator)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Neg):
            return -self.build(node.operand)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Tuple):
            raise self.fail("a list or pair is not an expression", node.pos, node.end)
        raise self.fail("strings are not expressions", node.pos, node.end)

    def name(self, node: ast.Name) -> sp.Expr:
        if node.id in FUNCTIONS:
            raise self.fail(f"{node.id} is a function: write {node.id}(…)", node.pos,
                            node.end)
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        return variable(node.id, self.positive)

    def binop(self, node: ast.BinOp) -> sp.Expr:
        left, right = self.build(node.left), self.build(node.right)
        if node.op in ARITHMETIC:
            if node.op == "/" and right.is_zero:
                raise self.fail("division by zero", node.right.pos, node.right.end)
            return ARITHMETIC[node.op](left, right)
        if node.op == "**":
            return self.power(left, right, node)
        raise self.fail(f"the operation {node.op!r} is not supported", node.pos, node.end)

    def power(self, base: sp.Expr, exponent: sp.Expr, node: ast.BinOp) -> sp.Expr:
        if base.is_zero and exponent.is_negative:
            raise self.fail("division by zero", node.pos, node.end)
        if base.is_Rational and exponent.is_Rational and base != 0:
            size = abs(exponent) * max(len(str(base.p)), len(str(base.q)))
            if size > MAX_POWER_DIGITS:
                raise self.fail(f"the power is too large to write out (over "
                                f"{MAX_POWER_DIGITS:,} digits)", node.pos, node.end)
        return base**exponent

    def call(self, node: ast.Call) -> sp.Expr:
        end = node.pos + len(node.name)
        if node.name not in FUNCTIONS:
            raise self.fail(f"unknown function {node.name!r}; known: "
                            f"{', '.join(sorted(FUNCTIONS))}", node.pos, end)
        if len(node.args) != 1 or node.args[0].key is not None:
            raise self.fail(f"{node.name} takes one argument, as {node.name}(x)", node.pos,
                            node.end)
        return FUNCTIONS[node.name](self.build(node.args[0].value))


def variable(name: str, positive: frozenset[str] = frozenset()) -> sp.Symbol:
    """A real symbol, or a positive one when ``name`` is in ``positive``."""
    return sp.Symbol(name, positive=True) if name in positive else sp.Symbol(name, real=True)


def parse_names(text: str, what: str = "--wrt") -> list[str]:
    """``"w1,w2"`` -> ``["w1", "w2"]``: variable names, each once."""
    names = [n.strip() for n in text.split(",")]
    for name in names:
        if not _IDENTIFIER.fullmatch(name):
            raise CnnCalcError(f"{what}: {name!r} is not a variable name such as x or w1")
        if name in FUNCTIONS or name in CONSTANTS:
            raise CnnCalcError(f"{what}: {name!r} is a function or constant, not a variable")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CnnCalcError(f"{what}: {', '.join(repeated)} given twice")
    return names


def parse_point(text: str, what: str = "--limit") -> tuple[str, sp.Expr]:
    """``"w=oo"`` -> ``("w", oo)``; the point is ``oo``, ``-oo`` or an exact number."""
    name, eq, value = text.partition("=")
    if not eq:
        raise CnnCalcError(f"{what}: write NAME=POINT, e.g. w=oo")
    (name,) = parse_names(name, what)
    value = value.strip()
    if value in ("oo", "+oo", "inf", "+inf"):
        return name, sp.oo
    if value in ("-oo", "-inf"):
        return name, -sp.oo
    point = parse_expression(value, what)
    if not point.is_number:
        raise CnnCalcError(f"{what}: the point must be a number, oo or -oo, not {value!r}")
    return name, point


# -- the chain rule, one level at a time --------------------------------------------------

def chain_rule_steps(f: sp.Expr, x: sp.Symbol) -> list[tuple[sp.Expr, tuple[str, ...]]]:
    r""":math:`\partial f/\partial x` worked one rule at a time, as a textbook would.

    Each step replaces every unevaluated ``Derivative`` by one rule (sum, product,
    power, chain rule through a named function), and lists the rules it used. The
    last step holds no ``Derivative``.

    >>> x = sp.Symbol("x", real=True)
    >>> [e for e, _ in chain_rule_steps(sp.tanh(x**2), x)]
    [(1 - tanh(x**2)**2)*Derivative(x**2, x), 2*x*(1 - tanh(x**2)**2)]
    """
    expr, steps = _d(f, x), []
    while (pending := expr.atoms(sp.Derivative)) and len(steps) < MAX_CHAIN_STEPS:
        rules: set[str] = set()
        expr = expr.xreplace({d: _one_rule(d.expr, x, rules) for d in pending})
        steps.append((expr, tuple(sorted(rules))))
    return steps


def _d(u: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """``d u/dx`` left unevaluated, or its value when that needs no rule."""
    if u == x:
        return sp.S.One
    if x not in u.free_symbols:
        return sp.S.Zero
    return sp.Derivative(u, x)


def _one_rule(u: sp.Expr, x: sp.Symbol, rules: set[str]) -> sp.Expr:
    if u.is_Add:
        rules.add("sum rule")
        return sp.Add(*(_d(a, x) for a in u.args))
    if u.is_Mul:
        const = sp.Mul(*(a for a in u.args if x not in a.free_symbols))
        varying = [a for a in u.args if x in a.free_symbols]
        if len(varying) == 1:
            rules.add("constant factor")
            return const * _d(varying[0], x)
        rules.add("product rule")
        return const * sp.Add(*(sp.Mul(*varying[:i], *varying[i + 1:]) * _d(v, x)
                                for i, v in enumerate(varying)))
    if u.is_Pow:
        base, exponent = u.args
        if x not in exponent.free_symbols:
            rules.add("power rule")
            return exponent * base ** (exponent - 1) * _d(base, x)
        rules.add("exponential rule")
        return u * _d(exponent * sp.log(base), x)
    if isinstance(u, sp.Function) and len(u.args) == 1:
        rules.add(f"chain rule through {_function_name(u)}")
        return u.fdiff(1) * _d(u.args[0], x)
    rules.add("sympy.diff")
    return sp.diff(u, x)


def _function_name(u: sp.Function) -> str:
    return {"Abs": "abs"}.get(type(u).__name__, type(u).__name__)


# -- simplification and self-checks -------------------------------------------------------

def simplest(expr: sp.Expr) -> sp.Expr:
    """The shortest of ``expr`` and a few rewritings of it that use the same functions.

    ``sympy.simplify`` turns ``1 - tanh(x)**2`` into ``cosh(x)**(-2)``; a form
    that brings in functions the derivative did not have is not simpler to read,
    so it is passed over (ties keep the earlier form). Common factors are pulled
    out and fractions put together; ``simplify`` itself is only tried on small
    expressions (:data:`MAX_SIMPLIFY_OPS`), as it can run for minutes on large ones.

    >>> x = sp.Symbol("x", real=True)
    >>> simplest(sp.diff(sp.tanh(x), x))
    1 - tanh(x)**2
    """
    allowed = _function_types(expr)
    rewritings = [sp.factor_terms, lambda e: sp.factor_terms(sp.together(e))]
    if sp.count_ops(expr) <= MAX_SIMPLIFY_OPS:
        rewritings.append(sp.simplify)
    candidates = [expr, *(c for c in (_step(r, expr) for r in rewritings) if c is not None)]
    fitting = [c for c in candidates if _function_types(c) <= allowed]
    return min(fitting, key=sp.count_ops)


class _Deadline:
    """The time left to one derivation; each step gets at most :data:`STEP_SECONDS` of it."""

    end = None

    @classmethod
    def seconds(cls) -> float:
        if cls.end is None:
            return STEP_SECONDS
        return max(0.0, min(STEP_SECONDS, cls.end - time.monotonic()))


def _step(function, *args):
    """``function(*args)`` within the step's budget, or None (out of time, or sympy could
    not say: a step that fails is a step not taken, never a wrong claim)."""
    seconds = _Deadline.seconds()
    if seconds <= 0:
        return None
    try:
        return within(seconds, function, *args)
    except (TypeError, ValueError, ArithmeticError, NotImplementedError, RecursionError):
        return None


def _function_types(expr: sp.Expr) -> set[type]:
    return {type(f) for f in expr.atoms(sp.Function)}


def same_value(a: sp.Expr, b: sp.Expr) -> tuple[bool | None, str]:
    """Whether ``a == b``, and how that was decided; ``(None, "")`` when it could not be.

    Symbolic first (``expand`` and ``simplify``, on differences small enough for
    them to finish quickly, each under the step budget); failing that, both sides
    at three seeded random points to 40 digits, compared with a tolerance relative to
    their size (each side evaluated on its own: evalf of a difference that cancels
    to zero escalates its precision without end). A caller never claims what was not
    shown.
    """
    difference = a - b
    size = sp.count_ops(difference)
    if difference == 0 or (size <= MAX_EXPAND_OPS and _step(sp.expand, difference) == 0) or (
            size <= MAX_PROOF_OPS and _step(sp.simplify, difference) == 0):
        return True, "symbolically"
    symbols = sorted(difference.free_symbols, key=str)
    rng = random.Random(0)
    tried = 0
    for _ in range(3):
        point = {s: sp.Rational(rng.randint(11, 190), 100) for s in symbols}
        va, vb = _value_at(a, point), _value_at(b, point)
        if va is None or vb is None:
            continue
        if not _close(va, vb):
            where = ", ".join(f"{k}={v}" for k, v in point.items())
            return False, f"they differ at {where}"
        tried += 1
    return (True, f"numerically at {tried} random points, 40 digits") if tried else (None, "")


def _value_at(expr: sp.Expr, point: dict) -> tuple[mpmath.mpf, mpmath.mpf] | None:
    """``expr`` at ``point`` as (real part, imaginary part) to :data:`CHECK_DIGITS` digits,
    or None where it is not a finite number (a pole, a branch sympy leaves unevaluated)."""
    value = _step(lambda: sp.N(expr.xreplace(point), CHECK_DIGITS, maxn=4 * CHECK_DIGITS))
    if value is None or not value.is_number or value.is_finite is False:
        return None
    real, imag = value.as_real_imag()
    if not (real.is_Number and imag.is_Number) or not (real.is_finite and imag.is_finite):
        return None
    with mpmath.workdps(CHECK_DIGITS):
        return mpmath.mpf(real._to_mpmath(mpmath.mp.prec)), mpmath.mpf(
            imag._to_mpmath(mpmath.mp.prec))


def _close(a: tuple, b: tuple) -> bool:
    """Equal to :data:`CHECK_TOLERANCE`, relative to the values. A real quantity computed
    through complex intermediates (``exp(tan(x))`` written with exponentials) keeps an
    imaginary rounding residue of 1e-89: the parts are compared separately, each with
    the tolerance scaled by the whole size, so the residue never counts against it."""
    with mpmath.workdps(CHECK_DIGITS):
        scale = 1 + max(abs(a[0]), abs(a[1]), abs(b[0]), abs(b[1]))
        tolerance = mpmath.mpf(str(CHECK_TOLERANCE)) * scale
        return abs(a[0] - b[0]) <= tolerance and abs(a[1] - b[1]) <= tolerance


# -- the derivation ---------------------------------------------------------------------

def derive(text: str, wrt: str | None = None, limit: str | None = None,
           positive: str | None = None) -> Derivation:
    r"""The derivative of ``text`` (or its gradient for several ``wrt`` names), simplified.

    ``limit="w=oo"`` adds the limit of each derivative as ``w`` tends to the point;
    ``positive="x"`` declares ``x > 0`` (a limit may depend on a sign).

    >>> derive("tanh(x)").result("df/dx")
    1 - tanh(x)**2
    """
    _Deadline.end = time.monotonic() + TOTAL_SECONDS
    try:
        return _derive(text, wrt, limit, positive)
    finally:
        _Deadline.end = None


def _derive(text: str, wrt: str | None, limit: str | None, positive: str | None) -> Derivation:
    positives = frozenset(parse_names(positive, "--positive")) if positive else frozenset()
    f = parse_expression(text, positive=positives)
    variables = _variables(f, wrt, positives)
    raw = [sp.diff(f, x) for x in variables]
    derivs = [simplest(d) for d in raw]
    labels = _labels(f, variables)
    results = [Item(label, d, latex=latex) for (label, latex), d in zip(labels, derivs)]
    if len(variables) > 1:
        results.insert(0, Item("∇f", sp.Matrix(derivs),
                               note=f"(∂f/∂{', ∂f/∂'.join(map(str, variables))})ᵀ",
                               latex=r"\nabla f"))
    if limit:
        results += _limits(limit, derivs, labels, positives)
    steps = [Item(label, expr, note=", ".join(rules), latex=latex)
             for x, (label, latex) in zip(variables, labels)
             for expr, rules in chain_rule_steps(f, x)]
    checks, notes = _checks(f, variables, raw, derivs, labels, steps)
    inputs = (Item("f", f, latex="f"),
              Item("with respect to", ", ".join(map(str, variables))))
    return Derivation("Derivative" if len(variables) == 1 else "Gradient", tuple(results),
                      tuple(steps), tuple(checks), tuple(notes) + _conventions(f), inputs)


def _variables(f: sp.Expr, wrt: str | None, positives: frozenset[str]) -> list[sp.Symbol]:
    names = [s.name for s in sorted(f.free_symbols, key=str)]
    if wrt is None:
        if len(names) != 1:
            found = f"it has the variables {', '.join(names)}" if names else "it is a constant"
            raise CnnCalcError(f"choose the variable(s) with --wrt ({found})")
        wrt = names[0]
    return [variable(n, positives) for n in parse_names(wrt)]


def _labels(f: sp.Expr, variables: list[sp.Symbol]) -> list[tuple[str, str]]:
    """``df/dx`` for a function of one variable, ``∂f/∂x`` otherwise."""
    d = "d" if len(f.free_symbols) <= 1 and len(variables) == 1 else "∂"
    tex = "d" if d == "d" else r"\partial "
    return [(f"{d}f/{d}{x}", rf"\frac{{{tex}f}}{{{tex}{sp.latex(x)}}}") for x in variables]


def _limits(text, derivs, labels, positives) -> list[Item]:
    name, point = parse_point(text)
    var = variable(name, positives)
    arrow = {sp.oo: "∞", -sp.oo: "-∞"}.get(point, str(point))
    items = []
    for d, (label, latex) in zip(derivs, labels):
        try:
            value = within(LIMIT_SECONDS, sp.limit, d, var, point)
        except (NotImplementedError, ValueError) as exc:
            raise CnnCalcError(f"--limit: sympy cannot decide the limit of {label} as {name} → "
                               f"{arrow} ({exc}); declare signs with --positive or put "
                               f"numbers in place of symbols") from None
        if value is None:
            raise CnnCalcError(f"--limit: sympy did not find the limit of {label} as {name} → "
                               f"{arrow} within {LIMIT_SECONDS:g} s; declare signs with "
                               "--positive or put numbers in place of symbols")
        items.append(Item(f"lim {name}→{arrow} {label}", value,
                          latex=rf"\lim_{{{sp.latex(var)} \to {sp.latex(point)}}} {latex}"))
    return items


def _checks(f, variables, raw, derivs, labels, steps) -> tuple[list[Check], list[str]]:
    """Verify the simplification, the worked steps and, where it differs, the exp form."""
    checks, notes = [], []
    exp_form = _step(f.rewrite, sp.exp)
    last_step = {item.label: item.value for item in steps}  # later steps overwrite earlier
    for x, r, d, (label, _) in zip(variables, raw, derivs, labels):
        claims = [(f"{label}: the simplified form equals sympy.diff's", r, d)]
        if label in last_step:
            claims.append((f"{label}: the chain-rule steps end at the same derivative",
                           last_step[label], d))
        exp_derivative = None if exp_form in (None, f) else _step(sp.diff, exp_form, x)
        if exp_derivative is not None:
            claims.append((f"{label}: equals the derivative of f written with exponentials",
                           exp_derivative, d))
        for claim, a, b in claims:
            holds, how = same_value(a, b)
            if holds is None:
                notes.append(f"Could not confirm: {claim}.")
            else:
                checks.append(Check(f"{claim} ({how})", holds))
    return checks, notes


def _conventions(f: sp.Expr) -> tuple[str, ...]:
    notes = []
    if f.atoms(relu):
        notes.append("relu'(u) = Heaviside(u, 0), printed θ(u, 0): the derivative at 0 "
                     "is taken as 0, as PyTorch does.")
    if f.atoms(sigmoid):
        notes.append("sigmoid(u) = 1/(1 + exp(-u)), so sigmoid'(u) = sigmoid(u)(1 - sigmoid(u)).")
    return tuple(notes)
