"""``cnncalc correlate`` against scipy, sympy and the seeds' own definition of ``x ⋆ y``."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import numpy as np
import pytest
import scipy.signal
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncalc.cli import main
from cnncalc.derive.correlate import correlate, correlation_matrix, jacobian_matrix
from cnncalc.errors import CnnCalcError

MODES = ("full", "valid", "same")
FAST = settings(max_examples=80, deadline=None)


def run_json(args: list[str], capsys) -> dict:
    try:
        main(["correlate", *args, "--format", "json"])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def fail(args: list[str], capsys) -> list[str]:
    """Run a bad command; return its stderr lines from the "Error:" line on (exit status 2)."""
    with pytest.raises(SystemExit) as exc:
        main(["correlate", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("Error: ")):]


def result(doc: dict, label: str):
    return next(item["value"] for item in doc["results"] if item["label"] == label)


def seed_slide(x: list, y: list) -> list:
    """Seed 003 P2(a), read literally: start with x_{n1} over y_1, shift x right one step at a
    time until x_1 is over y_{n2}, and collect the inner products of the overlapped parts."""
    n1, n2 = len(x), len(y)
    out = []
    for offset in range(-(n1 - 1), n2):  # position of x_1 relative to y_1
        out.append(sum((x[i] * y[i + offset] for i in range(n1) if 0 <= i + offset < n2), 0))
    return out


def vec(m: sp.Matrix) -> sp.Matrix:
    return sp.Matrix(list(m))


# --- seed 003, problem 2 ------------------------------------------------------------------------

def test_seed_p2a_value_and_the_reversal(capsys):
    x, y = [3, 2, 1], [4, 6, 3, 9]
    expected = scipy.signal.correlate(y, x, "full")
    assert list(expected) == seed_slide(x, y)  # the seeds' notation is scipy's correlate(Y, X)
    doc = run_json(["3,2,1", "4,6,3,9"], capsys)
    assert result(doc, "X ⋆ Y") == list(expected)
    assert result(doc, "Y ⋆ X") == list(scipy.signal.correlate(x, y, "full"))
    assert result(doc, "Y ⋆ X") == list(expected[::-1])  # x ⋆ y = reverse(y ⋆ x), not y ⋆ x
    assert result(doc, "X ⋆ Y") != result(doc, "Y ⋆ X")
    assert doc["checks"] == [{"claim": "X ⋆ Y = reverse(Y ⋆ X)", "holds": True}]
    assert any("scipy.signal.correlate(Y, X)" in n for n in doc["notes"])


def test_seed_p2b_c_w_is_6x4_and_maps_x_to_w_star_x(capsys):
    w, x = sp.symbols("w1:4", real=True), sp.symbols("x1:5", real=True)
    w_star_x = sp.Matrix(seed_slide(list(w), list(x)))
    doc = run_json(["w1,w2,w3", "x1,x2,x3,x4", "--matrix"], capsys)
    c_w = sp.Matrix(sp.sympify(result(doc, "C_w"), locals=dict(zip(map(str, w + x), w + x))))
    assert c_w.shape == (6, 4)
    assert c_w == w_star_x.jacobian(x)  # linear in x, so its Jacobian is C_w
    assert sp.expand(c_w * sp.Matrix(x) - w_star_x) == sp.zeros(6, 1)
    assert all(c["holds"] for c in doc["checks"])


def test_seed_p2c_jacobian_in_w_is_c_x(capsys):
    w, x = sp.symbols("w1:4", real=True), sp.symbols("x1:5", real=True)
    w_star_x = sp.Matrix(seed_slide(list(w), list(x)))
    doc = run_json(["w1,w2,w3", "x1,x2,x3,x4", "--jacobian"], capsys)
    c_x = sp.Matrix(sp.sympify(result(doc, "C_x"), locals=dict(zip(map(str, w + x), w + x))))
    assert c_x.shape == (6, 3)
    assert c_x == w_star_x.jacobian(w)
    assert sp.expand(c_x * sp.Matrix(w) - w_star_x) == sp.zeros(6, 1)
    assert all(c["holds"] for c in doc["checks"])


def test_contract_example_2d_matches_correlate2d(capsys):
    x, y = [[1, 2], [3, 4]], [[1, 0, 2], [0, 1, 0], [2, 0, 1]]
    doc = run_json(["[[1,2],[3,4]]", "[[1,0,2],[0,1,0],[2,0,1]]"], capsys)
    assert result(doc, "X ⋆ Y") == scipy.signal.correlate2d(y, x, "full").tolist()
    assert result(doc, "Y ⋆ X") == scipy.signal.correlate2d(x, y, "full").tolist()
    assert all(c["holds"] for c in doc["checks"])


# --- every mode against scipy --------------------------------------------------------------------

ints = st.integers(-9, 9)
vectors = st.lists(ints, min_size=1, max_size=7)
matrices = st.integers(1, 4).flatmap(
    lambda rows: st.lists(st.lists(ints, min_size=rows, max_size=rows), min_size=1, max_size=4))


@FAST
@given(x=vectors, y=vectors, mode=st.sampled_from(MODES))
def test_vectors_match_scipy(x, y, mode):
    if mode == "valid" and len(x) > len(y):
        with pytest.raises(CnnCalcError, match="valid mode"):
            correlate(x, y, mode)
        return
    got = correlate(x, y, mode)
    assert got.shape[1] == 1 and list(got) == list(scipy.signal.correlate(y, x, mode))


@FAST
@given(x=matrices, y=matrices, mode=st.sampled_from(MODES))
def test_matrices_match_scipy(x, y, mode):
    xa, ya = np.array(x).T, np.array(y).T  # transposed: rows and columns of unequal counts
    if mode == "valid" and (xa.shape[0] > ya.shape[0] or xa.shape[1] > ya.shape[1]):
        with pytest.raises(CnnCalcError, match="valid mode"):
            correlate(xa.tolist(), ya.tolist(), mode)
        return
    got = correlate(xa.tolist(), ya.tolist(), mode)
    assert np.array_equal(np.array(got.tolist(), dtype=np.int64),
                          scipy.signal.correlate2d(ya, xa, mode))


@FAST
@given(x=matrices, y=matrices, mode=st.sampled_from(("full", "same")))
def test_c_w_and_c_x_reproduce_scipy(x, y, mode):
    """C_w vec(Y) and C_x vec(X) are scipy's X ⋆ Y; columns are scipy on basis matrices."""
    xa, ya = np.array(x), np.array(y)
    expected = scipy.signal.correlate2d(ya, xa, mode).ravel()
    c_w = np.array(correlation_matrix(x, ya.shape, mode).tolist(), dtype=np.int64)
    c_x = np.array(jacobian_matrix(y, xa.shape, mode).tolist(), dtype=np.int64)
    assert np.array_equal(c_w @ ya.ravel(), expected)
    assert np.array_equal(c_x @ xa.ravel(), expected)
    for j in range(ya.size):  # column j of C_w is X ⋆ e_j
        e = np.zeros(ya.size, dtype=np.int64)
        e[j] = 1
        assert np.array_equal(c_w[:, j], scipy.signal.correlate2d(e.reshape(ya.shape), xa, mode)
                              .ravel())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("w", [[2, -1, 3], [4, -7]])
def test_1d_c_w_and_c_x_keep_the_rows_of_the_mode(w, mode):
    x = [3, 0, -2, 5, 1]
    rows = {"full": len(w) + 5 - 1, "valid": 5 - len(w) + 1, "same": 5}[mode]
    c_w = np.array(correlation_matrix(w, 5, mode).tolist(), dtype=np.int64)
    c_x = np.array(jacobian_matrix(x, len(w), mode).tolist(), dtype=np.int64)
    assert c_w.shape == (rows, 5) and c_x.shape == (rows, len(w))
    for j in range(5):  # column j of C_w is w ⋆ e_j
        assert np.array_equal(c_w[:, j], scipy.signal.correlate(np.eye(5, dtype=int)[j], w, mode))
    for i in range(len(w)):  # column i of C_x is e_i ⋆ x
        e = np.eye(len(w), dtype=int)[i]
        assert np.array_equal(c_x[:, i], scipy.signal.correlate(x, e, mode))


def test_same_mode_centres_an_even_kernel_as_each_scipy_function():
    """scipy.signal.correlate and correlate2d place 'same' differently for an even kernel."""
    x, y = [1, 1], [1, 2, 3]
    assert list(correlate(x, y, "same")) == list(scipy.signal.correlate(y, x, "same"))
    assert correlate([x], [y], "same").tolist() == scipy.signal.correlate2d([y], [x],
                                                                             "same").tolist()
    assert list(correlate(x, y, "same")) != correlate([x], [y], "same").tolist()[0]


def test_rationals_stay_exact():
    x, y = [Fraction(1, 2), Fraction(-1, 3)], [Fraction(1, 10), 3, Fraction(7, 5)]
    got = correlate([sp.Rational(v) for v in x], [sp.Rational(v) for v in y])
    assert [Fraction(str(v)) for v in got] == seed_slide(x, y)
    assert all(v.is_Rational for v in got)


@pytest.mark.parametrize("mode", MODES)
def test_symbolic_2d_against_c_w_c_x_and_jacobian(mode):
    W = sp.Matrix(2, 2, sp.symbols("a:4", real=True))
    Y = sp.Matrix(3, 3, sp.symbols("y:9", real=True))
    out = vec(correlate(W, Y, mode))
    assert sp.expand(correlation_matrix(W, (3, 3), mode) * vec(Y) - out) == sp.zeros(*out.shape)
    assert sp.expand(jacobian_matrix(Y, (2, 2), mode) * vec(W) - out) == sp.zeros(*out.shape)
    assert jacobian_matrix(Y, (2, 2), mode) == out.jacobian(vec(W))
    assert correlation_matrix(W, (3, 3), mode) == out.jacobian(vec(Y))
    numeric = {s: v for s, v in zip(list(W) + list(Y), range(2, 15))}
    assert np.array_equal(np.array(out.subs(numeric).tolist(), dtype=np.int64).ravel(),
                          scipy.signal.correlate2d(np.array(Y.subs(numeric).tolist(), dtype=int),
                                                   np.array(W.subs(numeric).tolist(), dtype=int),
                                                   mode).ravel())


def test_symbolic_relation_checked_symbolically(capsys):
    doc = run_json(["[[a,b],[c,d]]", "[[p,q,r],[s,t,u]]", "--matrix", "--jacobian"], capsys)
    assert [c["holds"] for c in doc["checks"]] == [True, True, True, True]
    names = {n: sp.Symbol(n, real=True) for n in "abcdpqrstu"}
    got = sp.Matrix(sp.sympify(result(doc, "X ⋆ Y"), locals=names))
    rev = sp.Matrix(sp.sympify(result(doc, "Y ⋆ X"), locals=names))[::-1, ::-1]
    assert sp.expand(got - rev) == sp.zeros(*got.shape)
    assert sp.Matrix(sp.sympify(result(doc, "C_w"), locals=names)).shape == (3 * 4, 6)


def test_single_row_matrices_are_2d(capsys):
    """``[[1,2,3]]`` is a 1x3 matrix, not a vector (needs the parser fix for one-item lists)."""
    doc = run_json(["[[1,2,3]]", "[[1,2,3],[4,5,6]]"], capsys)
    assert result(doc, "X ⋆ Y") == scipy.signal.correlate2d([[1, 2, 3], [4, 5, 6]],
                                                            [[1, 2, 3]], "full").tolist()


def test_negative_first_value_is_not_an_option(capsys):
    doc = run_json(["-1,2", "3,4"], capsys)
    assert result(doc, "X ⋆ Y") == list(scipy.signal.correlate([3, 4], [-1, 2]))


# --- the worked solution ------------------------------------------------------------------------

def _evaluate(step: str) -> Fraction:
    """The arithmetic written in a step, ``X[..]·Y[..] + ... = 2·4 + 1·6 = 14``, evaluated."""
    written = step.split(" = ")[1]
    total = Fraction(0)
    for term in written.split(" + "):
        a, b = term.split("·")
        total += Fraction(a.strip("()")) * Fraction(b.strip("()"))
    assert Fraction(step.split(" = ")[-1]) == total
    return total


@pytest.mark.parametrize("mode", MODES)
def test_steps_write_out_each_inner_product(mode, capsys):
    doc = run_json(["3,-2,1", "4,6,3,9", "--mode", mode, "--show-work"], capsys)
    expected = scipy.signal.correlate([4, 6, 3, 9], [3, -2, 1], mode)
    assert [_evaluate(s["value"]) for s in doc["steps"]] == list(expected)
    first = doc["steps"][0]["value"]
    if mode == "full":  # the seeds' start: the last element of X over the first of Y
        assert first.startswith("X[2]·Y[0] = 1·4")


def test_2d_steps_and_the_cap(capsys):
    rng = np.random.default_rng(5)
    x, y = rng.integers(-3, 4, (2, 3)), rng.integers(-3, 4, (3, 2))
    doc = run_json([str(x.tolist()), str(y.tolist()), "--show-work"], capsys)
    assert [_evaluate(s["value"]) for s in doc["steps"]] == list(
        scipy.signal.correlate2d(y, x).ravel())
    assert all(re.match(r"⟨X\[\d+:\d+,\d+:\d+\], Y\[\d+:\d+,\d+:\d+\]⟩ = ", s["value"])
               for s in doc["steps"])
    big = run_json([str(np.ones((5, 5), int).tolist()), str(np.ones((9, 9), int).tolist()),
                    "--show-work"], capsys)["steps"]
    outputs = (5 + 9 - 1) ** 2
    assert len(big) == 64 + 1 and f"{outputs - 64} more" in big[-1]["value"]


def test_symbolic_steps_stay_symbolic(capsys):
    steps = run_json(["w1,w2", "x1,x2,x3", "--show-work"], capsys)["steps"]
    assert steps[1]["value"] == "X[0]·Y[0] + X[1]·Y[1] = w1·x1 + w2·x2"


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["3,2,$", "1,2"], "unexpected character"),
    (["[[1,2],[3]]", "[[1,2],[3,4]]"], "ragged"),
    (["[[1,2],[3,4]]", "1,2,3"], "X is a matrix and Y a vector"),
    (["1,2", "[[1,2],[3,4]]"], "X is a vector and Y a matrix"),
    (["", "1,2"], "empty"),
    (["  ", "1,2"], "empty"),
    (["1,2,3,4", "1,2", "--mode", "valid"], "valid mode"),
    (["[[1,2,3],[4,5,6]]", "[[1,2],[3,4],[5,6]]", "--mode", "valid"], "valid mode"),
    (["1,2", "3,4", "--mode", "circular"], "mode"),
])
def test_bad_input_exits_2_with_one_message(args, words, capsys):
    lines = fail(args, capsys)
    assert words in lines[0]
    if "unexpected character" not in words:  # only spec errors add the source and a caret
        assert len(lines) == 1


def test_api_raises_for_the_same_mistakes():
    with pytest.raises(CnnCalcError, match="valid mode"):
        correlate([1, 2, 3], [1, 2], "valid")
    with pytest.raises(CnnCalcError, match="empty"):
        correlate([], [1, 2])
    with pytest.raises(CnnCalcError, match="mode"):
        correlate([1], [1], "wrap")
