r"""Cross-correlation in the homework's notation ``X ⋆ Y``: X slides over a fixed Y.

For vectors (0-based indices, sums over the ``i`` where both factors exist)

.. math::  (X \star Y)[k] = \sum_i X[i]\, Y[i + k - (n_X - 1)],
           \qquad k = 0, \dots, n_X + n_Y - 2,

so ``k = 0`` is the start the homework problems describe: the last element of X over the
first of Y. This is ``scipy.signal.correlate(Y, X)`` (note the order) and, for
matrices, ``scipy.signal.correlate2d(Y, X)`` with the same sum along each axis.
A vector is handled as a one-column matrix, so one 2-D routine serves both.

Reversing the sliding direction gives ``X ⋆ Y = reverse(Y ⋆ X)`` (a 180°
rotation for matrices). The map ``x ↦ w ⋆ x`` is linear, ``w ⋆ x = C_w x``,
and so is ``w ↦ w ⋆ x``, ``w ⋆ x = C_x w``; ``C_x`` is the Jacobian
``∂(w ⋆ x)/∂w`` that reverse-mode differentiation needs. Matrices are
flattened row by row (``vec``) for ``C_w`` and ``C_x``.

>>> correlate([3, 2, 1], [4, 6, 3, 9]).T
Matrix([[4, 14, 27, 33, 27, 27]])
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from ..errors import CnnCalcError
from .result import Check, Derivation, Item
from .values import parse_array, shape_of

MODES = ("full", "valid", "same")
MAX_STEPS = 64  # the worked solution lists at most this many output elements


# --- the mathematics --------------------------------------------------------------------------

def as_matrix(values) -> sp.Matrix:
    """A sympy Matrix from a Matrix or nested lists; a flat sequence becomes a column."""
    if isinstance(values, sp.MatrixBase):
        matrix = sp.Matrix(values)
    elif values and isinstance(values[0], (list, tuple)):
        matrix = sp.Matrix([[sp.sympify(v) for v in row] for row in values])
    else:
        matrix = sp.Matrix([sp.sympify(v) for v in values])
    if matrix.rows == 0 or matrix.cols == 0:
        raise CnnCalcError("correlate: an empty vector or matrix")
    return matrix


def window(n_x: int, n_y: int, mode: str, one_d: bool = True) -> range:
    """The full-correlation indices that ``mode`` keeps along one axis, as scipy does.

    full: all ``n_x + n_y - 1``; valid: the ``n_y - n_x + 1`` where X lies wholly
    inside Y; same: ``n_y`` of them (Y's size), centred. For an even-sized X the
    centre is ambiguous and scipy answers both ways: ``scipy.signal.correlate``
    starts at ``⌊(n_x-1)/2⌋``, ``scipy.signal.correlate2d`` at ``⌊n_x/2⌋``; 1-D
    follows the first and 2-D the second.
    """
    if mode == "full":
        return range(n_x + n_y - 1)
    if mode == "valid":
        return range(n_x - 1, n_y)
    if mode == "same":
        start = (n_x - 1) // 2 if one_d else n_x // 2
        return range(start, start + n_y)
    raise CnnCalcError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")


def windows(x_shape: tuple[int, int], y_shape: tuple[int, int], mode: str,
            one_d: bool) -> list[tuple[int, int]]:
    """The full-correlation positions ``(row, col)`` that ``mode`` keeps, row by row."""
    _require_fit(x_shape, y_shape, mode)
    return [(r, c) for r in window(x_shape[0], y_shape[0], mode, one_d)
            for c in window(x_shape[1], y_shape[1], mode, one_d)]


def overlap(k: int, n_x: int, n_y: int) -> range:
    """The ``i`` with ``X[i]`` over ``Y[i + k - (n_x - 1)]`` at full index ``k`` (both in range)."""
    shift = k - (n_x - 1)
    return range(max(0, -shift), min(n_x, n_y - shift))


def terms(x: sp.Matrix, y: sp.Matrix, kr: int, kc: int) -> list[tuple[tuple, tuple]]:
    """The index pairs ``((i, j), (p, q))``: the products ``X[i,j]·Y[p,q]`` of entry (kr, kc)."""
    sr, sc = kr - (x.rows - 1), kc - (x.cols - 1)
    return [((i, j), (i + sr, j + sc))
            for i in overlap(kr, x.rows, y.rows) for j in overlap(kc, x.cols, y.cols)]


def _require_fit(x_shape: tuple[int, int], y_shape: tuple[int, int], mode: str) -> None:
    """Valid mode slides X only where it lies inside Y; refuse a kernel larger than the input.

    scipy would swap the inputs instead (keeping the positions where Y lies inside
    X); the homework's ``X ⋆ Y`` has X sliding, so there is no such position to keep.
    """
    if mode == "valid" and (x_shape[0] > y_shape[0] or x_shape[1] > y_shape[1]):
        raise CnnCalcError(f"valid mode needs X (the sliding kernel) to fit inside Y, but X is "
                           f"{_size(x_shape)} and Y is {_size(y_shape)}: use --mode full or "
                           "same, or swap them")


def _size(shape: tuple[int, int]) -> str:
    return f"{shape[0]}" if shape[1] == 1 else f"{shape[0]}x{shape[1]}"


def correlate(x, y, mode: str = "full") -> sp.Matrix:
    """``X ⋆ Y`` as a sympy Matrix (a column for vectors), entries expanded.

    Flat sequences are vectors (matching ``scipy.signal.correlate(Y, X, mode)``);
    nested lists and Matrices are matrices (``scipy.signal.correlate2d(Y, X, mode)``).

    >>> correlate([[1, 2], [3, 4]], [[1, 0, 2], [0, 1, 0], [2, 0, 1]], "valid")
    Matrix([
    [5, 7],
    [8, 5]])
    """
    return _correlate(as_matrix(x), as_matrix(y), mode, are_vectors(x, y))


def _correlate(x: sp.Matrix, y: sp.Matrix, mode: str, one_d: bool) -> sp.Matrix:
    cells = windows(x.shape, y.shape, mode, one_d)
    rows = len(window(x.rows, y.rows, mode, one_d))
    return sp.Matrix(rows, len(cells) // rows, [
        sp.expand(sp.Add(*(x[a] * y[b] for a, b in terms(x, y, kr, kc)))) for kr, kc in cells])


def are_vectors(x, y) -> bool:
    """Whether X and Y are both vectors (True) or both matrices (False); refuse a mix."""
    if _is_vector(x) != _is_vector(y):
        raise CnnCalcError(f"X is {'a vector' if _is_vector(x) else 'a matrix'} and Y "
                           f"{'a vector' if _is_vector(y) else 'a matrix'}: give both as "
                           "vectors or both as matrices")
    return _is_vector(x)


def _sized(values, n: int | Sequence[int]) -> bool:
    """Whether a vector comes with a length (True) or a matrix with a shape (False)."""
    if _is_vector(values) != isinstance(n, int):
        raise CnnCalcError("give a vector with a length, or a matrix with a (rows, cols) shape")
    return isinstance(n, int)


def _is_vector(values) -> bool:
    if isinstance(values, sp.MatrixBase):
        return False
    return len(values) == 0 or not isinstance(values[0], (list, tuple, sp.MatrixBase))


def _shape(n: int | Sequence[int]) -> tuple[int, int]:
    return (n, 1) if isinstance(n, int) else (n[0], n[1])


def correlation_matrix(w, n: int | Sequence[int], mode: str = "full") -> sp.Matrix:
    """``C_w`` with ``vec(w ⋆ x) = C_w vec(x)`` for every x of length ``n`` (or shape ``n``).

    From the sum, ``(w ⋆ x)[k] = Σ_j w[j - k + n_w - 1] x[j]``: row k of ``C_w``
    holds w starting at column ``k - (n_w - 1)`` (a Toeplitz matrix); in 2-D the
    same along both axes, rows and columns in row-major order.

    >>> correlation_matrix([1, 2], 2)
    Matrix([
    [2, 0],
    [1, 2],
    [0, 1]])
    """
    return _c_w(as_matrix(w), _shape(n), mode, _sized(w, n))


def _c_w(w: sp.Matrix, shape: tuple[int, int], mode: str, one_d: bool) -> sp.Matrix:
    outputs = windows(w.shape, shape, mode, one_d)

    def entry(o: int, col: int) -> sp.Expr:
        (kr, kc), (p, q) = outputs[o], divmod(col, shape[1])
        i, j = p - kr + w.rows - 1, q - kc + w.cols - 1
        return w[i, j] if 0 <= i < w.rows and 0 <= j < w.cols else sp.S.Zero

    return sp.Matrix(len(outputs), shape[0] * shape[1], entry)


def jacobian_matrix(x, k: int | Sequence[int], mode: str = "full") -> sp.Matrix:
    """``C_x = ∂(w ⋆ x)/∂w`` with ``vec(w ⋆ x) = C_x vec(w)`` for a kernel of length (shape) k.

    From the same sum, ``(w ⋆ x)[k] = Σ_i x[i + k - (n_w - 1)] w[i]``: row k holds the
    part of x under the kernel at that position.

    >>> jacobian_matrix([4, 6, 3], 2)
    Matrix([
    [0, 4],
    [4, 6],
    [6, 3],
    [3, 0]])
    """
    return _c_x(as_matrix(x), _shape(k), mode, _sized(x, k))


def _c_x(x: sp.Matrix, shape: tuple[int, int], mode: str, one_d: bool) -> sp.Matrix:
    outputs = windows(shape, x.shape, mode, one_d)

    def entry(o: int, col: int) -> sp.Expr:
        (kr, kc), (i, j) = outputs[o], divmod(col, shape[1])
        p, q = i + kr - (shape[0] - 1), j + kc - (shape[1] - 1)
        return x[p, q] if 0 <= p < x.rows and 0 <= q < x.cols else sp.S.Zero

    return sp.Matrix(len(outputs), shape[0] * shape[1], entry)


def vec(m: sp.Matrix) -> sp.Matrix:
    """The entries of ``m`` row by row, as a column."""
    return sp.Matrix(m.rows * m.cols, 1, list(m))


def equal(a: sp.Matrix, b: sp.Matrix) -> bool:
    """Exact (symbolic) equality of two matrices of the same shape."""
    return a.shape == b.shape and all(sp.expand(u - v) == 0 for u, v in zip(a, b))


def generic(shape: tuple[int, int], name: str) -> sp.Matrix:
    """A matrix of fresh real symbols, to check an identity for every value at once."""
    return sp.Matrix(*shape, lambda i, j: sp.Dummy(f"{name}{i}{j}", real=True))


# --- parsing user text ------------------------------------------------------------------------

def parse_operand(text: str, what: str) -> list:
    """``"3,2,1"`` or ``"[[1,2],[3,4]]"`` as a flat or nested list of exact values."""
    array = parse_array(text, what)
    dims = len(shape_of(array, what))
    if dims > 2:
        raise CnnCalcError(f"{what}: expected a vector or a matrix, got {dims} dimensions")
    return array


# --- the derivation ---------------------------------------------------------------------------

def derive(x_text: str, y_text: str, mode: str = "full", matrix: bool = False,
           jacobian: bool = False) -> Derivation:
    """The derivation ``cnncalc correlate`` prints: X ⋆ Y, its steps, and what was checked."""
    x_list, y_list = parse_operand(x_text, "X"), parse_operand(y_text, "Y")
    one_d = are_vectors(x_list, y_list)
    x, y = as_matrix(x_list), as_matrix(y_list)
    parts = [_correlation_part(x, y, mode, one_d)]
    if matrix:
        parts.append(_c_w_part(x, y, mode, one_d))
    if jacobian:
        parts.append(_c_x_part(x, y, mode, one_d))
    notes = []
    if (matrix or jacobian) and not one_d:
        notes.append("C_w and C_x act on matrices flattened row by row (vec), and give "
                     "vec(w ⋆ x).")
    if (matrix or jacobian) and mode != "full":
        notes.append(f"In {mode} mode C_w and C_x keep the rows of the full matrices that "
                     f"{mode} mode keeps.")
    shown = _shown(one_d)

    def joined(field: str) -> tuple:
        return sum((getattr(p, field) for p in parts), ())

    return Derivation(f"Cross-correlation X ⋆ Y ({mode}, {'1-D' if one_d else '2-D'})",
                      joined("results"), joined("steps"), joined("checks"),
                      joined("notes") + tuple(notes), (Item("X", shown(x)), Item("Y", shown(y))))


def _correlation_part(x: sp.Matrix, y: sp.Matrix, mode: str, one_d: bool) -> Derivation:
    """X ⋆ Y with its steps; in full mode also Y ⋆ X and the reversal between them."""
    result, shown = _correlate(x, y, mode, one_d), _shown(one_d)
    results = [Item("X ⋆ Y", shown(result), f"{mode} cross-correlation, X slides over Y",
                    r"X \star Y")]
    checks, notes = [], [convention_note(one_d), mode_note(mode, one_d)]
    if mode == "full":
        reverse = _correlate(y, x, mode, one_d)
        results.append(Item("Y ⋆ X", shown(reverse), "Y slides over X", r"Y \star X"))
        checks.append(_reverse_check(result, reverse, one_d))
        notes.append("X ⋆ Y = Y ⋆ X here, but cross-correlation is not commutative in general."
                     if equal(result, reverse) else
                     "X ⋆ Y ≠ Y ⋆ X: cross-correlation is not commutative, only reversed.")
    return Derivation("", tuple(results), tuple(correlation_steps(x, y, mode, one_d)),
                      tuple(checks), tuple(notes))


def _c_w_part(x: sp.Matrix, y: sp.Matrix, mode: str, one_d: bool) -> Derivation:
    c_w = _c_w(x, y.shape, mode, one_d)
    item = Item("C_w", c_w, f"{_linear('C_w x', one_d)} with w = X, x = Y", "C_w")
    return Derivation("", (item,), (Item("C_w[k, j]" if one_d else "C_w[(r,c), (p,q)]",
                                             _toeplitz_rule(x, one_d)),),
                      (_matrix_check(c_w, x, y, mode, one_d),))


def _c_x_part(x: sp.Matrix, y: sp.Matrix, mode: str, one_d: bool) -> Derivation:
    c_x = _c_x(y, x.shape, mode, one_d)
    item = Item("C_x", c_x, f"∂(w ⋆ x)/∂w: {_linear('C_x w', one_d)} with w = X, x = Y", "C_x")
    return Derivation("", (item,), (), tuple(_jacobian_checks(c_x, x, y, mode, one_d)))


def _shown(one_d: bool):
    """Vectors are shown as tuples (a JSON list), matrices as matrices."""
    return (lambda m: tuple(m)) if one_d else (lambda m: m)


def _linear(product: str, one_d: bool) -> str:
    """``w ⋆ x = C_w x``, or with vec() around the matrices in 2-D."""
    if one_d:
        return f"w ⋆ x = {product}"
    matrix, vector = product.split()
    return f"vec(w ⋆ x) = {matrix} vec({vector})"


def convention_note(one_d: bool) -> str:
    if one_d:
        return ("X ⋆ Y: X slides over fixed Y, output[k] = Σ_i X[i]·Y[i+k-(n_X-1)] "
                "(0-based, k = 0 … n_X+n_Y-2, k = 0 puts the last X[i] over Y[0]) "
                "= scipy.signal.correlate(Y, X).")
    return ("X ⋆ Y: X slides over fixed Y from the top-left corner, row by row, "
            "output[k,l] = Σ_ij X[i,j]·Y[i+k-(m_X-1), j+l-(n_X-1)] (0-based, X is m_X×n_X) "
            "= scipy.signal.correlate2d(Y, X).")


def mode_note(mode: str, one_d: bool) -> str:
    if mode == "full":
        return "full: every position where X and Y overlap in at least one element."
    if mode == "valid":
        return ("valid: only the positions where X lies wholly inside Y, as scipy's 'valid'; "
                "an X larger than Y is refused (scipy would swap X and Y).")
    start, ref = ("⌊(n_X-1)/2⌋", "scipy.signal.correlate") if one_d else (
        "⌊n_X/2⌋ in each axis", "scipy.signal.correlate2d")
    return (f"same: Y's size, the centred part of the full result starting at index {start}, "
            f"as {ref} does (the 1-D and 2-D scipy functions centre an even-sized X "
            "differently).")


def _reverse_check(result: sp.Matrix, reverse: sp.Matrix, one_d: bool) -> Check:
    """``X ⋆ Y = reverse(Y ⋆ X)``: sliding Y over X is sliding X over Y the other way."""
    claim = ("X ⋆ Y = reverse(Y ⋆ X)" if one_d else
             "X ⋆ Y = Y ⋆ X rotated by 180° (rows and columns reversed)")
    return Check(claim, equal(result, reverse[::-1, ::-1]))


def _matrix_check(c_w: sp.Matrix, x: sp.Matrix, y: sp.Matrix, mode: str, one_d: bool) -> Check:
    """``C_w x = w ⋆ x`` for a symbolic x of Y's shape, hence for every x."""
    any_y = generic(y.shape, "x")
    return Check("w ⋆ x = C_w x for every x of Y's size (checked with symbolic x)",
                 equal(c_w * vec(any_y), vec(_correlate(x, any_y, mode, one_d))))


def _jacobian_checks(c_x: sp.Matrix, x: sp.Matrix, y: sp.Matrix, mode: str,
                     one_d: bool) -> list[Check]:
    """``C_x w = w ⋆ x`` for the given w, and ``C_x`` is sympy's Jacobian in a symbolic w."""
    any_w = generic(x.shape, "w")
    jac = vec(_correlate(any_w, y, mode, one_d)).jacobian(vec(any_w))
    return [Check("w ⋆ x = C_x w for the given w = X",
                  equal(c_x * vec(x), vec(_correlate(x, y, mode, one_d)))),
            Check("C_x = ∂(w ⋆ x)/∂w (sympy's Jacobian of w ⋆ x in a symbolic w)",
                  equal(c_x, jac))]


def _toeplitz_rule(w: sp.Matrix, one_d: bool) -> str:
    if one_d:
        return (f"w[j - k + {w.rows - 1}] (0 where that index is outside 0…{w.rows - 1}): "
                "row k holds w starting at column k - (n_w - 1), cut at the edges")
    return (f"w[p - r + {w.rows - 1}, q - c + {w.cols - 1}] for output (r, c) and input (p, q) "
            "(0 outside w), rows and columns in row-major order")


# --- the worked solution ----------------------------------------------------------------------

def correlation_steps(x: sp.Matrix, y: sp.Matrix, mode: str, one_d: bool,
                      limit: int = MAX_STEPS) -> list[Item]:
    """Each output element as the inner product written out, at most ``limit`` of them."""
    rows, cols = window(x.rows, y.rows, mode, one_d), window(x.cols, y.cols, mode, one_d)
    cells = [(r, c) for r in range(len(rows)) for c in range(len(cols))]
    steps = [Item(f"(X ⋆ Y)[{r}]" if one_d else f"(X ⋆ Y)[{r},{c}]",
                  _inner_product(x, y, rows[r], cols[c], one_d)) for r, c in cells[:limit]]
    if len(cells) > limit:
        steps.append(Item("…", f"{len(cells) - limit} more elements not listed "
                               f"(the listing stops at {limit})"))
    return steps


def _inner_product(x: sp.Matrix, y: sp.Matrix, kr: int, kc: int, one_d: bool) -> str:
    """``X[1]·Y[0] + X[2]·Y[1] = 2·4 + 1·6 = 14`` (1-D) or ``⟨X[a:b,c:d], Y[..]⟩ = … = v``."""
    pairs = terms(x, y, kr, kc)
    factors = [(x[a], y[b]) for a, b in pairs]
    value = sp.expand(sp.Add(*(u * v for u, v in factors)))
    if one_d:
        where = " + ".join(f"X[{a[0]}]·Y[{b[0]}]" for a, b in pairs)
    else:
        (i0, j0), (p0, q0) = pairs[0]
        (i1, j1), (p1, q1) = pairs[-1]
        where = f"⟨X[{i0}:{i1 + 1},{j0}:{j1 + 1}], Y[{p0}:{p1 + 1},{q0}:{q1 + 1}]⟩"
    written = " + ".join(f"{_factor(u)}·{_factor(v)}" for u, v in factors)
    # Products of plain names are already the value; anything else has arithmetic to show.
    names_only = all(f.is_Symbol for pair in factors for f in pair)
    tail = "" if names_only else f" = {value}"
    return f"{where} = {written}{tail}"


def _factor(v: sp.Expr) -> str:
    """A factor of a product, in parentheses when it is negative, a fraction or a sum."""
    plain = v.is_Symbol or v.is_Function or v.is_Pow or (v.is_Integer and v >= 0)
    return str(v) if plain else f"({v})"
