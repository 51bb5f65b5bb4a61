"""``cnncalc derive`` against sympy.diff on expressions built here and torch autograd.

Each expected derivative is built in this file, either directly in sympy from the
definition or numerically by autograd on the same function written in torch.
"""

from __future__ import annotations

import builtins
import json
import random
import time

import pytest
import sympy as sp
import torch
from cli_helpers import run_any as run

from cnncalc.derive.calculus import chain_rule_steps, derive, parse_expression, relu, sigmoid

x, y, w, w1, w2 = sp.symbols("x y w w1 w2", real=True)


def torch_derivative(fn, at: float) -> float:
    t = torch.tensor(at, dtype=torch.float64, requires_grad=True)
    fn(t).backward()
    return t.grad.item()


def value_at(expr: sp.Expr, **values) -> float:
    """``expr`` at the named values (matched by name, whatever a symbol's assumptions)."""
    point = {s: sp.Float(values[s.name], 30) for s in expr.free_symbols}
    return float(expr.subs(point).evalf(30))


# -- one variable -----------------------------------------------------------------------------

def test_tanh_derivative_is_one_minus_tanh_squared(capsys):
    assert derive("tanh(x)").result("df/dx") == 1 - sp.tanh(x) ** 2
    code, out, err = run(["derive", "tanh(x)", "--format", "json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["results"][0]["value"] == "1 - tanh(x)**2"
    assert doc["checks"] and all(c["holds"] for c in doc["checks"])


def test_tanh_derivative_from_the_exponential_definition():
    """Seed 004 Q1: d/dx (eˣ − e⁻ˣ)/(eˣ + e⁻ˣ) = 1 − tanh²(x), by the quotient rule here."""
    num, den = sp.exp(x) - sp.exp(-x), sp.exp(x) + sp.exp(-x)
    quotient_rule = (sp.diff(num, x) * den - num * sp.diff(den, x)) / den**2
    assert sp.simplify(quotient_rule - derive("tanh(x)").result("df/dx").rewrite(sp.exp)) == 0


CASES = [  # text, the same function in sympy, and in torch
    ("x**3 - 2*x + 1/3", x**3 - 2 * x + sp.Rational(1, 3), lambda t: t**3 - 2 * t + 1 / 3),
    ("sin(x)*cos(x)", sp.sin(x) * sp.cos(x), lambda t: torch.sin(t) * torch.cos(t)),
    ("exp(-x^2/2)", sp.exp(-x**2 / 2), lambda t: torch.exp(-t**2 / 2)),
    ("log(1 + exp(x))", sp.log(1 + sp.exp(x)), lambda t: torch.log(1 + torch.exp(t))),
    ("sqrt(x^2 + 1)", sp.sqrt(x**2 + 1), lambda t: torch.sqrt(t**2 + 1)),
    ("x*tanh(x)", x * sp.tanh(x), lambda t: t * torch.tanh(t)),
    ("abs(x)*x", sp.Abs(x) * x, lambda t: torch.abs(t) * t),
    ("atan(x)/x", sp.atan(x) / x, lambda t: torch.atan(t) / t),
    ("cosh(x)^2 - sinh(x)^2", sp.cosh(x)**2 - sp.sinh(x)**2,
     lambda t: torch.cosh(t)**2 - torch.sinh(t)**2),
    ("x^x", x**x, lambda t: t**t),
    ("sigmoid(2*x)", 1 / (1 + sp.exp(-2 * x)), lambda t: torch.sigmoid(2 * t)),
    ("relu(x - 1)^2", sp.Max(0, x - 1)**2, lambda t: torch.relu(t - 1) ** 2),
]


@pytest.mark.parametrize("text,expr,fn", CASES, ids=[c[0] for c in CASES])
def test_derivative_matches_sympy_and_autograd(text, expr, fn):
    got = derive(text).result("df/dx")
    for at in (0.37, 1.9, -0.81):
        if at < 0 and text == "x^x":
            continue
        assert value_at(got, x=at) == pytest.approx(value_at(sp.diff(expr, x), x=at), rel=1e-12)
        assert value_at(got, x=at) == pytest.approx(torch_derivative(fn, at), rel=1e-10, abs=1e-12)


def test_sigmoid_derivative_in_textbook_form():
    got = derive("sigmoid(x)").result("df/dx")
    assert got == sigmoid(x) * (1 - sigmoid(x))
    for at in (-2.0, 0.0, 0.5):
        assert value_at(got, x=at) == pytest.approx(torch_derivative(torch.sigmoid, at),
                                                    rel=1e-13)


def test_relu_derivative_is_zero_at_zero_as_pytorch():
    got = derive("relu(x)").result("df/dx")
    assert got == sp.Heaviside(x, 0)
    for at in (-1.0, 0.0, 2.0):
        assert float(got.subs(x, sp.Float(at))) == torch_derivative(torch.relu, at)
    assert relu(sp.Rational(3, 2)) == sp.Rational(3, 2) and relu(-1) == 0


# -- gradients ----------------------------------------------------------------------------------

def test_tanh_perceptron_gradient_has_the_seed_form(capsys):
    d = derive("(tanh(w1*x1 + w2*x2) - y)**2", wrt="w1,w2")
    x1, x2 = sp.symbols("x1 x2", real=True)
    u = w1 * x1 + w2 * x2
    for name, xi in (("w1", x1), ("w2", x2)):
        seed_form = 2 * (sp.tanh(u) - y) * (1 - sp.tanh(u) ** 2) * xi
        assert sp.expand(d.result(f"∂f/∂{name}") - seed_form) == 0
    assert d.result("∇f").shape == (2, 1)
    code, out, err = run(["derive", "(tanh(w1*x1 + w2*x2) - y)**2", "--wrt", "w1,w2"], capsys)
    assert code == 0 and "∇f" in out, err


def test_seed004_q1_ein_gradient_against_closed_form_and_autograd():
    """E_in(w) = (1/N) Σ (tanh(wᵀxₙ) − yₙ)² for N = 3 in two dimensions, written out.

    The seed's ∇E_in = (2/N) Σ (tanh(wᵀxₙ) − yₙ)(1 − tanh²(wᵀxₙ)) xₙ, built here,
    and autograd's gradient at random numbers.
    """
    samples = "abc"
    text = "(" + " + ".join(f"(tanh(w1*{s}1 + w2*{s}2) - y{s})^2" for s in samples) + ")/3"
    d = derive(text, wrt="w1,w2")
    xs = {s: sp.symbols(f"{s}1 {s}2", real=True) for s in samples}
    ys = {s: sp.Symbol(f"y{s}", real=True) for s in samples}
    for i, name in enumerate(("w1", "w2")):
        closed = sp.Rational(2, 3) * sum(
            (sp.tanh(w1 * xs[s][0] + w2 * xs[s][1]) - ys[s])
            * (1 - sp.tanh(w1 * xs[s][0] + w2 * xs[s][1]) ** 2) * xs[s][i] for s in samples)
        assert sp.expand(d.result(f"∂f/∂{name}") - closed) == 0

    rng = random.Random(4)
    values = {str(v): rng.uniform(-1, 1) for v in (w1, w2, *sum(xs.values(), ()),
                                                     *ys.values())}
    wt = torch.tensor([values["w1"], values["w2"]], dtype=torch.float64, requires_grad=True)
    ein = sum((torch.tanh(wt @ torch.tensor([values[f"{s}1"], values[f"{s}2"]],
                                            dtype=torch.float64)) - values[f"y{s}"]) ** 2
              for s in samples) / 3
    ein.backward()
    ours = [value_at(d.result(f"∂f/∂{n}"), **values) for n in ("w1", "w2")]
    assert ours == pytest.approx(wt.grad.tolist(), rel=1e-12)


def test_gradient_vanishes_as_w_grows(capsys):
    """The seed's remark: as w → ∞, tanh(wx) → 1 and the gradient → 0 (for x > 0)."""
    d = derive("(tanh(w*x) - y)^2", wrt="w", limit="w=oo", positive="x")
    assert d.result("lim w→∞ ∂f/∂w") == 0
    # and numerically: at w = 20 the gradient is already below 1e-15 for x = 1, y = 0
    assert abs(value_at(d.result("∂f/∂w"), x=1, y=0, w=20)) < 1e-15
    code, out, err = run(["derive", "(tanh(w*x) - y)^2", "--wrt", "w", "--limit", "w=oo"],
                         capsys)
    assert code == 2 and "--positive" in err and len(err.strip().splitlines()) == 1


# -- worked steps --------------------------------------------------------------------------------

STEP_CASES = [sp.tanh(x**2), sp.sin(x) * sp.exp(-x) / sp.sqrt(x), x**x, sigmoid(w * x) ** 3,
              (sp.tanh(w1 * x + w2) - y) ** 2, sp.log(sp.cosh(x) + x**2) * sp.atan(x)]


@pytest.mark.parametrize("expr", STEP_CASES, ids=str)
def test_chain_rule_steps_end_at_sympy_diff(expr):
    var = sorted(expr.free_symbols, key=str)[-1]
    steps = chain_rule_steps(expr, var)
    assert steps and not steps[-1][0].atoms(sp.Derivative)
    assert all(rules for _, rules in steps)
    point = {s: sp.Rational(3 + i, 7) for i, s in enumerate(sorted(expr.free_symbols, key=str))}
    assert abs((steps[-1][0] - sp.diff(expr, var)).subs(point).evalf(30)) < 1e-25


def test_show_work_prints_the_chain_rule(capsys):
    code, out, err = run(["derive", "tanh(x^2)", "--show-work"], capsys)
    assert code == 0, err
    assert "Worked solution" in out and "chain rule through tanh" in out
    assert "power rule" in out


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "latex"])
def test_every_format(fmt, capsys):
    code, out, err = run(["derive", "sigmoid(w*x)", "--wrt", "w,x", "--format", fmt,
                          "--show-work"], capsys)
    assert code == 0, err
    assert "sigmoid" in out


# -- parsing and errors ------------------------------------------------------------------------

def test_parser_reads_powers_and_exact_numbers():
    assert parse_expression("x^2 + 0.5*x - 1e-3") == x**2 + x / 2 - sp.Rational(1, 1000)
    assert parse_expression("2**-1 * pi") == sp.pi / 2
    assert parse_expression("-x**2") == -(x**2)


BAD = [  # text, what the message says, the column the caret points at (or None)
    ("__import__('os')", "unknown function '__import__'", 1),
    ("exec('print(1)')", "unknown function 'exec'", 1),
    ("os.system('ls')", "unexpected character '.'", 3),
    ("x.__class__", "unexpected character '.'", 2),
    ("lambda: 1", "unexpected character ':'", 7),
    ("", "empty", None),
    ("   ", "empty", None),
    ("x +", "unexpected end of input", 4),
    ("foo(x)", "unknown function 'foo'", 1),
    ("tanh", "tanh is a function", 1),
    ("tanh(x, y)", "takes one argument", 1),
    ("2x", "write 2*x", 2),
    ("x, y", "expected one expression", 4),
    ("x^2 + foo(x)", "unknown function 'foo'", 7),
    ("1/(x - x)", "division by zero", 4),
    ("9**9**9**9", "too large", None),
    ("x // 2", "'//' is not supported", 1),
    ("'x'", "strings are not expressions", 1),
    ("(x, y)", "a list or pair is not an expression", 1),
]


@pytest.mark.parametrize("text,message,column", BAD, ids=[b[0] or "empty" for b in BAD])
def test_bad_expressions_exit_2_with_one_line(text, message, column, capsys):
    code, out, err = run(["derive", text, "--wrt", "x"], capsys)
    assert code == 2 and not out
    lines = err.rstrip("\n").splitlines()
    assert lines[0].startswith("Error:") and message in lines[0], err
    assert "Traceback" not in err
    if column is not None:
        assert f"column {column}:" in lines[0]
        assert lines[2].index("^") - 2 == column - 1  # under the bad spot
    else:
        assert len(lines) in (1, 3)


@pytest.mark.parametrize("args,message", [
    (["x*y"], "--wrt"),
    (["x*y", "--wrt", "1x"], "not a variable name"),
    (["x*y", "--wrt", "x,x"], "given twice"),
    (["x", "--wrt", "tanh"], "function or constant"),
    (["x", "--limit", "x"], "NAME=POINT"),
    (["x", "--limit", "x=y"], "must be a number"),
    (["3"], "constant"),
])
def test_bad_options_exit_2(args, message, capsys):
    code, out, err = run(["derive", *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_user_text_never_reaches_eval(monkeypatch, capsys):
    """The parser builds sympy objects itself: with eval and exec gone, derive still works."""
    def refuse(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    assert parse_expression("tanh(w*x)^2 + sigmoid(x) - relu(y)") == (
        sp.tanh(w * x) ** 2 + sigmoid(x) - relu(y))
    code, _, err = run(["derive", "__import__('os').system('echo hi')"], capsys)
    assert code == 2 and "unexpected character '.'" in err


# -- derivations that once hung or failed: each answers, exit 0 or 2 ---------------------

NESTED = ["tan(tan(x))", "sin(cos(tan(x)))", "exp(tan(x))"]


def _fuzzed(count: int, seed: int = 16) -> list[str]:
    """Nested elementary functions, two to four deep, with a product or power on the way."""
    rng = random.Random(seed)
    names = ["sin", "cos", "tan", "exp", "tanh", "sinh", "log", "sqrt", "atan", "sigmoid"]
    texts = []
    for _ in range(count):
        text = "x"
        for _ in range(rng.randint(2, 4)):
            text = f"{rng.choice(names)}({text})"
            text = rng.choice([text, f"{text}*x", f"{text}^2", f"{text} + x"])
        texts.append(text)
    return texts


@pytest.mark.parametrize("text", NESTED + _fuzzed(6))
def test_nested_functions_answer_without_an_internal_error(text, capsys):
    start = time.monotonic()
    code, out, err = run(["derive", text], capsys)
    # a hang guard, not a speed test: the time budgets end every symbolic step
    assert time.monotonic() - start < 30
    assert code in (0, 2), err
    assert "Internal error" not in err
    if code == 0:
        got = derive(text).result("df/dx")
        expected = sp.diff(parse_expression(text), x)
        for at in (sp.Rational(3, 10), sp.Rational(7, 10)):
            a, b = complex(got.subs(x, at).evalf(30)), complex(expected.subs(x, at).evalf(30))
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_a_complex_rounding_residue_is_not_a_difference():
    from cnncalc.derive.calculus import same_value
    f = sp.sin(sp.cos(sp.tan(x)))
    holds, how = same_value(sp.diff(f.rewrite(sp.exp), x), sp.diff(f, x))
    assert holds is True, how
    assert same_value(sp.sin(x), sp.cos(x))[0] is False
