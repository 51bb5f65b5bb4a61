"""``from_torch`` / ``params --torch``: a live PyTorch model against the spec path and torch.

Two independent references: the same network written in the layer language (the spec
path must agree row by row), and torch itself (``sum(p.numel())``, and MACs from
forward hooks or from the weight shapes, computed here).
"""

from __future__ import annotations

import json
import math
import textwrap

import pytest
from cli_helpers import run_any
from cli_helpers import run_ok as run
from test_zoo_torch import HOMEWORK_BLOCKS, ZOO, assert_matches, build, cnncalc_view, measure

import cnncalc

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

ROW_QUANTITIES = ("type", "input_shape", "output_shape", "params", "trainable_params",
                  "non_trainable_params", "buffers", "macs", "activations", "memory_change")


def assert_rows_agree(got, expected) -> None:
    """Every per-layer quantity, the graph (which rows feed each row) and the totals."""
    assert len(got.layers) == len(expected.layers)
    for a, b in zip(got.layers, expected.layers):
        for q in ROW_QUANTITIES:
            assert getattr(a, q) == getattr(b, q), f"row {a.index} ({a.name} / {b.name}): {q}"
        assert sorted(a.inputs) == sorted(b.inputs), f"row {a.index} ({a.name}): inputs"
    for q in ("params", "trainable_params", "non_trainable_params", "buffers", "macs",
              "activations"):
        assert got.total[q] == expected.total[q], q
    assert got.output_shape == expected.output_shape
    assert got.memory_change == expected.memory_change


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_torch_path_agrees_with_spec_path(name):
    builder, shape, published = ZOO[name]
    model = build(builder)
    got = cnncalc.from_torch(model, shape)
    assert_rows_agree(got, cnncalc.analyze(model=name))
    assert got.unsupported == ()
    assert int(got.total["params"]) == published
    assert_matches(measure(model, shape), cnncalc_view(got))


@pytest.mark.parametrize("name", list(HOMEWORK_BLOCKS))
def test_seed004_blocks_torch_path_agrees_with_spec_path(name):
    builder, shape, spec, published = HOMEWORK_BLOCKS[name]
    got = cnncalc.from_torch(build(builder), shape)
    assert_rows_agree(got, cnncalc.analyze(spec, input="x".join(map(str, shape))))
    assert int(got.total["params"]) == published


def test_symbolic_batch_then_subs_matches_torch_at_that_batch():
    builder, shape, _ = ZOO["resnet18"]
    model = build(builder)
    got = cnncalc.from_torch(model, shape, batch="N")
    assert str(got.batch) == "N" and got.total["macs"].free_symbols
    assert_matches(measure(model, shape, batch=2), cnncalc_view(got.subs({"N": 2})))


def test_the_users_model_is_left_as_it_was():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.1))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cnncalc.from_torch(model, "3x8x8")
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].device.type == "cpu"
               for k in before)


class Functional(nn.Module):
    """Layers written as calls in ``forward``: F.conv2d, ``@``, torch.add, ``+``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(8, 3, 3, 3))
        self.b = nn.Parameter(torch.zeros(8))
        self.proj = nn.Parameter(torch.zeros(8 * 6 * 6, 10))
        self.shared = nn.Linear(10, 10)

    def forward(self, x):
        y = F.conv2d(x, self.w, self.b)
        y = torch.add(y, F.relu(y))
        q = torch.flatten(y, 1) @ self.proj
        q = self.shared(q) + self.shared(q)  # one weight, used twice
        return q.unsqueeze(2) @ q.unsqueeze(1)  # an outer product of activations


def test_functional_calls_are_counted():
    batch = 2
    model = Functional()
    got = cnncalc.from_torch(model, "3x8x8", batch=batch)
    rows = {r.name: r for r in got.layers}
    # Independent figures from the weight and output shapes torch gives.
    conv = F.conv2d(torch.zeros(batch, 3, 8, 8), model.w, model.b)
    assert rows["conv2d"].output_shape == tuple(conv.shape[1:])
    assert rows["conv2d"].params == model.w.numel() + model.b.numel()
    assert rows["conv2d"].macs == model.w.numel() * batch * math.prod(conv.shape[2:])
    assert rows["add"].inputs == (rows["conv2d"].index, rows["relu"].index)
    assert rows["linear"].params == model.proj.numel()
    assert rows["linear"].macs == batch * model.proj.numel()
    assert rows["shared"].params == model.shared.weight.numel() + model.shared.bias.numel()
    assert rows["shared#2"].params == 0  # counted once, as model.parameters() does
    assert rows["shared#2"].macs == rows["shared"].macs == batch * 10 * 10
    assert rows["add#2"].type == "add"
    assert rows["matmul"].output_shape == (10, 10)
    assert rows["matmul"].macs == batch * 10 * 10 * 1
    assert got.total["params"] == sum(p.numel() for p in model.parameters())
    assert got.unsupported == ()


class WithSpare(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Upsample(scale_factor=2), nn.ReLU())
        self.mix = nn.Bilinear(12, 12, 2)  # a built-in with no rule
        self.spare = nn.Linear(3, 3)  # registered, never called

    def forward(self, x):
        y = self.body(x)
        return self.mix(y, y)


def test_unsupported_modules_are_listed_never_dropped():
    model = WithSpare()
    got = cnncalc.from_torch(model, "3x8x8")
    listed = {(u.name, u.type) for u in got.unsupported}
    assert listed == {("mix", "Bilinear"), ("spare", "Linear")}  # upsampling: no MACs
    up = next(r for r in got.layers if r.name == "body.1")
    assert up.output_shape == (4, 12, 12) and up.macs == 0
    mix = next(r for r in got.layers if r.name == "mix")
    assert mix.output_shape == (4, 12, 2) and mix.macs == 0
    assert mix.params == sum(p.numel() for p in model.mix.parameters())
    assert got.total["params"] == sum(p.numel() for p in model.parameters()) - 12


TINY_MODULE = """
    import torch
    from torch import nn

    def lenet():
        return nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
            nn.ReLU(), nn.Linear(84, 10))

    class WithUpsample(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.up = nn.Upsample(scale_factor=2)
            self.mix = nn.Bilinear(4, 4, 4)

        def forward(self, x):
            y = self.up(self.conv(x)).permute(0, 2, 3, 1)
            return self.mix(y, y).permute(0, 3, 1, 2)

    def allconv():
        return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(4, 2))

    class TokensAndImage(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 4)
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, ids, img):
            return self.emb(ids).mean(1) + self.conv(img).mean(dim=(2, 3))
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A package the way a user has one: a folder with a module, run from that folder."""
    (tmp_path / "mynets").mkdir()
    (tmp_path / "mynets" / "__init__.py").write_text("")
    (tmp_path / "mynets" / "small.py").write_text(textwrap.dedent(TINY_MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mynets.small"


def test_cli_torch_factory(user_module, capsys):
    doc = json.loads(run(["params", "--torch", f"{user_module}:lenet", "--input", "3x32x32",
                          "--format", "json"], capsys))
    import importlib
    expected = measure(build(importlib.import_module(user_module).lenet), (3, 32, 32))
    assert doc["total"]["params"] == expected["params"] == 62_006
    assert doc["total"]["macs"] == expected["macs"]
    assert [r["output_shape"] for r in doc["layers"] if r["type"] in ("conv2d", "linear")] == [
        list(s) for s in expected["layer_shapes"]]
    assert doc["unsupported"] == []


def test_cli_torch_class_and_warning_line(user_module, capsys):
    out = run(["params", "--torch", f"{user_module}:WithUpsample", "--input", "3x8x8"], capsys)
    assert "warning: mix (Bilinear) not mapped: a row with its output" in out
    assert "Upsample" not in out.split("warning")[1]
    doc = json.loads(run(["params", "--torch", f"{user_module}:WithUpsample", "--input",
                          "3x8x8", "--format", "json"], capsys))
    assert doc["unsupported"] == [{"name": "mix", "type": "Bilinear",
                                   "reason": doc["unsupported"][0]["reason"]}]
    assert next(r for r in doc["layers"] if r["name"] == "up")["output_shape"] == [4, 16, 16]


def test_cli_torch_symbolic_batch_and_subs(user_module, capsys):
    doc = json.loads(run(["params", "--torch", f"{user_module}:lenet", "--input", "3x32x32",
                          "--batch", "N", "--format", "json"], capsys))
    assert doc["total"]["macs"] == f"{651_720}*N"
    doc = json.loads(run(["params", "--torch", f"{user_module}:lenet", "--input", "3x32x32",
                          "--batch", "N", "--subs", "N=3", "--format", "json"], capsys))
    lenet = __import__(user_module, fromlist=["lenet"]).lenet
    assert doc["total"]["macs"] == measure(build(lenet), (3, 32, 32), batch=3)["macs"]


def test_torch_help_says_importing_runs_code(capsys):
    code, out, _ = run_any(["params", "--help"], capsys)
    assert code == 0 and "--torch" in out and "trust" in out


class WeightNormConv(nn.Module):
    """A weight computed from two parameters in forward: preparation, not a layer."""

    def __init__(self):
        super().__init__()
        self.v = nn.Parameter(torch.zeros(4, 3, 3, 3))
        self.g = nn.Parameter(torch.zeros(4, 1, 1, 1))

    def forward(self, x):
        w = self.g * self.v / self.v.pow(2).sum(dim=(1, 2, 3), keepdim=True).sqrt()
        return F.conv2d(x, w, padding=1)


def test_a_weight_computed_in_forward_is_one_layer():
    model = WeightNormConv()
    got = cnncalc.from_torch(model, "3x8x8")
    assert [r.type for r in got.layers] == ["conv2d"]
    assert got.layers[0].params == model.v.numel() + model.g.numel()
    assert got.layers[0].macs == model.v.numel() * 8 * 8
    assert got.unsupported == ()


def test_requires_grad_false_is_non_trainable():
    """A frozen backbone, the PyTorch way: what torch calls trainable is what we call it."""
    builder, shape, _ = ZOO["resnet18"]
    model = build(builder)
    for p in [*model.conv1.parameters(), *model.bn1.parameters(), *model.layer1.parameters()]:
        p.requires_grad_(False)
    got = cnncalc.from_torch(model, shape, batch="N")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert (got.total["trainable_params"], got.total["non_trainable_params"]) == (trainable,
                                                                                  frozen)
    again = got.subs({"N": 2})
    assert again.total["trainable_params"] == trainable and again.freeze == got.freeze


def test_cli_torch_module_instance(capsys):
    """A model built at import time is taken as it is, not called."""
    import torch_factories
    doc = json.loads(run(["params", "--torch", "torch_factories:BUILT", "--input", "8",
                          "--format", "json"], capsys))
    linear = torch_factories.BUILT[0]
    assert doc["total"]["params"] == linear.weight.numel() + linear.bias.numel()
    assert doc["total"]["macs"] == linear.weight.numel()


@pytest.mark.parametrize("command", ["params", "compare"])
def test_help_imports_neither_torch_nor_sympy(command):
    import subprocess
    import sys
    code = ("import sys; from cnncalc.cli import main\n"
            f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'sympy' not in sys.modules, 'eager import'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cli_several_inputs_and_their_dtypes(user_module, capsys):
    import importlib
    model = importlib.import_module(user_module).TokensAndImage()
    doc = json.loads(run(["params", "--torch", f"{user_module}:TokensAndImage", "--input", "7",
                          "--input", "3x8x8", "--input-dtype", "int64", "--input-dtype",
                          "float32", "--format", "json"], capsys))
    assert doc["unsupported"] == [] and doc["input_shape"] == [7]
    assert doc["total"]["params"] == sum(p.numel() for p in model.parameters())
    conv = model.conv
    assert doc["total"]["macs"] == conv.weight.numel() * 6 * 6
    code, _, err = run_any(["params", "--torch", f"{user_module}:TokensAndImage", "--input",
                            "7", "--input", "3x8x8"], capsys)  # float ids: torch refuses
    assert code == 2 and "forward failed on a 1x7, 1x3x8x8 input" in err
    code, _, err = run_any(["params", "--torch", f"{user_module}:TokensAndImage", "--input",
                            "7", "--input", "3x8x8", "--input-dtype", "int65"], capsys)
    assert code == 2 and "--input-dtype" in err and "int65" in err
    code, _, err = run_any(["params", "--layers", "conv(4,k=3)", "--input", "3x8x8",
                            "--input", "3x8x8"], capsys)
    assert code == 2 and "--input" in err


def test_cli_torch_symbolic_sizes(user_module, capsys):
    doc = json.loads(run(["params", "--torch", f"{user_module}:allconv", "--input", "3xHxW",
                          "--format", "json"], capsys))
    assert doc["symbols"] == ["H", "W"] and doc["unsupported"] == []
    import sympy as sp
    channels, height, _ = doc["layers"][0]["output_shape"]
    h = sp.Symbol("H", integer=True, positive=True)
    assert channels == 4 and all(sp.sympify(height, {"H": h}).subs(h, v) == (v - 3) // 2 + 1
                                 for v in range(3, 80))
    doc = json.loads(run(["params", "--torch", f"{user_module}:allconv", "--input", "3xHxW",
                          "--subs", "H=33,W=20", "--format", "json"], capsys))
    import importlib
    model = importlib.import_module(user_module).allconv()
    conv = model[0]
    assert doc["total"]["macs"] == conv.weight.numel() * 16 * 9 + 8


def _sym_models():
    nn, F = torch.nn, torch.nn.functional

    class Padded(nn.Module):
        def __init__(self, first):
            super().__init__()
            self.first = first

        def forward(self, x):
            return F.pad(self.first(x), (1, 1, 1, 1))

    one_formula = {
        "ceil_mode pool, every window inside": nn.Sequential(nn.MaxPool2d(3, 2, ceil_mode=True),
                                                             nn.Conv2d(1, 4, 1)),
        "stride-2 conv, pool": nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.MaxPool2d(2),
                                             nn.Conv2d(4, 4, 3, padding=1)),
        "pool 3/2/1, adaptive": nn.Sequential(nn.Conv2d(1, 4, 7, 2, 3), nn.MaxPool2d(3, 2, 1),
                                              nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                              nn.Linear(4, 2)),
    }
    by_remainder = {  # torch traces one branch of a remainder, and guards it
        "ceil_mode max pool": nn.Sequential(nn.MaxPool2d(1, 2, ceil_mode=True),
                                            nn.Conv2d(1, 4, 1, stride=2)),
        "ceil_mode avg pool": nn.AvgPool2d(3, 3, padding=1, ceil_mode=True),
        "strided conv, then F.pad": Padded(nn.Conv2d(1, 2, 1, stride=2)),
        "pool, then F.pad": Padded(nn.MaxPool2d(2)),
    }
    return one_formula, by_remainder


@pytest.mark.parametrize("name", list(_sym_models()[0]))
def test_symbolic_sizes_hold_at_odd_and_even_sizes(name):
    """Symbolic sizes, where given, equal torch's own numeric trace at sizes of every
    parity, not only at the sizes the formulas were traced and checked at."""
    model = _sym_models()[0][name]
    sym = cnncalc.from_torch(model, "1xHxW")
    for h, w in [(15, 11), (16, 16), (7, 9), (33, 64)]:
        numeric = cnncalc.from_torch(model, (1, h, w))
        at = sym.subs({"H": h, "W": w})
        assert at.output_shape == numeric.output_shape == tuple(
            model(torch.zeros(1, 1, h, w)).shape[1:])
        for q in ("params", "macs", "activations"):
            assert at.total[q] == numeric.total[q], (h, w, q)


@pytest.mark.parametrize("name", list(_sym_models()[1]))
def test_symbolic_sizes_that_depend_on_a_remainder_are_refused(name):
    """A ceil_mode pool's output size, or F.pad's, takes a branch on the traced size's
    remainder; torch's formulas then hold at the traced sizes and fail at others, so
    cnncalc refuses them and asks for numbers (it returned wrong formulas before)."""
    model = _sym_models()[1][name]
    with pytest.raises(cnncalc.CnnCalcError, match="give (numbers|that number)"):
        cnncalc.from_torch(model, "1xHxW")


def test_functional_pad_and_interpolate_get_rows():
    """F.pad and F.interpolate make new activations, as nn.ZeroPad2d and nn.Upsample do:
    each gets a row, so the total counts every tensor the forward makes (they passed as
    free views before, and a third of this network's activations went uncounted)."""
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            a = self.conv(x)
            b = F.pad(a, (1, 1, 1, 1))
            c = F.interpolate(b, scale_factor=2, mode="nearest")
            return F.relu(c), (a, b, c)

    x = torch.zeros(1, 3, 8, 8)
    y, made = Net()(x)
    got = cnncalc.from_torch(Net(), (3, 8, 8))
    assert [r.type for r in got.layers] == ["conv2d", "pad", "upsample", "relu"]
    assert [r.output_shape for r in got.layers] == [tuple(t.shape[1:]) for t in (*made, y)]
    assert got.total["activations"] == sum(t.numel() for t in (*made, y))
    spec = cnncalc.analyze("conv(4, k=3, p=1), pad(1), upsample(2), relu", input="3x8x8")
    assert got.total["activations"] == spec.total["activations"]


def test_a_module_reached_by_two_paths_is_left_as_it_was():
    """One module held by two parents (CoaT's shared position encodings): after the trace
    its parameters are the model's own again, on the CPU and needing gradients (they were
    left as the trace's meta tensors)."""

    class Block(nn.Module):
        def __init__(self, shared):
            super().__init__()
            self.shared, self.fc = shared, nn.Linear(8, 8)

        def forward(self, x):
            return self.fc(self.shared(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Linear(8, 8)
            self.blocks = nn.Sequential(Block(self.pos), Block(self.pos))

        def forward(self, x):
            return self.blocks(x)

    model = Net()
    before = {n: p for n, p in model.named_parameters()}
    got = cnncalc.from_torch(model, (8,))
    assert int(got.total["params"]) == sum(p.numel() for p in model.parameters())
    after = dict(model.named_parameters())
    assert all(after[n] is p and p.device.type == "cpu" and p.requires_grad
               for n, p in before.items())
