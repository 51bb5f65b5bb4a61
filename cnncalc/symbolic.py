"""Closed forms for symbolic sizes, a fast equality test, and sympy under a time budget.

Output sizes are built in one canonical form, ``floor((x + a)/m) + b`` with ``x`` an
integer-valued expression without a constant term, ``0 <= a < m`` and ``b`` an integer
expression, printed as ``floor(x/m)`` when ``a = 0`` and ``ceiling(x/m)`` when
``a = m - 1``. A window layer on such a size folds into the same form, with the
identity that holds for every integer ``y`` and ``e`` and positive integers ``m``, ``s``:

.. math:: \\left\\lfloor \\frac{\\lfloor y/m \\rfloor + e}{s} \\right\\rfloor
          = \\left\\lfloor \\frac{y + e m}{m s} \\right\\rfloor

(``floor(y/m) + e = floor((y + e m)/m)``, and ``floor(floor(z/m)/s) = floor(z/(m s))``).
So three 3x3 stride-2 convolutions give ``ceiling(H/8)``, not three nested floors, and the
cost of a deep stack stays linear in its depth. Symbolic strides fold the same way into
one ``floor`` over the product of the strides, whose numerator gains a term per layer:
a size that grows past :data:`NAME_NODES` is given a name of its own (:class:`Size`,
``H₃ = floor((H₂ + 2*P - F)/S) + 1``), so each row stays a short formula. ``sympy.simplify``
is never on this path; where it is still wanted (a receptive field's size, a comparison's
ratio) :func:`tidy` runs it under a time budget and keeps the exact unsimplified form when
the budget runs out.
"""

from __future__ import annotations

import math
import random
import signal
import threading
from contextlib import contextmanager

import sympy as sp

SIMPLIFY_SECONDS = 1.0  # the most one simplification may take before the exact form is kept
# A size of more sympy nodes than this gets a name: one conv(k=F, s=S, p=P) on H is 15
# nodes, two folded into one floor are 24, and each further layer adds about nine.
NAME_NODES = 20


def _rounding_and_rest(size: sp.Expr):
    """``(term, rest)``: the one floor or ceiling added into ``size`` (None if there is
    none) and the rest, which must be integer-valued; None if there are several."""
    rounded = [t for t in sp.Add.make_args(size) if isinstance(t, (sp.floor, sp.ceiling))]
    if len(rounded) > 1:
        return None
    rest = size - rounded[0] if rounded else size
    if rest.is_integer is not True:
        return None
    return (rounded[0] if rounded else None), rest


def _split(size: sp.Expr) -> tuple[sp.Expr, int, int, sp.Expr] | None:
    """``size`` as ``(x, a, m, b)`` meaning ``floor((x + a)/m) + b``, or None.

    ``x`` is integer-valued without a constant term, ``m`` a positive integer,
    ``0 <= a < m``, ``b`` an integer-valued expression (a plain integer size is
    ``(x, 0, 1, b)``).
    """
    split = _rounding_and_rest(size)
    if split is None:
        return None
    term, rest = split
    if term is None:
        const, x = rest.as_coeff_Add()
        return x, 0, 1, const
    const, varying = term.args[0].as_coeff_Add()
    coeffs = [t.as_coeff_Mul()[0] for t in sp.Add.make_args(varying)]
    if not const.is_Rational or not all(c.is_Rational for c in coeffs):
        return None
    m = math.lcm(int(const.q), *(int(c.q) for c in coeffs))
    x = sp.expand(m * varying)
    if x.is_integer is not True:
        return None
    a = int(m * const)
    if isinstance(term, sp.ceiling):  # ceil(y/m) = floor((y + m - 1)/m) for integer y
        a += m - 1
    return x, a % m, m, rest + a // m


def _join(x: sp.Expr, a: int, m: int, b: sp.Expr) -> sp.Expr:
    """``floor((x + a)/m) + b`` written the way a person would (``ceiling(x/m)``, ...)."""
    if m == 1:
        return x + a + b
    # H/m with m > 1 has no whole part for sympy to take out: skip its assumption queries
    plain = x.is_Symbol
    if a == 0:
        return sp.floor(x / m, evaluate=not plain) + b
    if a == m - 1:
        return sp.ceiling(x / m, evaluate=not plain) + b
    return sp.floor((x + a) / m) + b


def floor_div(size: sp.Expr, shift: sp.Expr, stride: sp.Expr) -> sp.Expr | None:
    """``floor((size + shift)/stride)`` folded into one rounding, or None.

    With whole-number strides the result is the canonical ``floor((x + a)/m) + b``; with
    a symbolic stride ``S`` it is ``floor(N/D)``, ``N`` a polynomial and ``D`` a product
    of strides (the same identity, without reducing ``a`` modulo ``m``), so a deep stack
    of ``conv(k=F, s=S, p=P)`` is one floor over ``S**n``, not ``n`` nested ones whose
    assumption queries grow faster than the depth. None when the identity does not
    apply (a size or shift not known to be an integer): the caller keeps the textbook
    formula.
    """
    if not (stride.is_integer and stride.is_positive) or shift.is_integer is not True:
        return None
    if size.is_Integer and shift.is_Integer and stride.is_Integer:
        return sp.Integer((int(size) + int(shift)) // int(stride))
    parts = _split(size) if stride.is_Integer else None
    if parts is not None:
        x, a, m, b = parts
        numerator = sp.expand(x + a + (b + shift) * m)
        const, varying = numerator.as_coeff_Add()
        if const.is_Integer:
            total = m * int(stride)
            return _join(varying, int(const) % total, total, int(const) // total)
    fraction = _fraction(size)
    if fraction is None:
        return None
    numerator, denominator, b = fraction
    numerator = numerator + sp.expand((b + shift) * denominator)  # only the new terms
    denominator = denominator * stride
    # evaluate=False: sympy's floor would query the assumptions of every term of the
    # numerator (seconds at depth 40) to find whole parts that a symbolic divisor never has
    folded = sp.floor(numerator / denominator, evaluate=False)
    if len(_FOLDED) > 100_000:
        _FOLDED.clear()
    _FOLDED[folded] = (numerator, denominator)
    return folded


# floor(N/D) built here -> (N, D): reading them back with as_numer_denom and asking
# N.is_integer again would walk the whole numerator, which grows with the depth
_FOLDED: dict[sp.Expr, tuple[sp.Expr, sp.Expr]] = {}


def _fraction(size: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr] | None:
    """``size`` as ``(N, D, b)`` meaning ``floor(N/D) + b``, ``N`` and ``b`` integer-valued
    and ``D`` a positive integer expression; None if it is not of that form."""
    split = _rounding_and_rest(size)
    if split is None:
        return None
    term, rest = split
    if term is None:
        return rest, sp.Integer(1), sp.Integer(0)
    if term in _FOLDED:
        return (*_FOLDED[term], rest)
    numerator, denominator = term.args[0].as_numer_denom()
    if numerator.is_integer is not True or not (denominator.is_integer
                                                and denominator.is_positive):
        return None
    if isinstance(term, sp.ceiling):  # ceil(N/D) = floor((N + D - 1)/D)
        numerator = numerator + denominator - 1
    return numerator, denominator, rest


def window_size(size: sp.Expr, k: sp.Expr, s: sp.Expr, p: sp.Expr, d: sp.Expr,
                ceil_mode: bool = False) -> sp.Expr | None:
    """The output size ``floor((I + 2p - d(k - 1) - 1)/s) + 1`` (``ceil`` under
    ``ceil_mode``) of a sliding window, in closed form; None where it has none.

    >>> H = sp.Symbol("H", integer=True, positive=True)
    >>> one, two, three = (sp.Integer(v) for v in (1, 2, 3))
    >>> h = H
    >>> for _ in range(3):
    ...     h = window_size(h, three, two, one, one)
    >>> h
    ceiling(H/8)
    """
    shift = 2 * p - d * (k - 1) - 1
    if ceil_mode:
        shift = shift + s - 1  # ceil(y/s) = floor((y + s - 1)/s)
    out = floor_div(size, shift, s)
    return None if out is None else out + 1


def ceil_mode_size(out: sp.Expr, size: sp.Expr, s: sp.Expr, p: sp.Expr) -> sp.Expr:
    """A ``ceil_mode`` pooling's size after PyTorch drops a last window that would start in
    the right padding: windows start at ``0, s, 2s, ...`` up to ``I + p - 1``, so the size
    is ``min(out, floor((I + p - 1)/s) + 1)``, decided exactly where both are closed forms
    over the same ``x`` and ``m`` (``floor((x + c)/m)`` grows with ``c``)."""
    starts = floor_div(size, p - 1, s)
    if starts is None:
        return sp.Min(out, sp.floor((size + p - 1) / s) + 1)
    return smaller(out, starts + 1)


def smaller(u: sp.Expr, v: sp.Expr) -> sp.Expr:
    """The smaller of two sizes: decided for numbers and for closed forms
    ``floor((x + a)/m) + b`` with the same ``x`` and ``m``; otherwise ``Min(u, v)``."""
    if u.is_number and v.is_number:
        return min(u, v)
    pu, pv = _split(u), _split(v)
    if pu is not None and pv is not None and pu[2] == pv[2] and sp.expand(pu[0] - pv[0]) == 0:
        gap = sp.expand(pu[1] - pv[1] + (pu[3] - pv[3]) * pu[2])
        if gap.is_number:
            return u if gap <= 0 else v
    return sp.Min(u, v)


# -- named sizes ----------------------------------------------------------------------

_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_DIM_ORDER = "LDHW"


class Size(sp.Symbol):
    """A size named after the row that made it: ``H₃``, the height after layer 3, standing
    for ``definition`` (exact, in the input's symbols and earlier sizes).

    The definition is part of the symbol: two analyses' ``H₃`` that mean different things
    are different symbols, and the subscript keeps it apart from anything a user can type.
    ``subs`` sees through it (``expr.subs(H, 224)`` reaches into the definitions); ``xreplace``
    does not (use :func:`unfold` first).
    """

    __slots__ = ("dim", "index", "definition", "_reach", "_unfolded")

    def __new__(cls, dim: str, index: int, definition: sp.Expr):
        # one object per meaning: comparing two equal sizes would otherwise compare their
        # definitions, and those the earlier sizes' definitions, a recursion as deep as
        # the network
        key = (dim, index, definition)
        if key in _SIZES:
            return _SIZES[key]
        assumptions = {"integer": True, "positive": True}
        cls._sanitize(assumptions, cls)
        obj = sp.Symbol.__xnew__(cls, dim + str(index).translate(_SUBSCRIPT), **assumptions)
        obj.dim, obj.index, obj.definition = dim, index, definition
        obj._reach = obj._unfolded = None
        if len(_SIZES) > 100_000:
            _SIZES.clear()
        _SIZES[key] = obj
        return obj

    def __getnewargs_ex__(self):
        return (self.dim, self.index, self.definition), {}

    def __getstate__(self):
        return {}

    def _hashable_content(self):
        return (*super()._hashable_content(), self.definition)

    def _latex(self, printer) -> str:
        return f"{self.dim}_{{{self.index}}}"

    @property
    def reach(self) -> frozenset:
        """Every symbol the definition depends on, through earlier sizes too."""
        if self._reach is None:
            found = set(self.definition.free_symbols)
            for s in list(found):
                if isinstance(s, Size):
                    found |= s.reach
            self._reach = frozenset(found)
        return self._reach

    @property
    def unfolded(self) -> sp.Expr:
        """The definition in the input's symbols alone."""
        if self._unfolded is None:
            self._unfolded = unfold(self.definition)
        return self._unfolded

    def _eval_subs(self, old, new):
        if old in self.reach:
            return self.definition._subs(old, new)
        return super()._eval_subs(old, new)


_SIZES: dict[tuple, Size] = {}


def unfold(expr):
    """``expr`` with every named size replaced by its definition, down to the input's
    symbols (as long as the unnamed form: for comparisons and checks, not for printing)."""
    if not isinstance(expr, sp.Basic):
        return expr
    sizes = expr.atoms(Size)
    return expr.xreplace({s: s.unfolded for s in sizes}) if sizes else expr


def named(size: sp.Expr, dim: str, index: int) -> sp.Expr:
    """``size``, or a :class:`Size` named ``dim`` + ``index`` standing for it: when it has
    grown past :data:`NAME_NODES`, or when it is computed from a named size (a chain once
    named stays named, rather than alternating between names and one-step formulas);
    a named size plus a whole number (an unpadded stride-1 window) keeps its form."""
    if size.is_number or size.is_Symbol:
        return size
    inner = size.atoms(Size)
    if inner:
        if len(inner) == 1 and (size - next(iter(inner))).is_Integer:
            return size
        return Size(dim, index, size)
    if any(i >= NAME_NODES for i, _ in enumerate(sp.preorder_traversal(size))):
        return Size(dim, index, size)
    return size


def named_in(values) -> list[Size]:
    """The named sizes in ``values`` and in their definitions, in row order (``H`` before
    ``W``): the "where" list of an analysis."""
    found: set[Size] = set()
    todo = [v for v in values if isinstance(v, Size)]
    todo += [s for v in values if isinstance(v, sp.Basic) and not v.is_Atom
             for s in v.atoms(Size)]
    while todo:
        s = todo.pop()
        if s not in found:
            found.add(s)
            todo += s.definition.atoms(Size)
    return sorted(found, key=lambda s: (s.index, _DIM_ORDER.find(s.dim), s.name))


def input_symbols(symbols) -> set[sp.Symbol]:
    """``symbols`` with each named size replaced by the input symbols it stands for."""
    out: set[sp.Symbol] = set()
    for s in symbols:
        if isinstance(s, Size):
            out |= {r for r in s.reach if not isinstance(r, Size)}
        else:
            out.add(s)
    return out


def same(a: sp.Expr, b: sp.Expr) -> bool:
    """Whether two sizes are equal for every value of their symbols.

    Equal canonical forms (``floor((x + a)/m) + b``) are the usual case; sizes that
    differ at a random point (positive integers for every symbol) are different; only
    what is left goes to ``simplify``, under the time budget (an undecided pair counts
    as different). Named sizes are written out first.
    """
    a, b = sp.sympify(a), sp.sympify(b)
    if a == b:
        return True
    a, b = unfold(a), unfold(b)
    pa, pb = _split(a), _split(b)
    if pa is not None and pb is not None and pa[1:3] == pb[1:3] and sp.expand(
            pa[0] - pb[0]) == 0 and sp.expand(pa[3] - pb[3]) == 0:
        return True
    difference = a - b
    if difference.is_number:
        return difference == 0
    symbols = sorted(difference.free_symbols, key=str)
    rng = random.Random(0)
    for _ in range(4):
        point = {s: sp.Integer(rng.randint(1, 1000)) for s in symbols}
        value = difference.xreplace(point)
        if value.is_number and value != 0:
            return False
    return tidy(difference) == 0


def witness(a: sp.Expr, b: sp.Expr) -> dict | None:
    """Symbol values (powers of two first: the sizes networks are built for) at which two
    sizes are equal, or None if none is found: ``2*floor(H/2)`` and ``H`` meet at H = 64."""
    difference = unfold(sp.sympify(a)) - unfold(sp.sympify(b))  # values for input symbols
    symbols = sorted(difference.free_symbols, key=str)
    rng = random.Random(0)
    points = [{s: sp.Integer(v) for s in symbols} for v in (64, 256, 1024, 96, 224)]
    points += [{s: sp.Integer(rng.randint(1, 1000)) for s in symbols} for _ in range(8)]
    for point in points:
        if difference.xreplace(point) == 0:
            return point
    return None


def tidy(expr: sp.Expr, seconds: float = SIMPLIFY_SECONDS) -> sp.Expr:
    """``sympy.simplify(expr)`` when it finishes within ``seconds``, else ``expr`` (exact,
    only not simplified). Numbers are returned as they are."""
    expr = sp.sympify(expr)
    if expr.is_number or expr.is_Atom:
        return expr
    done = within(seconds, sp.simplify, expr)
    return expr if done is None else done


class _OutOfTime(BaseException):
    """Not an Exception: sympy's own ``except Exception`` must not swallow it."""


@contextmanager
def _alarm(seconds: float):
    def ring(signum, frame):
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def within(seconds: float, function, *args, **kwargs):
    """``function(*args, **kwargs)``, or None when it takes more than ``seconds``.

    The budget is a timer signal, so it holds in the main thread of a process (the CLI);
    elsewhere (a worker thread, a platform without ``SIGALRM``) the call runs unbounded.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "setitimer") or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        return function(*args, **kwargs)
    try:
        with _alarm(seconds):
            return function(*args, **kwargs)
    except _OutOfTime:
        return None
    except RecursionError:
        return None
