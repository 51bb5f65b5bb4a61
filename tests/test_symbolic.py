"""Symbolic analyses checked with sympy: textbook formulas, substitution, the batch."""

from __future__ import annotations

import pytest
import sympy as sp

import cnncalc

C, H, W, K, F, S, P, N = sp.symbols("C H W K F S P N", integer=True, positive=True)


def equal(a, b) -> bool:
    return sp.simplify(sp.sympify(a) - sp.sympify(b)) == 0


def test_3x3_same_padding_keeps_h_and_w():
    a = cnncalc.analyze("conv(K, k=3, p=1)", input="CxHxW")
    assert a.layers[0].output_shape == (K, H, W)
    assert equal(a.total["params"], 9 * C * K + K)
    assert equal(a.total["macs"], 9 * C * K * H * W)


def test_general_conv_is_the_textbook_formula():
    a = cnncalc.analyze("conv(K, k=F, s=S, p=P)", input="CxHxW")
    h_out = sp.floor((H + 2 * P - F) / S) + 1
    w_out = sp.floor((W + 2 * P - F) / S) + 1
    assert all(equal(x, y) for x, y in zip(a.output_shape, (K, h_out, w_out)))
    assert equal(a.total["params"], F**2 * C * K + K)
    assert equal(a.total["macs"], F**2 * C * K * h_out * w_out)
    assert equal(a.total["activations"], K * h_out * w_out)


def test_no_bias_params_are_f2ck():
    a = cnncalc.analyze("conv(K, k=F)", input="CxHxW", bias=False)
    assert equal(a.total["params"], F**2 * C * K)


def test_stride_two_keeps_the_rounding_in_closed_form():
    a = cnncalc.analyze("conv(16, k=3, s=2, p=1)", input="3xHxW")
    h = a.layers[0].output_shape[1]
    assert h == sp.ceiling(H / 2)  # floor((H - 1)/2) + 1, written as a person would
    for value in (31, 32, 33, 224):
        assert h.subs(H, value) == (value + 2 - 3) // 2 + 1


@pytest.mark.parametrize("hw", [(32, 32), (57, 64), (224, 224)])
def test_substitution_equals_the_numeric_analysis(hw):
    spec = "conv(K, k=F, s=2, p=1), relu, maxpool(2), conv(2*K, k=3, p=1), gap, flatten, fc(10)"
    values = {"H": hw[0], "W": hw[1], "K": 8, "F": 3, "C": 3}
    symbolic = cnncalc.analyze(spec, input="CxHxW")
    substituted = symbolic.subs(values)
    numeric = cnncalc.analyze(spec.replace("2*K", "16").replace("K", "8").replace("F", "3"),
                              input=f"3x{hw[0]}x{hw[1]}")
    for key in ("params", "macs", "activations"):
        assert substituted.total[key] == numeric.total[key]
        direct = symbolic.total[key].subs({sp.Symbol(k, integer=True, positive=True): v
                                           for k, v in values.items()})
        assert direct == numeric.total[key]


def test_symbolic_batch_multiplies_macs_and_activations():
    one = cnncalc.analyze(model="lenet5")
    many = cnncalc.analyze(model="lenet5", batch="N")
    assert equal(many.total["macs"], N * one.total["macs"])
    assert equal(many.total["activations"], N * one.total["activations"])
    assert many.total["params"] == one.total["params"]
    assert many.subs({"N": 64}).total["macs"] == 64 * one.total["macs"]


def test_memory_change_is_exact():
    a = cnncalc.analyze("conv(K, k=1)", input="CxHxW")
    assert equal(a.layers[0].memory_change, 100 * (K - C) / C)
    b = cnncalc.analyze("conv(2, k=1)", input="3x4x4")
    assert b.layers[0].memory_change == sp.Rational(-100, 3)


def test_symbolic_residual_projection():
    a = cnncalc.analyze("basic(2*C, s=2)", input="CxHxW")
    conv3 = 9 * C * 2 * C
    expected = conv3 + 2 * (2 * C) + 9 * (2 * C) ** 2 + 2 * (2 * C) + C * 2 * C + 2 * (2 * C)
    assert equal(a.total["params"], expected)
    h = a.output_shape[1]
    assert h == sp.ceiling(H / 2)  # floor((H - 1)/2) + 1, which sympy cannot prove equal
    assert all(h.subs(H, v) == (v - 1) // 2 + 1 for v in range(1, 300))


def test_layout_hwc_reads_and_prints_hwc():
    a = cnncalc.analyze("conv(K, k=3, p=1)", input="HxWxC", layout="hwc")
    assert a.input_shape == (H, W, C)
    assert a.output_shape == (H, W, K)
    assert equal(a.total["params"], 9 * C * K + K)
