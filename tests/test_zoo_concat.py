"""The zoo's branching networks against hand-written PyTorch models and published counts.

Each zoo entry (GoogLeNet, Inception-v3, DenseNet-121, SqueezeNet 1.0/1.1, ShuffleNetV2,
U-Net) is checked against its plain ``torch.nn`` twin in ``zoo_reference_concat``: the
parameter count by ``numel``, the multiply-adds by ``torch.utils.flop_counter`` and the
output shape from a forward pass, all on the ``meta`` device (shapes only, no memory).
"""

from __future__ import annotations

import json

import pytest
import sympy as sp
from cli_helpers import run_any, run_ok

import cnncalc

torch = pytest.importorskip("torch")
import zoo_reference_concat as ref  # noqa: E402 - needs torch, checked just above
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

META = torch.device("meta")

# name -> (reference builder, default input C, H, W)
ZOO = {
    "googlenet": (ref.googlenet, (3, 224, 224)),
    "inception_v3": (ref.inception_v3, (3, 299, 299)),
    "densenet121": (ref.densenet121, (3, 224, 224)),
    "squeezenet1_0": (ref.squeezenet1_0, (3, 224, 224)),
    "squeezenet1_1": (ref.squeezenet1_1, (3, 224, 224)),
    "shufflenet_v2_x1_0": (ref.shufflenet_v2_x1_0, (3, 224, 224)),
    "unet": (ref.unet, (1, 256, 256)),
}

# Parameter counts published with torchvision's ImageNet weights ("num_params" in each
# weights enum's meta, shown in the tables of pytorch.org/vision/stable/models.html).
PUBLISHED = {
    "googlenet": 6_624_904,  # without the auxiliary heads (GoogLeNet_Weights.IMAGENET1K_V1)
    "densenet121": 7_978_856,  # DenseNet121_Weights.IMAGENET1K_V1
    "squeezenet1_0": 1_248_424,  # SqueezeNet1_0_Weights.IMAGENET1K_V1
    "squeezenet1_1": 1_235_496,  # SqueezeNet1_1_Weights.IMAGENET1K_V1
    "shufflenet_v2_x1_0": 2_278_604,  # ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1
}
# Inception_V3_Weights.IMAGENET1K_V1 keeps its auxiliary head: 27,161,264 with it.
PUBLISHED_INCEPTION_V3_WITH_AUX = 27_161_264
# The same tables' "GFLOPS" (torchvision counts multiply-adds), to two decimals.
PUBLISHED_GMACS = {"googlenet": 1.50, "inception_v3": 5.71, "densenet121": 2.83,
                   "squeezenet1_0": 0.82, "squeezenet1_1": 0.35, "shufflenet_v2_x1_0": 0.14}


def build(builder):
    with META:
        model = builder()
    return model.eval()


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def measure(builder, shape: tuple[int, ...]) -> dict:
    """Params by numel; MACs as FlopCounterMode's FLOPs / 2; the output shape."""
    model = build(builder)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = model(torch.zeros((1, *shape), device=META))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return {"params": params(model), "macs": flops // 2, "output_shape": tuple(out.shape[1:])}


def test_flop_counter_counts_two_flops_per_multiply_add():
    """The convention the conversion relies on: a conv or linear layer's FLOPs are twice
    its multiply-adds."""
    with META:
        conv, fc = torch.nn.Conv2d(3, 4, 3, bias=True), torch.nn.Linear(5, 7)
    for layer, x, macs in ((conv, torch.zeros(1, 3, 6, 6, device=META), 3 * 9 * 4 * 4 * 4),
                           (fc, torch.zeros(2, 5, device=META), 2 * 5 * 7)):
        counter = FlopCounterMode(display=False)
        with counter:
            layer(x)
        assert counter.get_total_flops() == 2 * macs


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_reference_matches_published_params(name):
    """Guards the hand-written models with torchvision's published counts."""
    assert params(build(ZOO[name][0])) == PUBLISHED[name]


def test_reference_inception_v3_with_aux_head_matches_published():
    """torchvision publishes Inception-v3 with its auxiliary head; without it the
    network is that much smaller (the zoo counts the inference network)."""
    assert (params(build(ref.inception_v3)) + params(build(ref.inception_v3_aux_head))
            == PUBLISHED_INCEPTION_V3_WITH_AUX)


def test_reference_googlenet_aux_heads_are_extra():
    """torchvision's googlenet(aux_logits=True) has 13,004,888 parameters."""
    assert (params(build(ref.googlenet)) + params(build(ref.googlenet_aux_heads))
            == 13_004_888)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_matches_reference(name):
    """Params, MACs and the output shape equal the hand-written torch model's."""
    builder, shape = ZOO[name]
    expected = measure(builder, shape)
    analysis = cnncalc.analyze(model=name)
    assert tuple(int(d) for d in analysis.input_shape) == shape
    got = {"params": int(analysis.total["params"]), "macs": int(analysis.total["macs"]),
           "output_shape": tuple(int(d) for d in analysis.output_shape)}
    assert got == expected
    if name in PUBLISHED_GMACS:
        assert round(got["macs"] / 1e9, 2) == PUBLISHED_GMACS[name]


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_conv_and_linear_layers_match_reference(name):
    """The same weight layers, not just the same sum: the multiset of per-layer
    parameter counts of conv / linear layers agrees."""
    builder, shape = ZOO[name]
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    expected = sorted(sum(p.numel() for p in m.parameters())
                      for m in build(builder).modules() if isinstance(m, kinds))
    rows = cnncalc.analyze(model=name).layers
    got = sorted(int(r.params) for r in rows
                 if r.type in ("conv2d", "conv_transpose2d", "linear"))
    assert got == expected


H, W = sp.symbols("H W", integer=True, positive=True)


@pytest.mark.parametrize("name, size", [("googlenet", (224, 224)),
                                        ("inception_v3", (299, 331)),
                                        ("shufflenet_v2_x1_0", (225, 200))])
def test_symbolic_analysis_substitutes_to_numeric(name, size):
    """``--input 3xHxW`` gives closed forms; at a size (square or not) they equal the
    torch model's figures there."""
    builder, shape = ZOO[name]
    symbolic = cnncalc.analyze(model=name, input="3xHxW")
    values = {H: size[0], W: size[1]}
    numeric = cnncalc.analyze(model=name, input=f"3x{size[0]}x{size[1]}")
    for q in ("params", "macs", "activations"):
        assert sp.sympify(symbolic.total[q]).xreplace(values) == numeric.total[q], q
    expected = measure(builder, (3, *size))
    assert symbolic.total["macs"].xreplace(values) == expected["macs"]
    assert symbolic.total["params"] == expected["params"]


def test_unet_symbolic_in_multiples_of_16(capsys):
    """U-Net's skips meet only when the size divides by 16: ``--input 1x16Hx16W`` gives
    exact polynomials, equal to torch's figures at 256x256 (H = W = 16)."""
    doc = json.loads(run_ok(["params", "--model", "unet", "--input", "1x16Hx16W",
                             "--format", "json"], capsys))
    assert doc["input_shape"] == [1, "16*H", "16*W"]
    assert doc["total"]["output_shape"] == [2, "16*H", "16*W"]
    expected = measure(ref.unet, (1, 256, 256))
    assert doc["total"]["params"] == expected["params"]
    assert sp.sympify(doc["total"]["macs"], locals={"H": H, "W": W}).xreplace(
        {H: 16, W: 16}) == expected["macs"]


def test_input_multiple_of_a_symbol_must_be_positive(capsys):
    code, _, err = run_any(["params", "--model", "unet", "--input", "1x0Hx16W"], capsys)
    assert code == 2 and "sizes must be positive, got 0" in err


def test_unet_size_not_divisible_says_where_the_skip_fails():
    """A size the skips cannot meet at is a clear error naming the concatenation."""
    with pytest.raises(cnncalc.errors.SpecError, match="concat: branch 2 gives"):
        cnncalc.analyze(model="unet", input="1x250x250")


def test_pairs_are_height_by_width_as_torch():
    """Inception's ``k=1x7, p=0x3`` reads (height, width) like torch's ``(1, 7)``: on a
    non-square input without the padding, the sizes shrink along the right axis."""
    with META:
        conv = torch.nn.Conv2d(3, 4, kernel_size=(1, 7), padding=(0, 1))
    out = conv(torch.zeros(1, 3, 10, 20, device=META))
    got = cnncalc.analyze("conv(4,k=1x7,p=0x1)", input="3x10x20")
    assert tuple(int(d) for d in got.output_shape) == tuple(out.shape[1:]) == (4, 10, 16)
