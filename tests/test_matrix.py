"""``cnncalc matrix``: A, B = Aᵀ, the backward convolution and C_x against torch and scipy.

Symbols are looked up by the names the module documents (``w_κ^ij``, ``x_it``, ``w_ab^ij``,
``x^i_rc``, ``dy_jt``), so a wrong name fails here just as a wrong matrix does. Weights and
inputs are random small integers, so float64 references are exact.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy as sp
from cli_helpers import run_ok as run

from cnncalc.cli import main
from cnncalc.derive.matrix import (
    conv_matrix,
    geometry,
    jacobian_matrix,
    matrix_derivation,
)
from cnncalc.errors import CnnCalcError

torch = pytest.importorskip("torch")
signal = pytest.importorskip("scipy.signal")
F = torch.nn.functional

# (length, in, out, kernel, stride, padding): odd strides, remainders, p > k-1 (a crop).
CASES_1D = [(4, 2, 2, 3, 1, 0), (4, 1, 1, 3, 1, 2), (6, 1, 1, 3, 2, 1), (7, 2, 3, 3, 2, 0),
            (8, 3, 2, 4, 3, 2), (5, 1, 2, 2, 1, 2), (9, 2, 1, 3, 3, 1)]
# (HxW, in, out, (kh, kw), (sh, sw), (ph, pw))
CASES_2D = [((3, 3), 1, 1, (2, 2), (1, 1), (1, 1)), ((4, 5), 2, 1, (2, 3), (2, 2), (0, 0)),
            ((5, 4), 1, 2, (3, 2), (2, 1), (1, 0)), ((4, 4), 2, 2, (3, 3), (3, 2), (1, 2))]


def sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def arg(value) -> str:
    """A size as typed on the command line: ``4`` or ``4x5``."""
    return str(value) if isinstance(value, int) else "x".join(map(str, value))


def rng_ints(rng, *shape):
    return rng.integers(-4, 5, size=shape).astype(np.float64)


def weight_names(w: np.ndarray, ndim: int) -> dict:
    """torch's weight[j, i, ...] under the documented names w_κ^ij (1-D) / w_ab^ij (2-D)."""
    out = {}
    for j, i, *taps in np.ndindex(*w.shape):
        where = "".join(str(t + 1) for t in taps)
        out[f"w_{where}^{i + 1}{j + 1}"] = w[(j, i, *taps)]
    return out


def input_names(x: np.ndarray, letter: str = "x") -> dict:
    """x[i, t] as x_it (1-D), x[i, r, c] as x^i_rc (2-D)."""
    out = {}
    for i, *pos in np.ndindex(*x.shape):
        where = "".join(str(p + 1) for p in pos)
        out[f"{letter}_{i + 1}{where}" if len(pos) == 1 else f"{letter}^{i + 1}_{where}"] = \
            x[(i, *pos)]
    return out


def numeric(m: sp.Matrix, values: dict) -> np.ndarray:
    return np.array(m.xreplace({sym(k): v for k, v in values.items()}), dtype=np.float64)


def make(case, ndim):
    size, cin, cout, k, s, p = case
    return geometry(size, cin, cout, k, s, p), torch_conv(ndim), (s, p)


def torch_conv(ndim):
    return F.conv1d if ndim == 1 else F.conv2d


def all_cases():
    return [(c, 1) for c in CASES_1D] + [(c, 2) for c in CASES_2D]


@pytest.mark.parametrize(("case", "ndim"), all_cases(), ids=str)
def test_a_times_x_is_torch_conv(case, ndim):
    g, conv, (s, p) = make(case, ndim)
    rng = np.random.default_rng(0)
    w = rng_ints(rng, g.out_channels, g.in_channels, *g.kernel[2 - ndim:])
    x = rng_ints(rng, g.in_channels, *g.size[2 - ndim:])
    y = conv(torch.tensor(x)[None], torch.tensor(w), stride=s, padding=p)[0].numpy()
    a = numeric(conv_matrix(g), weight_names(w, ndim))
    assert a.shape == (y.size, x.size)
    np.testing.assert_array_equal(a @ x.ravel(), y.ravel())


@pytest.mark.parametrize(("case", "ndim"), all_cases(), ids=str)
def test_printed_backward_convolution_is_torch_autograd(case, ndim, capsys):
    """Read the kernels, dilation and padding from the JSON the CLI prints, run that
    convolution in torch, and compare with autograd's ∂L/∂X of L = Σ y·g."""
    size, cin, cout, k, s, p = case
    doc = json.loads(run(["matrix", "--length" if ndim == 1 else "--size", arg(size),
                          "--in-channels", str(cin), "--out-channels", str(cout),
                          "--kernel", arg(k), "--stride", arg(s), "--padding", arg(p),
                          "--backward", "-o", "json"], capsys))
    results = {r["label"]: r["value"] for r in doc["results"]}
    assert all(c["holds"] for c in doc["checks"]) and len(doc["checks"]) == 2

    rng = np.random.default_rng(1)
    w = rng_ints(rng, cout, cin, *((k,) if ndim == 1 else k))
    x = torch.tensor(rng_ints(rng, cin, *((size,) if ndim == 1 else size)))[None]
    x.requires_grad_(True)
    conv = torch_conv(ndim)
    y = conv(x, torch.tensor(w), stride=s, padding=p)
    g = torch.tensor(rng_ints(rng, *y.shape))
    (y * g).sum().backward()

    names = {"0": 0.0, **weight_names(w, ndim)}  # every printed kernel entry is 0 or one w
    value = names.__getitem__
    if ndim == 1:  # K^{ji}: one (C_out x k) matrix per ∂L/∂X channel i, row j
        kb = np.array([[[value(e) for e in row] for row in results[f"K^{{j{i + 1}}}"]]
                       for i in range(cin)])
        step, pads = (results.get("dilation", 1),), [results["padding"]]
    else:  # one K^{ji} per pair
        kb = np.array([[[[value(e) for e in row] for row in results[f"K^{{{j + 1}{i + 1}}}"]]
                        for j in range(cout)] for i in range(cin)])
        step, pads = tuple(results.get("dilation", (1, 1))), results["padding"]
    dilated = torch.zeros(1, cout, *((n - 1) * st + 1 for n, st in zip(g.shape[2:], step)),
                          dtype=g.dtype)
    dilated[(slice(None), slice(None), *(slice(None, None, st) for st in step))] = g
    flat_pads = [v for before, after in reversed(pads) for v in (before, after)]
    dx = conv(F.pad(dilated, flat_pads), torch.tensor(kb))
    assert torch.equal(dx, x.grad)

    a = np.array(results["A"], dtype=object)
    b = np.array(results["B"], dtype=object)
    assert (b == a.T).all()


@pytest.mark.parametrize(("case", "ndim"), all_cases(), ids=str)
def test_backward_is_conv_transpose(case, ndim):
    """∂L/∂X̃ = Aᵀ ∂L/∂Ỹ is torch's conv_transpose of ∂L/∂Y (output_padding = the remainder)."""
    g, conv, (s, p) = make(case, ndim)
    rng = np.random.default_rng(2)
    w = rng_ints(rng, g.out_channels, g.in_channels, *g.kernel[2 - ndim:])
    dy = rng_ints(rng, g.out_channels, *g.out_size[2 - ndim:])
    n, k = g.size[2 - ndim:], g.kernel[2 - ndim:]
    ss, pp = (s,) * ndim if isinstance(s, int) else s, (p,) * ndim if isinstance(p, int) else p
    extra = tuple((ni + 2 * pi - ki) % si for ni, ki, si, pi in zip(n, k, ss, pp))
    transpose = F.conv_transpose1d if ndim == 1 else F.conv_transpose2d
    # conv_transpose's weight is (C_in of ∂L/∂Y, C_out of ∂L/∂X, ...): the forward weight as is
    dx = transpose(torch.tensor(dy)[None], torch.tensor(w), stride=s, padding=p,
                   output_padding=extra)[0].numpy()
    b = numeric(conv_matrix(g).T, weight_names(w, ndim))
    np.testing.assert_array_equal(b @ dy.ravel(), dx.ravel())


def test_seed_002_q3_a_b_c():
    """Seed 002 Q3 (= seed 004 Q5), worked from the definition y_jo = Σ_i Σ_κ w_κ^ij x_i,o+κ."""
    d = matrix_derivation(geometry(4, 2, 2, kernel=3), backward=True)
    w = {(k, i, j): sym(f"w_{k}^{i}{j}") for k in (1, 2, 3) for i in (1, 2) for j in (1, 2)}
    x = [sym(f"x_{i}{t}") for i in (1, 2) for t in (1, 2, 3, 4)]
    rows = []
    for j in (1, 2):
        for o in (0, 1):
            row = [0] * 8
            for i in (1, 2):
                for k in (1, 2, 3):
                    row[(i - 1) * 4 + o + k - 1] = w[k, i, j]
            rows.append(row)
    a = sp.Matrix(rows)
    assert d.result("A") == a
    assert d.result("B") == a.T
    assert list(d.result("A") * sp.Matrix(x)) == [
        sum(w[k, i, j] * x[(i - 1) * 4 + o + k - 1] for i in (1, 2) for k in (1, 2, 3))
        for j in (1, 2) for o in (0, 1)]
    # (c): ∂L/∂x_i is the full correlation of ∂L/∂Y (padded by k-1 = 2) with every W^ij flipped.
    for i in (1, 2):
        assert d.result(f"K^{{j{i}}}") == sp.Matrix(
            [[w[3, i, j], w[2, i, j], w[1, i, j]] for j in (1, 2)])
    assert d.result("padding") == (2, 2)
    assert "dilation" not in {item.label for item in d.results}
    assert all(c.holds for c in d.checks)
    assert any("convolutional-networks homework, problem 3 (c)" in n and "unflipped" in n
               for n in d.notes)
    assert any("backpropagation homework, problem 5 (a)" in n for n in d.notes)


def test_seed_003_p2c_jacobian_is_scipy_full_correlation():
    """w ⋆ x (w slides over fixed x) = scipy.signal.correlate(x, w, 'full') = C_x w."""
    g = geometry(4, kernel=3, padding=2)
    c = jacobian_matrix(g)
    x1, x2, x3, x4 = (sym(f"x_1{t}") for t in (1, 2, 3, 4))
    assert c == sp.Matrix([[0, 0, x1], [0, x1, x2], [x1, x2, x3], [x2, x3, x4], [x3, x4, 0],
                           [x4, 0, 0]])
    rng = np.random.default_rng(3)
    x, w = rng_ints(rng, 4), rng_ints(rng, 3)
    np.testing.assert_array_equal(numeric(c, input_names(x[None])) @ w,
                                  signal.correlate(x, w, mode="full"))


@pytest.mark.parametrize(("case", "ndim"), all_cases(), ids=str)
def test_jacobian_times_flat_weights_is_torch_conv(case, ndim):
    g, conv, (s, p) = make(case, ndim)
    rng = np.random.default_rng(4)
    w = rng_ints(rng, g.out_channels, g.in_channels, *g.kernel[2 - ndim:])
    x = rng_ints(rng, g.in_channels, *g.size[2 - ndim:])
    y = conv(torch.tensor(x)[None], torch.tensor(w), stride=s, padding=p)[0].numpy()
    c = numeric(jacobian_matrix(g), input_names(x))
    np.testing.assert_array_equal(c @ w.ravel(), y.ravel())  # w̃ = torch's weight.flatten()


def test_names_use_commas_once_an_index_passes_nine():
    d = matrix_derivation(geometry(10, 1, 10, kernel=2), jacobian=True)
    names = {s.name for s in d.result("A").free_symbols | d.result("C_x").free_symbols}
    assert {"w_1^1,10", "w_2^1,1", "x_1,10", "x_1,1"} <= names
    assert all(s.is_real for s in d.result("C_x").free_symbols)


def test_contract_examples(capsys):
    out = run(["matrix", "--length", "4", "--in-channels", "2", "--out-channels", "2",
               "--kernel", "3", "--backward"], capsys)
    assert "B = " in out and "K^{j2}" in out and "✗" not in out
    out = run(["matrix", "--size", "3x3", "--kernel", "2", "--padding", "1"], capsys)
    assert "A = " in out and "2-D, 3x3" in out


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "latex"])
def test_every_format_and_show_work(fmt, capsys):
    out = run(["matrix", "--length", "6", "--kernel", "3", "--stride", "2", "--padding", "1",
               "--backward", "--jacobian", "--show-work", "-o", fmt], capsys)
    assert "C_x" in out
    if fmt == "table":
        assert "⌊(6 + 2·1 − 3)/2⌋ + 1 = 3" in out and "∂L/∂Y dilated" in out


def test_show_work_rows_are_a_times_x():
    d = matrix_derivation(geometry((3, 3), 1, 2, kernel=2, padding=1))
    steps = {s.label: s.value for s in d.steps}
    x = sp.Matrix([sym(f"x^1_{r}{c}") for r in (1, 2, 3) for c in (1, 2, 3)])
    assert steps["Ỹ"] == d.result("A") * x
    assert "H_out" in steps and "W_out" in steps


@pytest.mark.parametrize("args", [
    ["--length", "2", "--kernel", "5", "--padding", "1"],      # kernel larger than padded input
    ["--size", "2x9", "--kernel", "4"],                        # ... along the height
    ["--length", "1000", "--kernel", "3"],                     # A too large
    ["--size", "99999999999x99999999999", "--kernel", "2"],    # absurd: refused at once
    ["--length", "1", "--kernel", "9999", "--padding", "4999",
     "--in-channels", "100", "--out-channels", "100"],          # too many weights
    ["--length", "40", "--kernel", "3", "--in-channels", "4", "--out-channels", "9",
     "--jacobian"],                                             # C_x too large
    ["--length", "0", "--kernel", "2"],
    ["--length", "4", "--kernel", "0"],
    ["--length", "4", "--kernel", "2", "--stride", "0"],
    ["--length", "4", "--kernel", "2", "--padding", "-1"],
    ["--length", "4", "--size", "3x3", "--kernel", "2"],
    ["--kernel", "2"],
    ["--length", "4", "--kernel", "3x3"],
    ["--size", "3", "--kernel", "2"],
    ["--size", "3xa", "--kernel", "2"],
    ["--size", "3x3x3", "--kernel", "2"],
    ["--length", "4"],
])
def test_bad_input_exits_2_with_one_message(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["matrix", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Error" in err and "Traceback" not in err


def test_python_api_raises_cnncalc_error():
    with pytest.raises(CnnCalcError, match="larger than the padded input"):
        geometry(3, kernel=4)
    with pytest.raises(CnnCalcError, match="limit"):
        conv_matrix(geometry((80, 80), kernel=1))
