"""Closed-form symbolic sizes, proved against integer arithmetic and the numeric analysis.

Each folded formula (``cnncalc.symbolic``) is compared with the textbook output size
computed by Python's integer ``//`` at many sizes, strides, paddings and dilations; whole
symbolic analyses are compared, quantity by quantity, with the numeric analysis of the
same network at the substituted size.
"""

from __future__ import annotations

import json

import sympy as sp
from cli_helpers import run_ok
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnncalc
from cnncalc.symbolic import floor_div, same, tidy, window_size

H, W, C, P = sp.symbols("H W C P", integer=True, positive=True)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def textbook(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool = False) -> int:
    """``floor((I + 2p - d(k-1) - 1)/s) + 1`` (``ceil`` under ``ceil_mode``) in integers."""
    span = size + 2 * p - d * (k - 1) - 1
    return (-(-span // s) if ceil_mode else span // s) + 1


window = st.tuples(st.integers(1, 7), st.integers(1, 5), st.integers(0, 3), st.integers(1, 3),
                   st.booleans())


@SETTINGS
@given(st.lists(window, min_size=1, max_size=8), st.lists(st.integers(1, 5000), min_size=4,
                                                          max_size=4))
def test_folded_window_chains_equal_the_textbook_formula(chain, sizes):
    h = H
    for k, s, p, d, ceil_mode in chain:
        h = window_size(h, *(sp.Integer(v) for v in (k, s, p, d)), ceil_mode)
    assert h is not None
    assert sum(isinstance(t, (sp.floor, sp.ceiling)) for t in sp.preorder_traversal(h)) <= 1
    for size in sizes:
        expected = size
        for k, s, p, d, ceil_mode in chain:
            expected = textbook(expected, k, s, p, d, ceil_mode)
        assert h.xreplace({H: size}) == expected


@SETTINGS
@given(st.integers(1, 9), st.integers(-20, 20), st.integers(1, 9), st.integers(-20, 20),
       st.integers(1, 400), st.integers(1, 20))
def test_floor_of_a_floor_with_a_symbolic_shift(m, a, s, b, size, p):
    """floor((floor((H + a)/m) + b + 2P)/s): the shift may hold symbols (a padding P)."""
    inner = floor_div(H, sp.Integer(a), sp.Integer(m))
    outer = floor_div(inner, b + 2 * P, sp.Integer(s))
    assert outer.xreplace({H: size, P: p}) == ((size + a) // m + b + 2 * p) // s


def test_the_identities_named_in_the_docs():
    one, two, three = sp.Integer(1), sp.Integer(2), sp.Integer(3)
    assert window_size(H, three, two, one, one) == sp.ceiling(H / 2)  # floor((H-1)/2)+1
    h = H
    for _ in range(3):
        h = window_size(h, three, two, one, one)
    assert h == sp.ceiling(H / 8)
    assert window_size(H, three, one, one, one) == H  # stride-1 "same" keeps H
    assert window_size(H, two, two, sp.Integer(0), one) == sp.floor(H / 2)
    # a symbolic stride: one floor over the product of the strides
    S = sp.Symbol("S", integer=True, positive=True)
    assert window_size(H, three, S, one, one) == sp.floor((H - 1) / S) + 1
    assert window_size(window_size(H, three, S, one, one), three, S, one, one) == (
        sp.floor((H - 1) / S**2) + 1)


@SETTINGS
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=12),
       st.integers(1, 5), st.integers(1, 5000))
def test_fully_symbolic_stacks_fold_into_one_floor(chain, stride, size):
    """conv(k=F, s=S, p=P) repeated, each with its own dilation and an offset on P."""
    F, S = sp.symbols("F S", integer=True, positive=True)
    h = H
    for d, extra in chain:
        h = window_size(h, F, S, P + extra, sp.Integer(d))
    assert sum(isinstance(t, sp.floor) for t in sp.preorder_traversal(h)) == 1
    for k, p in ((1, 0), (3, 1), (5, 2)):
        expected = size
        for d, extra in chain:
            expected = textbook(expected, k, stride, p + extra, d)
        assert h.xreplace({H: size, F: k, S: stride, P: p}) == expected


def test_resnet50_ends_at_ceiling_h_over_32():
    a = cnncalc.analyze(model="resnet50", input="3xHxW")
    last = [r for r in a.layers if r.type == "conv2d"][-1]
    assert last.output_shape == (2048, sp.ceiling(H / 32), sp.ceiling(W / 32))


def test_same_decides_by_structure_and_by_a_witness():
    assert same(sp.ceiling(H / 4), sp.floor((H + 3) / 4))
    assert not same(sp.ceiling(H / 4), sp.ceiling(H / 8))
    assert not same(C, 2 * C)


QUANTITIES = ("params", "macs", "activations", "backward_input_macs", "backward_weight_macs",
              "saved_bytes", "training_bytes")

layer = st.one_of(
    st.builds(lambda c, k, s, p, d: f"conv({c}, k={k}, s={s}, p={p}, d={d})",
              st.integers(1, 8), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2),
              st.integers(1, 2)),
    st.builds(lambda k, s, p, ceil: f"maxpool({k}, s={s}, p={p}, ceil_mode={str(ceil).lower()})",
              st.integers(2, 4), st.integers(1, 3), st.integers(0, 1), st.booleans()),
    st.builds(lambda k, s: f"avgpool({k}, s={s})", st.integers(1, 3), st.integers(1, 3)),
    st.sampled_from(["relu", "bn", "conv(4, k=3, p=1), bn, relu"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(layer, min_size=1, max_size=6), st.integers(40, 300), st.integers(40, 300))
def test_symbolic_analysis_substituted_is_the_numeric_analysis(stack, h, w):
    spec = ", ".join(stack)
    try:
        numeric = cnncalc.analyze(spec, input=f"3x{h}x{w}")
    except cnncalc.CnnCalcError:
        return  # a window larger than the input at this size: nothing to compare
    symbolic = cnncalc.analyze(spec, input="3xHxW")
    at = {H: h, W: w}
    for a, b in zip(symbolic.layers, numeric.layers):
        assert tuple(d.xreplace(at) for d in a.output_shape) == b.output_shape
        assert a.memory_change.xreplace(at) == b.memory_change
        for q in QUANTITIES:
            assert getattr(a, q).xreplace(at) == getattr(b, q), (a.name, q)
        if a.receptive_field is not None:
            for key in ("size", "jump", "start"):
                got = tuple(v.xreplace(at) for v in getattr(a.receptive_field, key))
                assert got == getattr(b.receptive_field, key)
    for q in (*QUANTITIES, "params"):
        assert symbolic.total[q].xreplace(at) == numeric.total[q]
    assert symbolic.subs({"H": h, "W": w}).total == numeric.total
    assert symbolic.memory_change.xreplace(at) == numeric.memory_change


def test_subs_224_gives_the_numeric_resnet50():
    symbolic = cnncalc.analyze(model="resnet50", input="3xHxW")
    numeric = cnncalc.analyze(model="resnet50", input="3x224x224")
    at = {H: 224, W: 224}
    for q in ("params", "macs", "activations", "backward_input_macs", "backward_weight_macs",
              "saved_bytes", "training_bytes"):
        assert symbolic.total[q].xreplace(at) == numeric.total[q]
    assert symbolic.memory_change.xreplace(at) == numeric.memory_change
    for a, b in zip(symbolic.layers, numeric.layers):
        assert tuple(d.xreplace(at) for d in a.output_shape) == b.output_shape


def test_renderers_print_the_closed_form(capsys):
    latex = run_ok(["params", "--layers", "conv(8,k=3,s=2,p=1)*5", "--input", "CxHxW",
                    "--format", "latex"], capsys)
    assert r"\lceil H/32 \rceil" in latex and r"\lceil W/32 \rceil" in latex
    table = run_ok(["params", "--layers", "conv(8,k=3,s=2,p=1)*5", "--input", "CxHxW"],
                   capsys)
    assert "8×⌈H/32⌉×⌈W/32⌉" in table


def test_subs_gives_exactly_the_numeric_json(capsys):
    args = ["params", "--layers", "conv(8,k=7,s=2,p=3), maxpool(3,s=2,p=1), "
            "conv(16,k=3,s=2,p=1), gap, flatten, fc(10)", "--format", "json"]
    symbolic = json.loads(run_ok([*args, "--input", "3xHxW", "--subs", "H=224,W=200"],
                                 capsys))
    numeric = json.loads(run_ok([*args, "--input", "3x224x200"], capsys))
    assert symbolic["layers"] == numeric["layers"] and symbolic["total"] == numeric["total"]


def test_a_long_run_of_identical_rows_is_folded_in_the_table_only(capsys):
    spec = "conv(4,k=3,p=1), relu*30"
    table = run_ok(["params", "--layers", spec, "--input", "1x28x28"], capsys)
    assert "⋮ 28 more rows like these" in table and "relu30" in table
    assert "relu15" not in table
    rows = json.loads(run_ok(["params", "--layers", spec, "--input", "1x28x28", "--format",
                              "json"], capsys))["layers"]
    assert len(rows) == 31
    short = run_ok(["params", "--layers", "conv(4,k=3,p=1), relu*5", "--input", "1x28x28"],
                   capsys)
    assert "more rows" not in short and all(f"relu{i}" in short for i in range(1, 6))


def test_out_of_time_simplification_keeps_the_exact_form(monkeypatch):
    from cnncalc import comparison
    big = sp.Add(*(sp.ceiling(H / 2**i) * sp.ceiling(W / 3**i) for i in range(1, 30)))
    assert tidy(big, seconds=1e-6) == big  # out of time: exactly what came in
    monkeypatch.setattr(comparison, "SIMPLIFY_SECONDS", 1e-6)
    a = cnncalc.analyze(model="resnet18", input="3xHxW")
    b = cnncalc.analyze(model="vgg16", input="3xHxW")
    c = comparison.compare(a, b)
    assert c.notes and "not simplified" in c.notes[0]
    for line in c.lines:
        assert sp.expand(line.difference - (line.b - line.a)) == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(30, 200),
       st.integers(1, 4))
def test_fully_symbolic_layers_substituted_are_the_numeric_analysis(k, s, p, h, depth):
    """conv(k=F, s=S, p=P) stacks: one floor over S**n, named sizes (H₁, H₂, ...) past the
    second layer, and the memory change left as an unevaluated quotient, each equal to the
    numeric run once F, S, P, H, W are given (``subs`` reaches into the named sizes)."""
    spec = ", ".join(["conv(4, k=F, s=S, p=P), relu"] * depth)
    try:
        numeric = cnncalc.analyze(spec.replace("F", str(k)).replace("S", str(s))
                                  .replace("P", str(p)), input=f"3x{h}x{h + 1}")
    except cnncalc.CnnCalcError:
        return
    symbolic = cnncalc.analyze(spec, input="CxHxW", batch="N")
    F, S, N = sp.symbols("F S N", integer=True, positive=True)
    at = {F: k, S: s, P: p, H: h, W: h + 1, C: 3, N: 1}
    for a, b in zip(symbolic.layers, numeric.layers):
        assert tuple(d.subs(at) for d in a.output_shape) == b.output_shape
        assert a.memory_change.subs(at) == b.memory_change
        for q in QUANTITIES:
            assert getattr(a, q).subs(at) == getattr(b, q), (a.name, q)
    assert symbolic.memory_change.subs(at) == numeric.memory_change
