"""``cnncalc compare``: seed 004's two residual blocks, and symbolic networks.

The expected figures are derived here from the blocks' definitions (seed 004 Q3: convs
with bias, batch norm, identity shortcut on a 56x56 map), not read from cnncalc.
"""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction

import sympy as sp
from cli_helpers import run_ok as run

import cnncalc

HW = 56 * 56


def conv(k, c_in, c_out):
    """(params with bias, MACs) of a stride-1 'same' conv on the 56x56 map."""
    return k * k * c_in * c_out + c_out, k * k * c_in * c_out * HW


STANDARD = [conv(3, 32, 32), conv(3, 32, 32)]
BOTTLENECK = [conv(1, 128, 32), conv(3, 32, 32), conv(1, 32, 128)]
EXPECTED = {
    # params: convs plus gamma and beta of each batch norm
    "params": (sum(p for p, _ in STANDARD) + 2 * (32 + 32),
               sum(p for p, _ in BOTTLENECK) + 2 * (32 + 32 + 128)),
    "macs": (sum(m for _, m in STANDARD), sum(m for _, m in BOTTLENECK)),
    # running mean and variance of each batch norm
    "buffers": (2 * (32 + 32), 2 * (32 + 32 + 128)),
    # every row's output: conv, bn, relu, conv, bn, add  /  (conv, bn, relu) x 2, conv, bn, add
    "activations": (6 * 32 * HW, 6 * 32 * HW + 3 * 128 * HW),
}


def test_standard_block_vs_bottleneck(capsys):
    doc = json.loads(run(["compare", "--model", "standard_block", "--model",
                          "bottleneck_block", "--format", "json"], capsys))
    assert (doc["a"]["name"], doc["b"]["name"]) == ("standard_block", "bottleneck_block")
    assert doc["a"]["input_shape"] == [32, 56, 56] and doc["b"]["input_shape"] == [128, 56, 56]
    lines = {q["quantity"]: q for q in doc["quantities"]}
    assert EXPECTED["params"] == (18_624, 17_984)  # the seed's own answers
    for key, (a, b) in EXPECTED.items():
        line = lines[key]
        assert (line["a"], line["b"], line["difference"]) == (a, b, b - a), key
        assert Fraction(line["ratio_exact"]) == Fraction(b, a), key
    assert lines["non_trainable_params"]["ratio"] is None  # 0 / 0 has no ratio


def test_specs_with_an_input_each_match_the_models(capsys):
    std = "residual(conv(32,k=3,p=1), bn, relu, conv(32,k=3,p=1), bn)"
    bot = "residual(conv(32,k=1), bn, relu, conv(32,k=3,p=1), bn, relu, conv(128,k=1), bn)"
    rows = list(csv.DictReader(io.StringIO(run(
        ["compare", std, bot, "--input", "32x56x56", "--input", "128x56x56", "--format", "csv"],
        capsys))))
    got = {r["quantity"]: (int(r["a"]), int(r["b"])) for r in rows if r["quantity"] in EXPECTED}
    assert got == EXPECTED


def test_table_and_markdown_show_both_and_the_ratio(capsys):
    out = run(["compare", "--model", "standard_block", "--model", "bottleneck_block"],
              capsys)
    assert "B − A" in out and "18,624" in out and "17,984" in out and "281/291" in out
    md = run(["compare", "--model", "standard_block", "--model", "bottleneck_block",
              "--format", "markdown"], capsys)
    assert "| params | 18,624 | 17,984 | -640 |" in md


C, H, W, K, N = (sp.Symbol(s, integer=True, positive=True) for s in "CHWKN")


def test_symbolic_difference_and_ratio_are_simplified():
    """A 3x3 conv against a depthwise-separable one, derived by hand."""
    a = cnncalc.analyze("conv(K,k=3,p=1)", input="CxHxW", batch="N")
    b = cnncalc.analyze("dwconv(k=3), conv(K,k=1)", input="CxHxW", batch="N")
    lines = {line.quantity: line for line in cnncalc.compare(a, b).lines}
    params_a, params_b = 9 * C * K + K, (9 * C + C) + (C * K + K)
    macs_a, macs_b = 9 * C * K * H * W * N, (9 * C + C * K) * H * W * N
    assert sp.simplify(lines["params"].difference - (params_b - params_a)) == 0
    assert sp.simplify(lines["params"].ratio - params_b / params_a) == 0
    assert sp.simplify(lines["macs"].ratio - macs_b / macs_a) == 0
    assert lines["macs"].ratio == (K + 9) / (9 * K)  # simplified: N, H, W and C cancel
    assert lines["activations"].difference == C * H * W * N  # the depthwise output


def test_symbolic_on_the_cli_with_subs(capsys):
    doc = json.loads(run(["compare", "conv(K,k=3,p=1)", "dwconv(k=3), conv(K,k=1)", "--input",
                          "CxHxW", "--subs", "K=64", "--format", "json"], capsys))
    lines = {q["quantity"]: q for q in doc["quantities"]}
    assert sp.sympify(lines["macs"]["ratio_exact"]) == sp.Rational(64 + 9, 9 * 64)
    diff = sp.sympify(lines["params"]["difference"], locals={"C": C})
    assert sp.simplify(diff - ((10 * C + 64 * C + 64) - (9 * C * 64 + 64))) == 0


def test_a_live_torch_model_against_its_spec(capsys):
    """``--torch`` on one side: the same network written twice compares as equal."""
    doc = json.loads(run(["compare", "conv(4,k=3), relu, flatten, fc(2)", "--torch",
                          "torch_factories:tiny", "--input", "3x32x32", "--format", "json"],
                         capsys))
    for line in doc["quantities"]:
        assert line["difference"] == 0, line
        assert line["ratio"] in (1, None), line
    assert doc["a"]["output_shape"] == doc["b"]["output_shape"] == [2]
