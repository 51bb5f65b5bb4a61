"""Branches, merges, saved tensors and the layers modern families need, against PyTorch.

Each spec of the layer language is written again by hand as a ``torch.nn`` module with
the same data flow. PyTorch itself reports what cnncalc must reproduce: the output shape
and ``sum(numel)`` of the parameters on the meta device, the conv/linear multiply-adds
with ``FlopCounterMode`` (which counts 2 FLOPs a multiply-add), the bytes autograd saves
(``saved_tensors_hooks``, one count per storage) and the backward multiply-adds of
``loss.backward()``. Receptive fields are checked against the support of an input
gradient, as in ``test_training.py``.
"""

from __future__ import annotations

import re

import pytest
import sympy as sp

import cnncalc
from cnncalc.errors import SpecError

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
from test_training import check_fields, dependency_model, saved_by_torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

# -- hand-written references ------------------------------------------------------------

class Inception(nn.Module):
    """Four branches from one input, concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; pool -> 1x1."""

    def __init__(self, c=6):
        super().__init__()
        self.b1 = nn.Conv2d(c, 4, 1)
        self.b2 = nn.Sequential(nn.Conv2d(c, 3, 1), nn.ReLU(), nn.Conv2d(3, 5, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(c, 2, 1), nn.ReLU(), nn.Conv2d(2, 3, 5, padding=2))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(c, 2, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


INCEPTION = ("concat(conv(4, k=1), [conv(3, k=1), relu, conv(5, k=3, p=1)], "
             "conv(2, k=1) -> relu -> conv(3, k=5, p=2), maxpool(3, s=1, p=1) -> conv(2, k=1))")


class DenseLayer(nn.Module):
    """DenseNet's layer: bn, relu, 1x1, bn, relu, 3x3; its output joins its input."""

    def __init__(self, c, growth=4):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, 8, 1, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


DENSE = ("concat(identity, [bn, relu, conv(8, k=1, bias=false), bn, relu, "
         "conv(4, k=3, p=1, bias=false)])")


class UNet(nn.Module):
    """Two levels of U-Net: the encoder's features join the upsampled decoder's."""

    def __init__(self, c=6):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(8, 4, 2, 2)
        self.dec = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        e1 = self.enc(x)
        return self.dec(torch.cat([e1, self.up(self.down(e1))], 1))


UNET = ("conv(4, k=3, p=1), relu, save(e1), maxpool(2), conv(8, k=3, p=1), relu, "
        "deconv(4, k=2, s=2), concat(e1, identity), conv(4, k=3, p=1)")


class FPN(nn.Module):
    """Upsample and add: the coarse map, upsampled, plus a 1x1 lateral of the fine one."""

    def __init__(self, c=6):
        super().__init__()
        self.fine = nn.Conv2d(c, 8, 3, padding=1)
        self.coarse = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.lateral = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        c = self.fine(x)
        top = F.interpolate(self.coarse(c), scale_factor=2, mode="nearest")
        return top + self.lateral(c)


FPN_SPEC = ("conv(8, k=3, p=1), save(c), conv(8, k=3, s=2, p=1), upsample(2), "
            "add(identity, c -> conv(8, k=1))")


class SE(nn.Module):
    """torchvision's SqueezeExcitation after a conv."""

    def __init__(self, c=6, squeeze=3, act=nn.ReLU, gate=nn.Sigmoid):
        super().__init__()
        self.conv = nn.Conv2d(c, 8, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(8, squeeze, 1), nn.Conv2d(squeeze, 8, 1)
        self.act, self.gate = act(), gate()

    def forward(self, x):
        x = self.conv(x)
        scale = self.gate(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return scale * x


class Shuffle(nn.Module):
    """ShuffleNetV2's stride-1 unit: half the channels pass, half go through the branch."""

    def __init__(self, c=8):
        super().__init__()
        h = c // 2
        self.branch = nn.Sequential(
            nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h),
            nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU())

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch(x2)), dim=1)
        n, c, h, w = out.shape
        out = out.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous()
        return out.view(n, c, h, w)


SHUFFLE = ("concat(split(2, 0), [split(2, 1), conv(4, k=1, bias=false), bn, relu, "
           "dwconv(bias=false), bn, conv(4, k=1, bias=false), bn, relu]), shuffle(2)")


class LayerNorm2d(nn.LayerNorm):
    """torchvision's: layer norm over the channels at each position."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block with 1x1 convs for its channels-last linears (same counts)."""

    def __init__(self, c=8, p=0.25):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(c, c, 7, padding=3, groups=c), LayerNorm2d(c),
                                   nn.Conv2d(c, 4 * c, 1), nn.GELU(), nn.Conv2d(4 * c, c, 1))
        self.gamma = nn.Parameter(torch.full((c, 1, 1), 1e-6))
        self.p = p

    def forward(self, x):
        y = self.gamma * self.block(x)
        # torchvision's StochasticDepth, "row" mode, in training
        noise = torch.empty([y.shape[0], 1, 1, 1], dtype=y.dtype, device=y.device)
        noise = noise.bernoulli_(1 - self.p).div_(1 - self.p)
        return x + y * noise


CONVNEXT = ("residual(dwconv(k=7, p=3), ln2d, conv(32, k=1), gelu, conv(8, k=1), layerscale, "
            "droppath(0.25), shortcut=identity)")


def _stem(c_out):
    """A trainable 1x1 conv first, so every later tensor needs a gradient."""
    return nn.Conv2d(3, c_out, 1)


CASES = {
    # name: (spec after a 1x1 stem to C channels, C, torch module after the stem, H)
    "inception": (INCEPTION, 6, Inception, 9),
    "dense": (f"{DENSE}, {DENSE}", 6,
              lambda: nn.Sequential(DenseLayer(6), DenseLayer(10)), 8),
    "unet": (UNET, 6, UNet, 8),
    "fpn": (FPN_SPEC, 6, FPN, 8),
    "se": ("conv(8, k=3, p=1), se(3)", 6, SE, 7),
    "se_silu_hard": ("conv(8, k=3, p=1), se(r=4, act=silu, gate=hardsigmoid)", 6,
                     lambda: SE(squeeze=2, act=nn.SiLU, gate=nn.Hardsigmoid), 7),
    "shuffle": (SHUFFLE, 8, Shuffle, 6),
    "convnext": (CONVNEXT, 8, ConvNeXtBlock, 9),
    "upsample_bilinear": ("upsample(2, mode=bilinear), conv(4, k=3)", 6,
                          lambda: nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"),
                                                nn.Conv2d(6, 4, 3)), 5),
    "upsample_size": ("upsample(size=(7, 9)), conv(4, k=1)", 6,
                      lambda: nn.Sequential(nn.Upsample(size=(7, 9)), nn.Conv2d(6, 4, 1)), 5),
    "pad": ("pad(1), conv(4, k=3), pad((1, 2, 0, 3)), conv(2, k=3)", 6,
            lambda: nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(6, 4, 3),
                                  nn.ZeroPad2d((1, 2, 0, 3)), nn.Conv2d(4, 2, 3)), 6),
    "hard": ("hardswish, conv(4, k=1), hardsigmoid", 6,
             lambda: nn.Sequential(nn.Hardswish(), nn.Conv2d(6, 4, 1), nn.Hardsigmoid()), 5),
}
NO_BACKWARD_CHECK = {"shuffle", "convnext"}  # depthwise: torch's counter counts it ungrouped


def model_for(name, device="cpu"):
    spec, c, module, h = CASES[name]
    with torch.device(device):
        torch.manual_seed(0)
        model = nn.Sequential(_stem(c), module())
    return model.train(), f"conv({c}, k=1), {spec}", (3, h, h)


@pytest.mark.parametrize("name", list(CASES))
def test_counts_match_torch(name):
    model, spec, shape = model_for(name, "meta")
    a = cnncalc.analyze(spec, input="x".join(map(str, shape)), batch=2)
    x = torch.zeros((2, *shape), device="meta")
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    assert a.output_shape == tuple(out.shape[1:])
    assert a.total["params"] == sum(p.numel() for p in model.parameters())
    assert 2 * a.total["macs"] == counter.get_total_flops()
    if name not in NO_BACKWARD_CHECK:
        loss = out.sum()
        with FlopCounterMode(display=False) as counter:
            loss.backward()
        assert 2 * a.total["backward_macs"] == counter.get_total_flops()


@pytest.mark.parametrize("name", list(CASES))
def test_saved_bytes_match_autograd(name):
    model, spec, shape = model_for(name)
    a = cnncalc.analyze(spec, input="x".join(map(str, shape)), batch=3)
    saved, _ = saved_by_torch(model, torch.randn(3, *shape))
    assert int(a.total["saved_bytes"]) == saved


class _Call(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


def _chunk(parts, index):
    return _Call(lambda x: x.chunk(parts, 1)[index])


def _shuffle(groups):
    """torchvision's channel_shuffle (reshape where the input's strides forbid a view)."""
    def f(x):
        n, c, h, w = x.shape
        x = x.reshape(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
        return x.view(n, c, h, w)
    return _Call(f)


# spec after a 1x1 stem to 8 channels on 4x5 planes, and its torch layers after the stem
STRIDES = {
    # a channel slice is contiguous but for its batch stride: flatten views it, linear on
    # its last dimension copies it (reshape), and the copy is what autograd keeps
    "split_fc": ("relu, split(2, 0), fc(6)", lambda: [nn.ReLU(), _chunk(2, 0), nn.Linear(5, 6)]),
    "split_flatten_fc": ("relu, split(2, 1), flatten, fc(6)",
                         lambda: [nn.ReLU(), _chunk(2, 1), nn.Flatten(), nn.Linear(80, 6)]),
    "split_split_fc": ("relu, split(2, 0), split(2, 1), fc(6)",
                       lambda: [nn.ReLU(), _chunk(2, 0), _chunk(2, 1), nn.Linear(5, 6)]),
    # LayerNorm2d leaves channels-last strides, which convs, pools and activations carry on
    "ln2d_relu_fc": ("ln2d, relu, fc(6)", lambda: [LayerNorm2d(8), nn.ReLU(), nn.Linear(5, 6)]),
    "ln2d_flatten": ("ln2d, sigmoid, flatten, fc(6)",
                     lambda: [LayerNorm2d(8), nn.Sigmoid(), nn.Flatten(), nn.Linear(160, 6)]),
    "ln2d_conv_pool": ("ln2d, conv(4, k=1), relu, maxpool(2), relu, flatten, fc(6)",
                       lambda: [LayerNorm2d(8), nn.Conv2d(8, 4, 1), nn.ReLU(), nn.MaxPool2d(2),
                                nn.ReLU(), nn.Flatten(), nn.Linear(16, 6)]),
    "ln2d_softmax": ("ln2d, softmax, flatten, fc(6)",  # softmax writes a contiguous output
                     lambda: [LayerNorm2d(8), nn.Softmax(1), nn.Flatten(), nn.Linear(160, 6)]),
    "ln2d_gap": ("ln2d, relu, gap, relu, flatten, fc(6)",
                 lambda: [LayerNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8, 6)]),
    "ln2d_slice": ("ln2d, relu, split(2, 1), flatten, fc(6)",
                   lambda: [LayerNorm2d(8), nn.ReLU(), _chunk(2, 1), nn.Flatten(),
                            nn.Linear(80, 6)]),
    "ln2d_in": ("ln2d, in, relu, fc(6)",
                lambda: [LayerNorm2d(8), nn.InstanceNorm2d(8), nn.ReLU(), nn.Linear(5, 6)]),
    "ln2d_se": ("ln2d, se(2), relu, fc(6)",
                lambda: [LayerNorm2d(8), _Gate(8, 2), nn.ReLU(), nn.Linear(5, 6)]),
    # a residual's add follows its body's strides (torchvision's out += identity)
    "ln2d_residual": ("residual(ln2d, relu, shortcut=identity), relu, fc(6)",
                      lambda: [_Residual(LayerNorm2d(8), nn.ReLU()), nn.ReLU(), nn.Linear(5, 6)]),
    # a shuffle with one group, or one channel a group, leaves the order as it is
    "shuffle_1": ("relu, shuffle(1), fc(6)", lambda: [nn.ReLU(), _shuffle(1), nn.Linear(5, 6)]),
    "shuffle_c": ("relu, shuffle(8), fc(6)", lambda: [nn.ReLU(), _shuffle(8), nn.Linear(5, 6)]),
    "shuffle_2": ("relu, shuffle(2), fc(6)", lambda: [nn.ReLU(), _shuffle(2), nn.Linear(5, 6)]),
    "shuffle_1_of_slice": ("relu, split(2, 0), shuffle(1), fc(6)",
                           lambda: [nn.ReLU(), _chunk(2, 0), _shuffle(1), nn.Linear(5, 6)]),
}


class _Gate(nn.Module):
    """Squeeze-and-excitation in torchvision's order: ``scale * input``."""

    def __init__(self, c, squeeze):
        super().__init__()
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, squeeze, 1), nn.ReLU(),
                                   nn.Conv2d(squeeze, c, 1), nn.Sigmoid())

    def forward(self, x):
        return self.scale(x) * x


class _Residual(nn.Module):
    def __init__(self, *body):
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return self.body(x) + x


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", list(STRIDES))
def test_saved_bytes_follow_torch_strides(name, batch):
    """Whether flatten, linear and shuffle view their input or copy it, and so which tensor
    autograd keeps, depends on the input's strides; each case is checked at batch 1 (where
    a channel slice is contiguous) and 3."""
    spec, layers = STRIDES[name]
    torch.manual_seed(0)
    model = nn.Sequential(_stem(8), *layers()).train()
    saved, _ = saved_by_torch(model, torch.randn(batch, 3, 4, 5))
    a = cnncalc.analyze(f"conv(8, k=1), {spec}", input="3x4x5", batch=batch)
    assert int(a.total["saved_bytes"]) == saved


@pytest.mark.parametrize(("spec", "batch", "note"), [
    ("conv(8, k=1), relu, split(2, 0), fc(6)", "N", "fc1: .* made when N > 1"),
    ("conv(8, k=1), ln2d, relu, flatten, fc(6)", 2, "flatten1: .* made when H\\*W > 1"),
])
def test_symbolic_strides_state_their_assumption(spec, batch, note):
    """A copy that torch makes only above size 1 is counted with the symbols taken above 1,
    and a note says so; substituted, the formula equals the numeric analysis."""
    a = cnncalc.analyze(spec, input="3xHxW", batch=batch)
    assert len(a.notes) == 1
    assert re.match(note, a.notes[0])
    values = {"H": 4, "W": 5, "N": 3}
    num = cnncalc.analyze(spec, input="3x4x5", batch=values["N"] if batch == "N" else batch)
    sub = {cnncalc.layers.symbol(k): v for k, v in values.items()}
    assert sp.expand(a.total["saved_bytes"].xreplace(sub)) == num.total["saved_bytes"]
    assert cnncalc.analyze(spec, input="3x4x5", batch=2).notes == ()


def test_frozen_gate_keeps_only_what_autograd_keeps():
    """With the squeeze-and-excitation convs frozen, x * gate keeps the gate (x's gradient
    needs it) but not x (nothing needs the gate's gradient)."""
    model, spec, shape = model_for("se")
    a = cnncalc.analyze(spec, input="x".join(map(str, shape)), batch=2, freeze="se1")
    se = model[1]
    for p in (*se.fc1.parameters(), *se.fc2.parameters()):
        p.requires_grad_(False)
    saved, _ = saved_by_torch(model, torch.randn(2, *shape))
    assert int(a.total["saved_bytes"]) == saved


def test_symbolic_branches_agree_with_numeric():
    """Every quantity, with H and W symbols, equals the numeric analysis once substituted."""
    for name in CASES:
        _, spec, shape = model_for(name, "meta")
        sym = cnncalc.analyze(spec, input="3xHxW", batch="N")
        for size in (16, 22):
            num = cnncalc.analyze(spec, input=f"3x{size}x{size + 2}", batch=3)
            values = {cnncalc.layers.symbol("H"): size, cnncalc.layers.symbol("W"): size + 2,
                      cnncalc.layers.symbol("N"): 3}
            for key in ("params", "macs", "activations", "saved_bytes", "backward_macs",
                        "training_bytes"):
                assert sp.expand(sym.total[key].subs(values)) == num.total[key], (name, key)


# -- receptive fields through branches ----------------------------------------------------

def test_receptive_field_through_concat():
    """The union over the four branches: the 5x5 branch reaches farthest."""
    model = dependency_model(nn.Sequential(_stem(6), Inception()))
    spec = f"conv(6, k=1), {INCEPTION}"
    a = cnncalc.analyze(spec, input="3x15x15")
    cat = next(r.index for r in a.layers if r.type == "cat")
    check_fields(model, (3, 15, 15), a, {cat: model[1]})
    assert a.layers[cat].receptive_field.size == (5, 5)


def test_receptive_field_through_skips():
    """U-Net's decoder conv: upsampling leaves the grid, so the field is not given; the
    encoder path still has one. FPN's add joins a coarse and a fine path: no single jump,
    none either (never a wrong one)."""
    a = cnncalc.analyze(f"conv(6, k=1), {UNET}", input="3x8x8")
    rows = {r.name: r for r in a.layers}
    assert rows["cat1.cat"].receptive_field is None
    # 1x1 stem: 1; 3x3: 3; pool 2: 4 with jump 2; 3x3: 4 + 2 * 2 = 8
    assert rows["conv3"].receptive_field.size == (8, 8)
    model = dependency_model(nn.Sequential(_stem(6), UNet()))
    check_fields(model, (3, 8, 8), a, {rows["relu1"].index: model[1].enc,
                                       rows["conv3"].index: model[1].down[1]})
    fpn = cnncalc.analyze(f"conv(6, k=1), {FPN_SPEC}", input="3x8x8")
    assert fpn.layers[-1].receptive_field is None


def test_receptive_field_after_pad_shifts():
    spec = "pad((2, 0, 1, 0)), conv(4, k=3)"
    a = cnncalc.analyze(spec, input="3x9x9")
    field = a.layers[1].receptive_field
    # output pixel 0 of the conv sees padded pixels 0..2, which are input pixels -2..0 (W)
    # and -1..1 (H)
    assert field.lo == (-1, -2) and field.hi == (1, 0) and field.jump == (1, 1)


# -- structure and naming ----------------------------------------------------------------

def test_rows_name_the_branches_and_feed_the_merge():
    a = cnncalc.analyze(f"conv(6, k=1), {INCEPTION}", input="3x9x9")
    names = [r.name for r in a.layers]
    assert names[1:4] == ["cat1.b1.conv1", "cat1.b2.conv1", "cat1.b2.relu1"]
    cat = a.layers[-1]
    assert cat.name == "cat1.cat" and cat.type == "cat"
    assert [a.layers[i].name for i in cat.inputs] == [
        "cat1.b1.conv1", "cat1.b2.conv2", "cat1.b3.conv2", "cat1.b4.conv1"]
    assert cat.output_shape == (14, 9, 9)
    named = cnncalc.analyze(f"conv(6, k=1), {INCEPTION[:-1]}, name=inc3a)", input="3x9x9")
    assert named.layers[-1].name == "inc3a.cat"


def test_freeze_a_branch_by_name():
    a = cnncalc.analyze(f"conv(6, k=1), {INCEPTION}", input="3x9x9", freeze="cat1.b2")
    frozen = {r.name for r in a.layers if r.frozen}
    assert frozen == {"cat1.b2.conv1", "cat1.b2.relu1", "cat1.b2.conv2"}


# -- errors point into the text ----------------------------------------------------------

@pytest.mark.parametrize(("spec", "message", "column"), [
    ("conv(8), concat(identity, maxpool(2))",
     "branch 2 gives 8x7x7 but branch 1 gives 8x14x14", 10),
    ("conv(8), add(identity, conv(4, k=1))", "branch 2 gives 4x14x14 but branch 1", 10),
    ("conv(8), add(identity, e9)", "unknown layer 'e9'", 24),
    ("conv(8), save(relu)", "'relu' is a layer's name", 15),
    ("conv(8), concat(conv(4))", "needs at least two branches", 10),
    ("concat(conv(4) -> , relu)", "'->' leads to no layer", 16),
    ("se", "give squeeze (its channels) or reduce=r", 1),
    ("upsample(2, size=3)", "give scale or size, not both", 1),
    ("split(2, 2)", "index 2 is past the last of 2 parts", 1),
    ("conv(8), concat(identity, conv(4), nme=x)", "unknown key 'nme' for concat", 36),
    ("conv(8), save(3)", "expected a name", 15),
    ("conv(8), upsample(-2)", "expected a positive scale factor", 19),
    ("conv(8), ln(dims=1, channels=true)", "give dims or channels=true, not both", 10),
])
def test_errors_point_at_the_text(spec, message, column):
    with pytest.raises(SpecError) as info:
        cnncalc.analyze(spec, input="3x16x16")
    assert message in str(info.value)
    assert info.value.column == column


def test_shape_errors_inside_new_layers():
    with pytest.raises(cnncalc.errors.ShapeError, match="do not split into 2 equal parts"):
        cnncalc.analyze("conv(5, k=1), split(2, 0)", input="3x8x8")
    with pytest.raises(cnncalc.errors.ShapeError, match="not divisible by groups=4"):
        cnncalc.analyze("conv(6, k=1), shuffle(4)", input="3x8x8")
    with pytest.raises(cnncalc.errors.ShapeError, match="leaves no squeeze channels"):
        cnncalc.analyze("conv(3, k=1), se(r=4)", input="3x8x8")


def test_symbolic_merge_states_its_assumption():
    """U-Net with H x W symbols: the decoder's 2*floor(H/2) meets the encoder's H only for
    even sizes. The figures assume it and say so in every format; a size where it fails is
    refused."""
    spec = f"conv(6, k=1), {UNET}"
    a = cnncalc.analyze(spec, input="3xHxW")
    assert len(a.notes) == 1 and "equal only for some sizes (such as H = 64" in a.notes[0]
    even = a.subs({"H": 64, "W": 32})
    assert even.notes == ()
    assert even.total["macs"] == cnncalc.analyze(spec, input="3x64x32").total["macs"]
    with pytest.raises(cnncalc.errors.ShapeError,
                       match="branch 2 gives 4x62x32 but branch 1 gives 4x63x32"):
        a.subs({"H": 63, "W": 32})
    from cnncalc.render.formats import to_csv, to_dict, to_latex, to_markdown
    assert to_dict(a)["notes"] == list(a.notes)
    for text in (to_csv(a), to_latex(a), to_markdown(a)):
        assert "equal only for some sizes" in text


@pytest.mark.parametrize("name", ["inception", "dense", "unet", "se", "shuffle"])
def test_from_torch_reads_the_same_network(name):
    """The hand-written module through ``from_torch`` and the spec agree on every total,
    and a torch.cat row carries the same merge (so the receptive field passes it)."""
    model, spec, shape = model_for(name, "meta")
    traced = cnncalc.from_torch(model, "x".join(map(str, shape)), batch=2)
    a = cnncalc.analyze(spec, input="x".join(map(str, shape)), batch=2)
    for key in ("params", "macs", "backward_macs"):
        assert traced.total[key] == a.total[key], key
    cats = [r for r in traced.layers if r.type == "cat"]
    assert [r.receptive_field for r in cats] == [
        r.receptive_field for r in a.layers if r.type == "cat"]


# -- every view of a branching network ---------------------------------------------------

def test_every_format_shows_the_branches(capsys):
    import json

    from cli_helpers import run_ok
    spec = f"conv(6, k=1), {INCEPTION[:-1]}, name=inc3a), se(4)"
    a = cnncalc.analyze(spec, input="3x9x9")
    doc = json.loads(run_ok(["params", "--layers", spec, "--input", "3x9x9", "--format", "json",
                             "--training", "--receptive-field"], capsys))
    assert [r["name"] for r in doc["layers"]] == [r.name for r in a.layers]
    assert doc["total"]["params"] == a.total["params"]
    assert doc["total"]["macs"] == a.total["macs"]
    for fmt in ("table", "markdown", "latex", "csv"):
        out = run_ok(["params", "--layers", spec, "--input", "3x9x9", "--format", fmt], capsys)
        assert "inc3a.b2.conv2" in out.replace("\\_", "_") and "se1.mul" in out.replace(
            "\\_", "_"), fmt
        macs = int(a.total["macs"])
        assert any(text in out for text in (f"{macs:,}", str(macs), f"{macs:,}".replace(
            ",", "{,}"))), fmt


def test_compare_two_branching_networks(capsys):
    """An Inception module against the plain 3x3 conv of the same output width: the
    ratio of MACs, symbolic in H and W, is the ratio of their per-pixel costs."""
    import json

    from cli_helpers import run_ok
    inception = f"conv(6, k=1), {INCEPTION}"
    plain = "conv(6, k=1), conv(14, k=3, p=1)"
    doc = json.loads(run_ok(["compare", inception, plain, "--input", "3xHxW",
                             "--format", "json"], capsys))
    a = cnncalc.analyze(inception, input="3xHxW").total["macs"]
    b = cnncalc.analyze(plain, input="3xHxW").total["macs"]
    macs = next(q for q in doc["quantities"] if q["quantity"] == "macs")
    assert sp.simplify(sp.sympify(macs["ratio"]) - b / a) == 0


@pytest.mark.parametrize("name", sorted(cnncalc.zoo.MODELS))
def test_every_zoo_network_is_symbolic_and_exact(name):
    """``--model NAME --input CxHxW``: symbolic in H and W, and at the network's own size
    exactly the numeric answer, for every quantity a total has."""
    from cnncalc.zoo import MODELS
    entry = MODELS[name]
    c, h, w = entry.input.split("x")
    sym = cnncalc.analyze(model=name, input=f"{c}xHxW")
    assert {s.name for s in sym.symbols} == {"H", "W"}
    num = cnncalc.analyze(model=name)
    values = {cnncalc.layers.symbol("H"): int(h), cnncalc.layers.symbol("W"): int(w)}
    for key in ("params", "macs", "activations", "backward_macs", "saved_bytes",
                "training_bytes"):
        assert sp.expand(sym.total[key].subs(values)) == num.total[key], key
    assert tuple(d.subs(values) for d in sym.output_shape) == num.output_shape
