"""``cnncalc norm`` against torch.nn.functional (float64) and numpy, and the seeds' answers.

Every expected value is computed here, independently: torch's batch_norm /
layer_norm / instance_norm / group_norm in training mode, numpy keepdims means
over the reduction axes, torch modules' parameter and buffer counts.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from cli_helpers import run_ok as run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnncalc.cli import main
from cnncalc.derive.norm import normalize, statistic_shapes
from cnncalc.errors import CnnCalcError

SEED_Z = [[12, 14, 14, 12], [0, 10, 10, 0], [-5, 5, 5, -5]]
SEED_TEXT = "[[12,14,14,12],[0,10,10,0],[-5,5,5,-5]]"
EPSILONS = [0, Fraction(1, 100000), Fraction(1, 3), 1, Fraction(5, 2)]


def run_error(args: list[str], capsys) -> str:
    """Run expecting a user error: exit 2, the message on the first line, no traceback."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err and "Internal error" not in err
    return err.strip().splitlines()[-1 if err.startswith("Usage") else 0]


def floats(value) -> np.ndarray:
    """A sympy Matrix / Array of exact values as a float64 array."""
    return np.vectorize(float, otypes=[float])(np.array(value.tolist(), dtype=object))


# --- an independent reference: torch in float64, training mode ---------------------------------

def torch_reference(kind: str, x: np.ndarray, gamma, beta, eps, groups=None) -> np.ndarray:
    """The normalized N×C×… tensor as torch.nn.functional computes it; numpy where torch
    refuses: ε = 0 (batch_norm in training mode) or slices of a single value."""
    mean, _ = reference_stats(kind, x, groups)
    if eps == 0 or x.size == mean.size:
        return numpy_reference(kind, x, gamma, beta, eps, groups)
    t = torch.tensor(x, dtype=torch.float64)
    w = torch.tensor([float(g) for g in gamma], dtype=torch.float64)
    b = torch.tensor([float(v) for v in beta], dtype=torch.float64)
    eps = float(eps)
    if kind == "batch":
        out = F.batch_norm(t, None, None, w, b, training=True, eps=eps)
    elif kind == "layer":
        spread = (-1,) + (1,) * (t.ndim - 2)
        shape = t.shape[1:]
        out = F.layer_norm(t, shape, w.view(spread).expand(shape), b.view(spread).expand(shape),
                           eps=eps)
    elif kind == "instance":
        out = F.instance_norm(t, weight=w, bias=b, use_input_stats=True, eps=eps)
    else:
        out = F.group_norm(t, groups, w, b, eps=eps)
    return out.numpy()


def numpy_reference(kind: str, x: np.ndarray, gamma, beta, eps, groups=None) -> np.ndarray:
    """The formulas of the module docstring, in numpy float64."""
    x = x.astype(float)
    n, c, *spatial = x.shape
    mean, var = reference_stats(kind, x, groups)
    g = mean.shape[1]
    view = x.reshape(n, g, c // g, *spatial)
    zhat = ((view - mean[:, :, None]) / np.sqrt(var[:, :, None] + float(eps))).reshape(x.shape)
    spread = (1, c) + (1,) * len(spatial)
    return (np.array([float(v) for v in gamma]).reshape(spread) * zhat
            + np.array([float(v) for v in beta]).reshape(spread))


def reference_stats(kind: str, x: np.ndarray, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """numpy keepdims mean and biased variance, channel axis holding groups for group norm."""
    n, c, *spatial = x.shape
    g = {"batch": c, "layer": 1, "instance": c, "group": groups}[kind]
    view = x.reshape(n, g, c // g, *spatial)
    axes = ((0,) if kind == "batch" else ()) + tuple(range(2, view.ndim))
    mean = view.mean(axis=axes, keepdims=True)
    var = view.var(axis=axes, keepdims=True)
    return mean.squeeze(2), var.squeeze(2)


# --- random tensors ---------------------------------------------------------------------------

LAYOUTS = {2: ["CN", "NC"], 3: ["NCL", "LNC"], 4: ["NCHW", "NHWC", "HWCN"]}


@st.composite
def problems(draw, kind: str):
    rank = draw(st.sampled_from([2, 3, 4] if kind != "instance" else [3, 4]))
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 4))
    spatial = [draw(st.integers(1, 3 if rank == 3 else 2)) for _ in range(rank - 2)]
    if kind == "batch" and n * int(np.prod(spatial)) < 2:
        n = 2  # torch refuses a batch norm over a single value per channel
    if kind == "instance" and int(np.prod(spatial)) < 2:
        spatial[0] = 2  # and an instance norm over a single spatial value
    shape = (n, c, *spatial)
    x = np.array(draw(st.lists(st.integers(-9, 9), min_size=int(np.prod(shape)),
                               max_size=int(np.prod(shape))))).reshape(shape)
    layout = draw(st.sampled_from(LAYOUTS[rank]))
    groups = draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
    gamma = draw(st.lists(st.integers(-3, 3), min_size=c, max_size=c))
    beta = draw(st.lists(st.fractions(-5, 5, max_denominator=4), min_size=c, max_size=c))
    eps = draw(st.sampled_from(EPSILONS))
    return x, layout, groups, gamma, beta, eps


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """The canonical N×C×S₁×… array written in ``layout``."""
    canonical = "NC" + "".join(a for a in layout if a not in "NC")
    return np.transpose(x, [canonical.index(a) for a in layout])


def from_layout(y: np.ndarray, layout: str) -> np.ndarray:
    canonical = "NC" + "".join(a for a in layout if a not in "NC")
    return np.transpose(y, [layout.index(a) for a in canonical])


def check_against_torch(kind: str, problem) -> None:
    x, layout, groups, gamma, beta, eps = problem
    user = to_layout(x, layout)
    mean, var = reference_stats(kind, x.astype(float), groups)
    if eps == 0 and (var == 0).any():
        with pytest.raises(CnnCalcError, match="zero variance"):
            normalize(user.tolist(), kind, layout=layout, groups=groups, gamma=gamma,
                      beta=beta, eps=eps)
        return
    d = normalize(user.tolist(), kind, layout=layout, groups=groups, gamma=gamma, beta=beta,
                  eps=eps)
    expected = torch_reference(kind, x, gamma, beta, eps, groups)
    ztilde = floats(d.result("z̃")).reshape(user.shape)
    np.testing.assert_allclose(from_layout(ztilde, layout), expected, rtol=1e-12, atol=1e-12)
    zhat = torch_reference(kind, x, [1] * len(gamma), [0] * len(beta), eps, groups)
    np.testing.assert_allclose(from_layout(floats(d.result("ẑ")).reshape(user.shape), layout),
                               zhat, rtol=1e-12, atol=1e-12)
    for label, ref in (("μ", mean), ("σ²", var)):
        np.testing.assert_allclose(floats(d.result(label)).ravel(),
                                   to_layout(ref, layout).ravel(), rtol=1e-12, atol=1e-12)
    assert all(c.holds for c in d.checks) and len(d.checks) >= 2
    assert not any(e.has(sp.Float) for e in d.result("z̃"))  # exact, never floats


FAST = settings(max_examples=15, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(problems("batch"))
def test_batch_norm_matches_torch(problem):
    check_against_torch("batch", problem)


@FAST
@given(problems("layer"))
def test_layer_norm_matches_torch(problem):
    check_against_torch("layer", problem)


@FAST
@given(problems("instance"))
def test_instance_norm_matches_torch(problem):
    check_against_torch("instance", problem)


@FAST
@given(problems("group"))
def test_group_norm_matches_torch(problem):
    check_against_torch("group", problem)


@pytest.mark.parametrize("momentum", ["0.1", "0.25", "1"])
def test_running_statistics_match_torch(momentum):
    rng = np.random.default_rng(7)
    x = rng.integers(-9, 10, size=(3, 2, 2, 2))
    d = normalize(x.tolist(), "batch", momentum=momentum)
    running_mean, running_var = torch.zeros(2, dtype=torch.float64), torch.ones(2,
                                                                                dtype=torch.float64)
    F.batch_norm(torch.tensor(x, dtype=torch.float64), running_mean, running_var,
                 training=True, momentum=float(momentum))
    np.testing.assert_allclose(floats(d.result("running_mean")).ravel(), running_mean.numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(floats(d.result("running_var")).ravel(), running_var.numpy(),
                               rtol=1e-12)


def test_layer_norm_takes_one_gamma_per_element_as_nn_layernorm():
    rng = np.random.default_rng(3)
    x = rng.integers(-5, 6, size=(2, 2, 2, 3))
    gamma = rng.integers(1, 4, size=(2, 2, 3))
    beta = rng.integers(-2, 3, size=(2, 2, 3))
    d = normalize(x.tolist(), "layer", gamma=gamma.tolist(), beta=beta.tolist(), eps="1e-5")
    t = torch.tensor(x, dtype=torch.float64)
    expected = F.layer_norm(t, t.shape[1:], torch.tensor(gamma, dtype=torch.float64),
                            torch.tensor(beta, dtype=torch.float64), eps=1e-5).numpy()
    np.testing.assert_allclose(floats(d.result("z̃")), expected, rtol=1e-12, atol=1e-12)


def test_default_eps_and_affine_follow_pytorch():
    d = normalize(SEED_TEXT, "batch")
    given_values = {i.label: i.value for i in d.inputs}
    assert given_values["ε"] == sp.Rational(1, 100000)
    assert given_values["γ"] == (1, 1, 1) and given_values["β"] == (0, 0, 0)
    expected = torch_reference("batch", np.array(SEED_Z).T, [1] * 3, [0] * 3, 1e-5).T
    np.testing.assert_allclose(floats(d.result("ẑ")), expected, rtol=1e-12)


def test_symbolic_entries_stay_symbolic():
    d = normalize("[[1,2],[w,3]]", "batch", eps=0)
    w = sp.Symbol("w", real=True)
    assert sp.simplify(d.result("μ")[1] - (w + 3) / 2) == 0
    assert sp.simplify(d.result("σ²")[1] - (w - 3) ** 2 / 4) == 0
    assert all(c.holds for c in d.checks)


# --- layouts and --axes -------------------------------------------------------------------------

def test_layout_nc_reads_batch_by_features():
    cn = normalize(SEED_TEXT, "batch", eps=0)
    nc = normalize(np.array(SEED_Z).T.tolist(), "batch", layout="NC", eps=0)
    assert nc.result("ẑ") == cn.result("ẑ").T and nc.result("μ") == cn.result("μ").T


@pytest.mark.parametrize("axes", ["1", "N"])
def test_axes_over_the_batch_is_batch_norm(axes):
    by_kind = normalize(SEED_TEXT, "batch", eps=0)
    assert normalize(SEED_TEXT, axes=axes, eps=0).result("ẑ") == by_kind.result("ẑ")
    assert normalize(SEED_TEXT, "batch", axes=axes, eps=0).result("ẑ") == by_kind.result("ẑ")


def test_axes_over_spatial_is_instance_norm():
    x = np.arange(16).reshape(2, 2, 2, 2) ** 2 % 7
    by_axes = normalize(x.tolist(), axes="H,W", eps=0).result("ẑ")
    assert by_axes == normalize(x.tolist(), "instance", eps=0).result("ẑ")
    np.testing.assert_allclose(floats(by_axes),
                               torch_reference("instance", x, [1, 1], [0, 0], 0), rtol=1e-12)


# --- the seeds ----------------------------------------------------------------------------------

def seed_reference() -> tuple[np.ndarray, np.ndarray]:
    """Seed 002 Q2: the formulas of the question, applied per row (feature) in numpy."""
    z = np.array(SEED_Z, dtype=float)
    mean = z.mean(axis=1, keepdims=True)
    zhat = (z - mean) / np.sqrt(((z - mean) ** 2).mean(axis=1, keepdims=True))
    ztilde = np.array([[1], [1], [1]]) * zhat + np.array([[0], [-10], [10]])
    return zhat, ztilde


def test_seed002_q2a_zhat():
    zhat, _ = seed_reference()
    assert np.allclose(zhat, np.rint(zhat))  # whole numbers, so exact comparison is fair
    d = normalize(SEED_TEXT, "batch", eps=0)
    assert d.result("ẑ") == sp.Matrix(np.rint(zhat).astype(int).tolist())


def test_seed002_q2b_ztilde_on_the_command_line(capsys):
    _, ztilde = seed_reference()
    out = run(["norm", "--kind", "batch", SEED_TEXT, "--gamma", "1,1,1", "--beta", "0,-10,10",
               "--eps", "0", "--format", "json", "--show-work"], capsys)
    doc = json.loads(out)
    values = {r["label"]: r["value"] for r in doc["results"]}
    assert values["z̃"] == np.rint(ztilde).astype(int).tolist()
    assert values["μ"] == [[13], [5], [0]] and values["σ²"] == [[1], [25], [25]]
    assert all(c["holds"] for c in doc["checks"])
    steps = {s["label"]: s["value"] for s in doc["steps"]}
    assert steps["μ_1"].startswith("(12 + 14 + 14 + 12)/4")


def test_seed002_q2cd_test_batch_size_does_not_matter():
    """In eval mode torch's batch norm output for an example is the same alone or batched;
    cnncalc says inference uses the running statistics for exactly that reason."""
    bn = torch.nn.BatchNorm1d(3).double()
    bn.train()
    bn(torch.tensor(np.array(SEED_Z).T, dtype=torch.float64))
    bn.eval()
    batch = torch.tensor([[1.0, 2, 3], [4, -5, 6], [0, 0, 9]], dtype=torch.float64)
    assert torch.allclose(bn(batch)[:1], bn(batch[:1]))
    inference = statistic_shapes("NxC", "batch").result("batch: inference")
    assert "running_mean" in inference and "batch size does not" in inference
    for kind in ("layer", "instance", "group"):
        text = statistic_shapes("NxCxHxW", kind, groups=2).result(f"{kind}: inference")
        assert "same computation as in training" in text


def numpy_stats_shape(kind: str, shape: tuple[int, ...], groups: int) -> tuple[int, ...]:
    """The keepdims shape of a numpy mean over the kind's reduction axes (N×C×… order)."""
    mean, _ = reference_stats(kind, np.zeros(shape), groups)
    return mean.shape


def test_seed004_q4_shapes():
    C = sp.Symbol("C", integer=True, positive=True)
    # (a) a linear layer's output N×C: 1×C; (b) a conv output: 1×C×1×1 in N×C×H×W, and the
    # seed's 1×1×1×C in its N×H×W×C layout.
    assert statistic_shapes("NxC", "batch").result("batch: μ, σ²") == (1, C)
    assert statistic_shapes("NxCxHxW", "batch").result("batch: μ, σ²") == (1, C, 1, 1)
    assert statistic_shapes("NxHxWxC", "batch").result("batch: μ, σ²") == (1, 1, 1, C)
    assert statistic_shapes("8x5x5x3", "batch", layout="NHWC").result(
        "batch: μ, σ²") == (1, 1, 1, 3)
    assert numpy_stats_shape("batch", (8, 3), 1) == (1, 3)
    assert numpy_stats_shape("batch", (8, 3, 5, 5), 1) == (1, 3, 1, 1)


TORCH_MODULES = {
    "batch": lambda shape, g: {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d,
                               4: torch.nn.BatchNorm2d}[len(shape)](shape[1]),
    "layer": lambda shape, g: torch.nn.LayerNorm(shape[1:]),
    "instance": lambda shape, g: {3: torch.nn.InstanceNorm1d,
                                  4: torch.nn.InstanceNorm2d}[len(shape)](shape[1]),
    "group": lambda shape, g: torch.nn.GroupNorm(g, shape[1]),
}


@pytest.mark.parametrize("shape,groups", [((4, 6), 3), ((2, 4, 7), 2), ((8, 6, 5, 3), 3),
                                          ((1, 3, 2, 2), 1)])
def test_shape_matches_numpy_and_torch(shape, groups, capsys):
    text = "x".join(map(str, shape))
    d = statistic_shapes(text, groups=groups)
    for kind, module in TORCH_MODULES.items():
        if kind == "instance" and len(shape) == 2:
            continue
        expected = numpy_stats_shape(kind, shape, groups)
        assert d.result(f"{kind}: μ, σ²") == expected, kind
        assert d.result(f"{kind}: m") == int(np.prod(shape)) // int(np.prod(expected))
        m = module(shape, groups)
        params = sum(p.numel() for p in m.parameters())
        assert d.result(f"{kind}: γ, β") * 2 == params, kind
        buffers = sum(b.numel() for name, b in m.named_buffers() if name.startswith("running"))
        assert d.result(f"{kind}: buffers") == buffers, kind
    assert "running_var" in run(["norm", "--shape", text, "--groups", str(groups)], capsys)


def test_group_norm_shape_example(capsys):
    out = run(["norm", "--kind", "group", "--groups", "2", "--shape", "NxCxHxW"], capsys)
    N = sp.Symbol("N", integer=True, positive=True)
    d = statistic_shapes("NxCxHxW", "group", groups=2)
    assert d.result("group: μ, σ²") == (N, 2, 1, 1)
    assert "group: μ, σ² = (N, 2, 1, 1)" in out and "batch:" not in out


def test_instance_norm_on_a_matrix_is_degenerate():
    d = statistic_shapes("NxC")
    assert d.result("instance: m") == 1
    with pytest.raises(CnnCalcError, match="instance norm needs spatial axes"):
        normalize(SEED_TEXT, "instance")


# --- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "latex"])
def test_every_format(fmt, capsys):
    out = run(["norm", "--kind", "layer", SEED_TEXT, "--eps", "1/2", "--format", fmt,
               "--show-work"], capsys)
    if fmt == "json":
        out = json.loads(out)["results"][0]["label"]
    assert "μ" in out or r"\mu" in out


@pytest.mark.parametrize("args,message", [
    (["--kind", "batch", "[[1,2],[3,q?]]"], "column"),
    (["--kind", "batch", "[[1,2],[3]]"], "ragged"),
    (["--kind", "batch", SEED_TEXT, "--gamma", "1,2"],
     "--gamma has 2 values but there are 3 features"),
    (["--kind", "batch", SEED_TEXT, "--beta", "1,2,3,4"],
     "--beta has 4 values but there are 3 features"),
    (["--kind", "group", "--groups", "2", SEED_TEXT], "--groups 2 does not divide the 3"),
    (["--kind", "group", "--groups", "4", "--shape", "2x6x3x3"], "does not divide"),
    (["--kind", "group", SEED_TEXT], "needs --groups"),
    (["--kind", "batch", "[[1,1,1],[2,3,4]]", "--eps", "0"], "Feature 1 has zero variance"),
    (["--kind", "layer", "[[1,2],[1,3]]", "--eps", "0"], "Example 1 has zero variance"),
    (["--kind", "batch", SEED_TEXT, "--eps", "-1"], "must not be negative"),
    (["--kind", "instance", SEED_TEXT], "instance norm needs spatial axes"),
    (["--kind", "batch", SEED_TEXT, "--layout", "NCH"], "names 3 axes"),
    (["--kind", "batch", SEED_TEXT, "--axes", "0"], "give one of --kind and --axes"),
    (["--kind", "batch", "1,2,3"], "needs --layout"),
    (["--kind", "batch", SEED_TEXT, "--shape", "NxC"], "exactly one"),
    (["--shape", "NxC", "--eps", "0"], "applies to DATA"),
    (["--shape", "NxHxW"], "needs a batch axis N and a channel axis C"),
    (["--kind", "batch"], "exactly one"),
])
def test_user_errors_exit_2_with_one_line(args, message, capsys):
    assert message in run_error(["norm", *args], capsys)


def test_zero_variance_says_why_eps_exists(capsys):
    line = run_error(["norm", "--kind", "batch", "[[1,1],[2,3]]", "--eps", "0"], capsys)
    assert "zero variance" in line and "ε" in line and "prevents" in line
    # ...and a positive ε makes the same slice normalize to 0.
    d = normalize("[[1,1],[2,3]]", "batch", eps="1e-5")
    assert list(d.result("ẑ").row(0)) == [0, 0]


def test_single_example_column_after_the_parser_fix():
    """A 3×1 matrix: three features of one example (needs the single-bracket parser fix)."""
    d = normalize("[[1],[2],[6]]", "layer", eps=0)
    x = np.array([[1.0, 2.0, 6.0]])
    expected = torch_reference("layer", x, [1] * 3, [0] * 3, 0).T
    np.testing.assert_allclose(floats(d.result("ẑ")), expected, rtol=1e-12)


def test_symbolic_eps_stays_under_the_root():
    e = sp.Symbol("e", real=True)
    d = normalize(SEED_TEXT, "batch", eps="e")
    # feature 1: μ = 13, σ² = 1, so ẑ_11 = (12 - 13)/√(1 + e)
    assert sp.simplify(d.result("ẑ")[0, 0] + 1 / sp.sqrt(1 + e)) == 0


def test_shape_json_holds_the_symbolic_shapes(capsys):
    doc = json.loads(run(["norm", "--shape", "NxCxHxW", "--format", "json"], capsys))
    values = {r["label"]: r["value"] for r in doc["results"]}
    # numpy keepdims shapes of an N×C×H×W mean, written with the names
    assert values["batch: μ, σ²"] == [1, "C", 1, 1]
    assert values["layer: μ, σ²"] == ["N", 1, 1, 1]
    assert values["instance: μ, σ²"] == ["N", "C", 1, 1]
    assert values["group: μ, σ²"] == ["N", "G", 1, 1]
    assert values["batch: buffers"] == "2*C" and values["layer: buffers"] == 0


@pytest.mark.parametrize("argv", [["--shape", "2x3x4x4"], ["--shape", "8x3x4x4"],
                                  ["--shape", "NxCxHxW"], ["--kind", "batch", "[[1,2],[3,5]]"],
                                  ["--kind", "group", "--groups", "2", "--shape", "8x4x2x2"]])
def test_explanations_read_as_english(argv, capsys):
    """No article before a number ("an 2×3"), no symbol defined as itself ("G = G"),
    no parenthesis doubled around a note."""
    import re

    out = run(["norm", *argv], capsys)
    assert not re.search(r"\ban? \d", out), out
    assert not re.search(r"^(\S+) = \1$", out, re.M), out
    assert "((" not in out.replace("((z", "").replace("((1 − ", ""), out
    assert "(each (" not in out


def test_symbolic_groups_are_named_in_a_note(capsys):
    out = run(["norm", "--kind", "group", "--shape", "NxCxHxW"], capsys)
    assert "G is the number of channel groups" in out and "G = 4" not in out
    out = run(["norm", "--kind", "group", "--groups", "4", "--shape", "NxCxHxW"], capsys)
    assert "G = 4" in out and "G is the number" not in out
