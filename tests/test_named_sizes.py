"""Named sizes (``H₃``): deep symbolic-stride stacks stay a short formula per row, and stay
exact.

Each analysis with named sizes is compared, row by row and quantity by quantity, with the
numeric analysis of the same network at the substituted values (through ``subs``, which
reaches into the definitions, and through ``unfold``); each name's definition with the
textbook output size in Python integers; and each renderer is checked to print the
definitions it relies on.
"""

from __future__ import annotations

import json
import pickle

import sympy as sp
from cli_helpers import run_ok
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnncalc
from cnncalc.symbolic import Size, same, unfold

H, W, C, F, S, P, D, N = sp.symbols("H W C F S P D N", integer=True, positive=True)
QUANTITIES = ("params", "macs", "activations", "memory_change", "backward_input_macs",
              "backward_weight_macs", "saved_bytes", "training_bytes")
SUBSCRIPTS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")


def textbook(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


layer = st.sampled_from([
    "conv(4, k=F, s=S, p=P)", "conv(4, k=F, s=S, p=P, d=D)", "conv(4, k=3, s=S, p=1)",
    "maxpool(2, s=S)", "deconv(4, k=F, s=S, p=P)", "relu", "bn",
    "conv(4, k=F, s=S, p=P), bn, relu",
])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(layer, min_size=2, max_size=8), st.integers(1, 5), st.integers(1, 3),
       st.integers(0, 2), st.integers(1, 2), st.integers(30, 300), st.integers(30, 300))
def test_named_analysis_substituted_is_the_numeric_analysis(stack, k, s, p, d, h, w):
    spec = ", ".join(stack)
    values = {"F": k, "S": s, "P": p, "D": d}
    try:
        numeric = cnncalc.analyze("".join(str(values.get(ch, ch)) for ch in spec),
                                  input=f"3x{h}x{w}", batch=2, optimizer="adam")
    except cnncalc.CnnCalcError:
        return  # a window larger than its input at these values: nothing to compare
    symbolic = cnncalc.analyze(spec, input="CxHxW", batch="N", optimizer="adam")
    at = {F: k, S: s, P: p, D: d, H: h, W: w, C: 3, N: 2}
    for a, b in zip(symbolic.layers, numeric.layers, strict=True):
        assert tuple(x.subs(at) for x in a.output_shape) == b.output_shape, a.name
        assert tuple(unfold(x).xreplace(at) for x in a.output_shape) == b.output_shape
        for q in QUANTITIES:
            assert unfold(getattr(a, q)).xreplace(at) == getattr(b, q), (a.name, q)
        if b.receptive_field is not None:
            for key in ("size", "jump", "start"):
                got = tuple(v.subs(at) for v in getattr(a.receptive_field, key))
                assert got == getattr(b.receptive_field, key), (a.name, key)
    for q, value in numeric.total.items():
        if not q.startswith("receptive_field"):
            assert symbolic.total[q].subs(at) == value, q
    assert symbolic.memory_change.subs(at) == numeric.memory_change
    # every name stands for the size of the row it is named after
    for size in symbolic.named_sizes:
        row = numeric.layers[size.index]
        assert size.subs(at) == row.output_shape[1 + "HW".index(size.dim)]


def test_each_definition_is_the_textbook_size_in_integers():
    a = cnncalc.analyze("conv(8, k=F, s=S, p=P)*12", input="CxHxW")
    assert [s.name for s in a.named_sizes[:4]] == ["H₁", "W₁", "H₂", "W₂"]
    for k, s, p, h in ((3, 2, 1, 4000), (5, 1, 2, 77), (1, 2, 0, 9000), (4, 3, 1, 10**6)):
        sizes = [h]
        for _ in range(12):
            sizes.append(textbook(sizes[-1], k, s, p))
        at = {F: k, S: s, P: p, H: h}
        for size in a.named_sizes:
            if size.dim == "H":
                assert unfold(size).xreplace(at) == sizes[size.index + 1]
        assert a.named_sizes[-2].subs(at) == sizes[-1]


def test_a_deep_stack_costs_the_same_per_row_at_any_depth():
    """Linear in depth: row n's formulas are as long at depth 40 as at depth 5."""
    def nodes(expr):
        return sum(1 for _ in sp.preorder_traversal(expr))

    short = cnncalc.analyze("conv(8, k=F, s=S, p=P)*5", input="CxHxW")
    deep = cnncalc.analyze("conv(8, k=F, s=S, p=P)*40", input="CxHxW")
    for q in ("macs", "activations", "memory_change", "saved_bytes"):
        assert nodes(getattr(deep.layers[-1], q)) == nodes(getattr(short.layers[-1], q))
    assert max(nodes(s.definition) for s in deep.named_sizes) == max(
        nodes(s.definition) for s in short.named_sizes)
    assert deep.layers[-1].output_shape[1:] == tuple(deep.named_sizes[-2:])


def test_names_are_exact_symbols_apart_from_the_users():
    a = cnncalc.analyze("conv(8, k=F, s=S, p=P)*4", input="CxHxW")
    h3 = a.layers[3].output_shape[1]
    assert isinstance(h3, Size) and h3.is_integer and h3.is_positive
    assert h3 != sp.Symbol("H₃", integer=True, positive=True)  # a user cannot type it
    assert [s.name for s in a.symbols] == ["C", "F", "H", "P", "S", "W"]
    assert pickle.loads(pickle.dumps(h3)) == h3
    assert same(h3, unfold(h3)) and same(h3, h3.definition)
    assert not same(h3, a.layers[2].output_shape[1])
    # the same network analysed again names the same sizes; another network's H₂ differs
    assert cnncalc.analyze("conv(8, k=F, s=S, p=P)*4", input="CxHxW").named_sizes == \
        a.named_sizes
    other = cnncalc.analyze("conv(8, k=F, s=S, p=P, d=D)*4", input="CxHxW").named_sizes
    assert other[0].name == "H₁" and other[0] != a.named_sizes[0]


def _evaluate(text, values: dict) -> int:
    """A plain formula from the JSON, named sizes included, at ``values`` (names to ints)."""
    expr = sp.sympify(str(text).translate(SUBSCRIPTS), locals={
        name: sp.Symbol(name, integer=True, positive=True) for name in values})
    return int(expr.xreplace({sp.Symbol(n, integer=True, positive=True): v
                              for n, v in values.items()}))


def test_json_carries_the_definitions_and_subs_gives_the_numeric_json(capsys):
    spec = "conv(8,k=F,s=S,p=P)*6, gap, flatten, fc(10)"
    args = ["params", "--layers", spec, "--format", "json"]
    symbolic = json.loads(run_ok([*args, "--input", "CxHxW"], capsys))
    numeric = json.loads(run_ok(["params", "--layers", "conv(8,k=3,s=2,p=1)*6, gap, "
                                 "flatten, fc(10)", "--format", "json", "--input",
                                 "3x200x180"], capsys))
    values = {"C": 3, "F": 3, "S": 2, "P": 1, "H": 200, "W": 180}
    assert list(symbolic["named_sizes"]) == [f"{d}{i}" for i in "₁₂₃₄₅" for d in "HW"]
    for name, definition in symbolic["named_sizes"].items():
        values[name.translate(SUBSCRIPTS)] = _evaluate(definition, values)
    for a, b in zip(symbolic["layers"], numeric["layers"], strict=True):
        assert [_evaluate(str(x), values) for x in a["output_shape"]] == b["output_shape"]
        assert _evaluate(a["macs"], values) == b["macs"]
    assert _evaluate(symbolic["total"]["macs"], values) == numeric["total"]["macs"]
    subs = json.loads(run_ok([*args, "--input", "CxHxW", "--subs",
                              "C=3,F=3,S=2,P=1,H=200,W=180"], capsys))
    assert subs["layers"] == numeric["layers"] and subs["total"] == numeric["total"]
    assert subs["named_sizes"] == {}


def test_every_format_prints_the_definitions(capsys):
    def run(fmt):
        return run_ok(["params", "--layers", "conv(8,k=F,s=S,p=P)*3", "--input", "CxHxW",
                       "--format", fmt], capsys)

    table = run("table")
    assert "8×H₂×W₂" in table and "where  H₁ = " in table
    assert "H₂ = ⌊(H₁ - F + 2·P)/S⌋ + 1, W₂ = ⌊(W₁ - F + 2·P)/S⌋ + 1" in table
    assert ",H₂,named size,floor((H₁ - F + 2*P)/S) + 1" in run("csv")
    markdown = run("markdown")
    assert "- where H₂ = ⌊(H₁ - F + 2·P)/S⌋ + 1, W₂ = " in markdown
    # the first row's sizes are sums, bracketed in a shape
    assert "| 8 × (⌊(-F + H + 2·P)/S⌋ + 1) × (⌊(-F + 2·P + W)/S⌋ + 1) |" in markdown
    latex = run("latex")
    assert r"H_{2} &= \left\lfloor{\frac{H_{1} - F + 2 P}{S}}\right\rfloor + 1 \\" in latex
    assert "H₂" not in latex
    plain = run_ok(["params", "--layers", "conv(8,k=3,s=2,p=1)*3", "--input", "CxHxW"],
                   capsys)
    assert "where" not in plain  # closed forms need no names


def test_compare_writes_each_networks_names_out(capsys):
    out = json.loads(run_ok(["compare", "conv(8,k=F,s=S,p=P)*2", "conv(8,k=F,s=S,p=P,d=D)*2",
                             "--input", "CxHxW", "--format", "json"], capsys))
    text = json.dumps(out, ensure_ascii=False)
    assert "₁" not in text  # A's H₁ is not B's H₁
    macs = next(q for q in out["quantities"] if q["quantity"] == "macs")
    at = {"C": 3, "F": 3, "S": 2, "P": 1, "D": 1, "H": 64, "W": 48}
    assert _evaluate(macs["difference"], at) == 0  # d=1 is the same network
