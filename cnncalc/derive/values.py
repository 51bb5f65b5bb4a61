"""Numbers, vectors and matrices typed by a user: ``3,2,1``, ``[[1,2],[3,4]]``, ``w1,w2``.

Parsed with the layer language's tokenizer and parser (no ``eval``). Numbers
stay exact (``0.1`` is ``1/10``); names become real symbols; simple arithmetic
(``-x``, ``2*w``, ``1/3``) is allowed. Errors point at the column.
"""

from __future__ import annotations

import operator

import sympy as sp

from .. import spec as ast
from ..errors import CnnCalcError, SpecError

Array = list  # nested lists of sympy expressions


# the operators both value parsers (here and in calculus.py) read the same way
ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def real_symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def _value(node: ast.Node, source: str, what: str) -> sp.Expr:
    def fail(message: str, n: ast.Node) -> SpecError:
        return SpecError(f"{what}: {message}", source, n.pos, n.end - n.pos)

    if isinstance(node, ast.Num):
        return sp.Rational(node.value.numerator, node.value.denominator)
    if isinstance(node, ast.Name):
        return real_symbol(node.id)
    if isinstance(node, ast.Neg):
        return -_value(node.operand, source, what)
    if isinstance(node, ast.BinOp):
        left, right = _value(node.left, source, what), _value(node.right, source, what)
        if node.op in ARITHMETIC:
            if node.op == "/" and right.is_zero:
                raise fail("division by zero", node)
            return ARITHMETIC[node.op](left, right)
        if node.op == "**" and right.is_Integer and abs(right) <= 64:
            return left**right
        raise fail(f"the operation {node.op!r} is not allowed here", node)
    if isinstance(node, (ast.Tuple, ast.Call)):
        raise fail("expected a number or a name, found a nested list", node)
    raise fail("expected a number or a name such as w1", node)


def _nested(node: ast.Node, source: str, what: str):
    if isinstance(node, ast.Tuple):
        return [_nested(item, source, what) for item in node.items]
    return _value(node, source, what)


def parse_array(text: str, what: str = "value") -> Array:
    """``"3,2,1"`` -> ``[3, 2, 1]``; ``"[[1,2],[3,4]]"`` -> ``[[1, 2], [3, 4]]``.

    >>> parse_array("[[1, 0.5], [w1, -2]]")
    [[1, 1/2], [w1, -2]]
    """
    text = text.strip()
    if not text:
        raise CnnCalcError(f"{what}: empty")
    try:
        network = ast.parse(text)
    except SpecError as exc:
        raise SpecError(f"{what}: {exc.message}", exc.source, exc.pos, exc.length) from None
    items = network.items
    if len(items) == 1:
        return _nested(items[0], text, what) if isinstance(items[0], ast.Tuple) else [
            _value(items[0], text, what)]
    return [_nested(item, text, what) for item in items]


def shape_of(array, what: str = "value") -> tuple[int, ...]:
    """The shape of a nested list, refusing ragged ones."""
    if not isinstance(array, list):
        return ()
    if not array:
        raise CnnCalcError(f"{what}: empty list")
    shapes = {shape_of(a, what) for a in array}
    if len(shapes) != 1:
        lengths = sorted({str(len(a)) if isinstance(a, list) else "1" for a in array})
        raise CnnCalcError(f"{what}: ragged: rows of different lengths ({', '.join(lengths)})")
    return (len(array), *shapes.pop())


def parse_vector(text: str, what: str = "vector") -> list[sp.Expr]:
    array = parse_array(text, what)
    if len(shape_of(array, what)) != 1:
        raise CnnCalcError(f"{what}: expected a vector such as 3,2,1")
    return array


def parse_matrix(text: str, what: str = "matrix", allow_vector: bool = True) -> sp.Matrix:
    """A matrix from nested lists; a flat list is a row vector when ``allow_vector``."""
    array = parse_array(text, what)
    shape = shape_of(array, what)
    if len(shape) == 1 and allow_vector:
        return sp.Matrix([array])
    if len(shape) != 2:
        raise CnnCalcError(f"{what}: expected a matrix such as [[1,2],[3,4]], got "
                           f"{len(shape)} dimensions")
    return sp.Matrix(array)
