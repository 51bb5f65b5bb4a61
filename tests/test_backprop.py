"""``cnncalc backprop`` against PyTorch autograd (float64) and sympy built here.

The reference net is written in torch from the definitions: ``x^(0) = [1; x]``,
``s = Wᵀ x``, hidden ``x = [1; θ(s)]``, loss ``(x^(L) − y)²`` summed; the
sensitivities are ``∂e/∂s`` (``s.grad``) and the gradients ``W.grad``.
"""

from __future__ import annotations

import json
import random
from fractions import Fraction

import pytest
import sympy as sp
import torch
from cli_helpers import run_any as run

from cnncalc.derive.backprop import ACTIVATIONS, backprop
from cnncalc.derive.calculus import relu, sigmoid

TORCH_ACT = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
             "identity": lambda s: s}

SEED_W = [[[0.1, 0.2], [0.3, 0.4]], [[0.2], [1], [-3]], [[1], [2]]]
SEED_ARGS = ["backprop", "--weights", "[[0.1,0.2],[0.3,0.4]]", "--weights", "[[0.2],[1],[-3]]",
             "--weights", "[[1],[2]]", "--x", "2", "--y", "1", "--activation", "tanh",
             "--output", "identity"]


def torch_pass(weights, x, y, activation, output):
    """s^(l), x^(l), δ^(l) = ∂e/∂s^(l), ∂e/∂W^(l) and e, by autograd in float64."""
    ws = [torch.tensor([[float(v) for v in row] for row in w], dtype=torch.float64,
                       requires_grad=True) for w in weights]
    out = torch.tensor([1.0] + [float(v) for v in x], dtype=torch.float64)
    ss, xs = [], [out]
    for layer, w in enumerate(ws, start=1):
        s = w.T @ out
        s.retain_grad()
        ss.append(s)
        if layer == len(ws):
            out = TORCH_ACT[output](s)
        else:
            out = torch.cat([torch.ones(1, dtype=torch.float64), TORCH_ACT[activation](s)])
        xs.append(out)
    e = ((out - torch.tensor([float(v) for v in y], dtype=torch.float64)) ** 2).sum()
    e.backward()
    return {"s": [s.detach() for s in ss], "x": [v.detach() for v in xs],
            "delta": [s.grad for s in ss], "grad": [w.grad for w in ws], "e": e.item()}


def exact(values):
    """Nested floats/ints as exact rationals, as the CLI reads ``0.1`` (1/10)."""
    if isinstance(values, list):
        return [exact(v) for v in values]
    f = Fraction(str(values))
    return sp.Rational(f.numerator, f.denominator)


def as_floats(matrix) -> list[float]:
    return [float(v) for v in matrix]


def assert_pass_matches(d, ref, layers: int, rel: float = 1e-12):
    def close(ours, theirs):
        theirs = theirs.flatten().tolist()
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert a == pytest.approx(b, rel=rel, abs=1e-14)

    for layer in range(1, layers + 1):
        close(as_floats(d.result(f"s^({layer})")), ref["s"][layer - 1])
        close(as_floats(d.result(f"x^({layer})")), ref["x"][layer])
        close(as_floats(d.result(f"δ^({layer})")), ref["delta"][layer - 1])
        # sympy's Matrix is row-major like torch's: W^(l) entries in the same order
        close(as_floats(d.result(f"∂e/∂W^({layer})")), ref["grad"][layer - 1])
    assert float(d.result("e")) == pytest.approx(ref["e"], rel=rel)


# -- seed 004 Q2 ---------------------------------------------------------------------------

def test_seed004_q2_every_quantity_matches_autograd():
    ref = torch_pass(SEED_W, [2], [1], "tanh", "identity")
    d = backprop([sp.Matrix(w) for w in exact(SEED_W)], [2], [1], "tanh", "identity")
    assert_pass_matches(d, ref, 3)
    assert all(c.holds for c in d.checks) and len(d.checks) == 4


def test_seed004_q2_exact_forms():
    """Exact inputs stay exact: s^(1) = (7/10, 1); x^(1) holds tanh(7/10), tanh(1)."""
    d = backprop([sp.Matrix(w) for w in exact(SEED_W)], [2], [1], exact=True)
    assert d.result("s^(1)") == sp.Matrix([sp.Rational(7, 10), 1])
    assert d.result("x^(1)") == sp.Matrix([1, sp.tanh(sp.Rational(7, 10)), sp.tanh(1)])
    s2 = sp.Rational(1, 5) + sp.tanh(sp.Rational(7, 10)) - 3 * sp.tanh(1)
    assert sp.simplify(d.result("s^(2)")[0] - s2) == 0
    # the output is linear: x^(3) = 1 + 2 tanh(s^(2)); e = (x^(3) - 1)^2 = 4 tanh(s^(2))^2
    assert sp.simplify(d.result("e") - 4 * sp.tanh(s2) ** 2) == 0


def test_seed004_q2_worked_solution_rounding_slips():
    """The seed's worked solution rounds early and slips; the right values, from autograd.

    It writes θ'(s^(1)) = (0.64, 0.43), but 1 − tanh(1)² = 0.41997 (1 − 0.76² = 0.42, not
    0.43), and carries x^(2) = −0.9 on (θ'(s^(2)) = 0.19 instead of 0.1872), so it ends
    with δ^(1) = (−0.87, 1.76) where the value is (−0.8571, 1.7012).
    """
    ref = torch_pass(SEED_W, [2], [1], "tanh", "identity")
    assert 1 - torch.tanh(torch.tensor(1.0, dtype=torch.float64)).item() ** 2 == pytest.approx(
        0.41997434, abs=1e-8)
    assert ref["delta"][2].item() == pytest.approx(-3.606183, abs=1e-6)  # seed: -3.6
    assert ref["delta"][1].item() == pytest.approx(-1.350266, abs=1e-6)  # seed: -1.368
    assert ref["delta"][0].tolist() == pytest.approx([-0.857067, 1.701231], abs=1e-6)
    assert ref["grad"][1].flatten().tolist() == pytest.approx(  # seed: -1.368, -0.82, -1.039
        [-1.350266, -0.816057, -1.028355], abs=1e-6)
    assert abs(ref["delta"][0][1].item() - 1.76) > 0.05  # not a rounding difference


def test_seed004_q2_cli_prints_the_values(capsys):
    code, out, err = run(SEED_ARGS + ["--format", "json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    values = {item["label"]: item["value"] for item in doc["results"]}
    ref = torch_pass(SEED_W, [2], [1], "tanh", "identity")
    assert [float(v[0]) for v in values["δ^(1)"]] == pytest.approx(
        ref["delta"][0].tolist(), rel=1e-14)
    assert [float(v) for row in values["∂e/∂W^(2)"] for v in row] == pytest.approx(
        ref["grad"][1].flatten().tolist(), rel=1e-14)
    assert values["s^(1)"] == [["7/10"], [1]]  # exact where the inputs are exact
    assert all(c["holds"] for c in doc["checks"])


def test_contract_example_text_and_show_work(capsys):
    code, out, err = run(SEED_ARGS + ["--show-work"], capsys)
    assert code == 0, err
    for label in ("s^(3)", "x^(3)", "δ^(1)", "δ^(2)", "δ^(3)", "∂e/∂W^(1)", "Worked solution"):
        assert label in out


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "latex"])
def test_every_format_with_exact(fmt, capsys):
    code, out, err = run(SEED_ARGS + ["--exact", "--format", fmt, "--show-work"], capsys)
    assert code == 0, err
    assert "tanh" in out


# -- any net, any activation ------------------------------------------------------------------

def random_net(rng: random.Random, widths: list[int]):
    """Weights in tenths, so the exact and the float64 inputs are the same numbers."""
    return [[[rng.randint(-15, 15) / 10 for _ in range(d_out)] for _ in range(d_in + 1)]
            for d_in, d_out in zip(widths, widths[1:])]


@pytest.mark.parametrize("activation,output", [("tanh", "identity"), ("sigmoid", "sigmoid"),
                                               ("relu", "tanh"), ("identity", "relu")])
def test_random_nets_match_autograd(activation, output):
    rng = random.Random(f"{activation}-{output}")
    widths = [2, 3, 2, 2]
    weights = random_net(rng, widths)
    x = [rng.randint(-10, 10) / 10 for _ in range(widths[0])]
    y = [rng.randint(-10, 10) / 10 for _ in range(widths[-1])]
    d = backprop([sp.Matrix(w) for w in exact(weights)], exact(x), exact(y), activation, output)
    assert_pass_matches(d, torch_pass(weights, x, y, activation, output), len(weights))
    assert d.checks and all(c.holds for c in d.checks)


def test_a_deeper_wider_net_matches_autograd():
    """Four layers of width 8: the named activation values keep the exact pass small."""
    rng = random.Random(8)
    widths = [4, 8, 8, 8, 2]
    weights = random_net(rng, widths)
    x, y = [0.5, -1, 0.25, 2], [1, -1]
    d = backprop([sp.Matrix(w) for w in exact(weights)], exact(x), exact(y), "tanh", "sigmoid")
    assert_pass_matches(d, torch_pass(weights, x, y, "tanh", "sigmoid"), len(weights))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_each_slope_is_the_derivative_of_its_activation(name):
    act = ACTIVATIONS[name]
    t = sp.Symbol("t", real=True)
    assert sp.simplify(act.slope(t, act.theta(t)) - sp.diff(act.theta(t), t)) == 0


def test_relu_at_exactly_zero_has_slope_zero_as_pytorch():
    # s^(1) = (1·0 + 1·1, 1·1 − 1·1) = (1, 0): the second unit sits on relu's kink
    weights = [[[0, 1], [1, -1]], [[0], [1], [1]]]
    d = backprop([sp.Matrix(w) for w in weights], [1], [3], "relu", "identity")
    assert d.result("s^(1)")[1] == 0
    ref = torch_pass(weights, [1], [3], "relu", "identity")
    assert ref["delta"][0][1].item() == 0.0
    assert_pass_matches(d, ref, 2)


def test_integer_linear_net_is_exact():
    """Identity activations on integers: every value is an exact integer, as autograd's."""
    weights = [[[1, -2], [3, 0], [2, 1]], [[1], [2], [-1]]]
    d = backprop([sp.Matrix(w) for w in weights], [1, 2], [5], "identity", "identity")
    ref = torch_pass(weights, [1, 2], [5], "identity", "identity")
    for layer in (1, 2):
        grad = d.result(f"∂e/∂W^({layer})")
        assert all(v.is_Integer for v in grad)
        assert [int(v) for v in grad] == [round(v) for v in ref["grad"][layer - 1].flatten()
                                          .tolist()]


def test_symbolic_weights_give_the_symbolic_gradient():
    """One tanh unit: ∂/∂(a, b) of (tanh(a + b·x) − y)², differentiated here by sympy."""
    a, b, x, y = sp.symbols("a b x y", real=True)
    d = backprop([sp.Matrix([[a], [b]])], [x], [y], output="tanh")
    e = (sp.tanh(a + b * x) - y) ** 2
    expected = sp.Matrix([sp.diff(e, a), sp.diff(e, b)])
    assert sp.simplify(d.result("∂e/∂W^(1)") - expected) == sp.zeros(2, 1)
    assert sp.simplify(d.result("e") - e) == 0


def test_values_survive_cancellation_that_float64_loses():
    """θ'(20) = 1 − tanh²(20) ≈ 1.7e-17: float64 rounds tanh(20) to 1 and autograd says 0.

    One hidden tanh unit with s^(1) = 20 feeding the output: δ^(1) = 2 tanh(20) sech²(20),
    evaluated here by mpmath at 50 digits.
    """
    import mpmath

    d = backprop([sp.Matrix([[0], [10]]), sp.Matrix([[0], [1]])], [2], [0])
    with mpmath.workdps(50):
        expected = float(2 * mpmath.tanh(20) * mpmath.sech(20) ** 2)
    assert float(d.result("δ^(1)")[0]) == pytest.approx(expected, rel=1e-14)
    assert torch_pass([[[0], [10]], [[0], [1]]], [2], [0], "tanh", "identity")["delta"][0][0] == 0


def test_sigmoid_and_relu_output_in_closed_form():
    d = backprop([sp.Matrix([[0], [1]])], [sp.Rational(1, 2)], [0], output="sigmoid", exact=True)
    assert d.result("x^(1)") == sp.Matrix([sigmoid(sp.Rational(1, 2))])
    value = 1 / (1 + sp.exp(-sp.Rational(1, 2)))
    delta = 2 * value * value * (1 - value)
    assert abs((d.result("δ^(1)")[0] - delta).evalf(30)) < 1e-25
    assert relu(sp.Rational(-1, 3)) == 0


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--weights", "[[1,2],[3,4]]", "--weights", "[[1],[2]]", "--x", "1", "--y", "0"],
     "W^(2) has 2 rows; it needs d^(1)+1 = 3 (bias row first)"),
    (["--weights", "[[1],[2],[3]]", "--x", "1", "--y", "0"],
     "W^(1) has 3 rows; it needs d^(0)+1 = 2 (bias row first)"),
    (["--weights", "[[1,2],[3,4]]", "--x", "1", "--y", "0"],
     "--y has 1 value; the output layer W^(1) has 2 columns"),
    (["--weights", "[[1],[2]]", "--x", "1", "--y", "0", "--activation", "gelu"], "gelu"),
    (["--weights", "[[1],[2]]", "--x", "1"], "--y"),
    (["--weights", "[[1],[2", "--x", "1", "--y", "0"], "W^(1)"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    code, out, err = run(["backprop", *args], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and not out
