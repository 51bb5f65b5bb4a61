"""The mobile-era zoo networks against hand-written PyTorch models and published figures.

For each of MobileNetV3 (large, small), MNASNet 1.0, EfficientNet-B0 and V2-S,
ConvNeXt-Tiny and RegNetX/Y-400MF: parameters (``numel``), multiply-adds (torch's
``FlopCounterMode``, which counts 2 FLOPs per multiply-add of conv / mm / addmm), and
the output shape of the reference in ``zoo_reference_mobile.py`` on the meta device;
torchvision's published parameter counts and GFLOPS; symbolic sizes; and, for one
squeeze-and-excitation model, the training quantities against autograd.
"""

from __future__ import annotations

import pytest
import sympy as sp

import cnncalc
from cnncalc.layers import symbol

torch = pytest.importorskip("torch")
nn = torch.nn
import zoo_reference_mobile as ref  # noqa: E402  (after the importorskip: its models need torch)
from test_training import saved_by_torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

# torchvision.models' weight metadata (``num_params`` and ``_ops``, the GFLOPS column of
# https://pytorch.org/vision/stable/models.html), measured at its evaluation crop size
# (384x384 for EfficientNetV2-S, 224x224 for the rest).
PUBLISHED = {  # name: (input, parameters, GFLOPS)
    "mobilenet_v3_large": ((3, 224, 224), 5_483_032, 0.217),
    "mobilenet_v3_small": ((3, 224, 224), 2_542_856, 0.057),
    "mnasnet1_0": ((3, 224, 224), 4_383_312, 0.314),
    "efficientnet_b0": ((3, 224, 224), 5_288_548, 0.386),
    "efficientnet_v2_s": ((3, 384, 384), 21_458_488, 8.366),
    "convnext_tiny": ((3, 224, 224), 28_589_128, 4.456),
    "regnet_x_400mf": ((3, 224, 224), 5_495_976, 0.414),
    "regnet_y_400mf": ((3, 224, 224), 4_344_144, 0.402),
}


def measure(name: str, shape: tuple[int, ...], batch: int = 1) -> dict:
    """Parameters, multiply-adds and output shape of the reference model, on meta."""
    with torch.device("meta"):
        model = ref.MODELS[name]().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(torch.zeros((batch, *shape), device="meta"))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return {"params": sum(p.numel() for p in model.parameters()), "macs": flops // 2,
            "output": tuple(out.shape[1:])}


@pytest.fixture(scope="module", params=list(PUBLISHED))
def case(request):
    name = request.param
    shape, params, gflops = PUBLISHED[name]
    return name, shape, params, gflops, measure(name, shape)


def test_reference_matches_torchvision_published(case):
    """Guards the hand-written models: torchvision's parameter count and GFLOPS."""
    _, _, params, gflops, got = case
    assert got["params"] == params
    assert round(got["macs"] / 1e9, 3) == gflops
    assert got["output"] == (1000,)


def test_zoo_entry_matches_reference(case):
    name, shape, params, _, expected = case
    entry = cnncalc.zoo.get(name)
    assert entry.input == "x".join(map(str, shape))
    a = cnncalc.analyze(model=name)
    assert int(a.total["params"]) == expected["params"] == params
    assert int(a.total["macs"]) == expected["macs"]
    assert tuple(int(d) for d in a.output_shape) == expected["output"]


def test_batch_multiplies_macs_not_params():
    expected = measure("mobilenet_v3_small", (3, 224, 224), batch=3)
    a = cnncalc.analyze(model="mobilenet_v3_small", batch=3)
    assert int(a.total["macs"]) == expected["macs"]
    assert int(a.total["params"]) == expected["params"]


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "convnext_tiny", "regnet_y_400mf"])
def test_symbolic_size_gives_the_numeric_totals(name):
    """``--input 3xHxW`` with H = W = the default size is the numeric analysis; the reference
    at another size (odd, so the ceilings of the stride-2 layers show) agrees too."""
    shape, *_ = PUBLISHED[name]
    a = cnncalc.analyze(model=name, input="3xHxW")
    assert {s.name for s in a.symbols} == {"H", "W"}
    n = cnncalc.analyze(model=name)
    sub = {symbol("H"): shape[1], symbol("W"): shape[2]}
    for q in ("params", "macs", "activations", "backward_macs", "saved_bytes"):
        assert sp.sympify(a.total[q]).xreplace(sub) == n.total[q], q
    other = measure(name, (3, 97, 131))
    sub = {symbol("H"): 97, symbol("W"): 131}
    assert a.total["macs"].xreplace(sub) == other["macs"]
    assert a.total["params"] == other["params"]


# -- training: squeeze-and-excitation through autograd ----------------------------------------

def grouped_weight_overcount(model, x) -> int:
    """FLOPs that ``FlopCounterMode`` adds for grouped convs' weight gradients: it counts
    each as ``groups`` times the forward (``tests/test_training.py`` shows it group by
    group), where the work is once the forward."""
    extra = []

    def hook(module, inp, out):
        forward = module.weight.numel() * out.shape[0] * out.shape[2] * out.shape[3]
        extra.append(2 * forward * (module.groups - 1))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d) and m.groups > 1]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return sum(extra)


def test_squeeze_excite_training_step_matches_autograd():
    """MobileNetV3-Small (SE with hard-sigmoid gates, hardswish, depthwise convs) on a
    small input in training mode: bytes kept for backward and backward multiply-adds."""
    torch.manual_seed(0)
    batch, shape = 2, (3, 64, 64)
    model = ref.mobilenet_v3_small().train()
    a = cnncalc.analyze(model="mobilenet_v3_small", input="3x64x64", batch=batch)
    x = torch.randn(batch, *shape)
    saved, out = saved_by_torch(model, x)
    # torch's CPU dropout keeps its mask in float32; cnncalc counts the bool mask a GPU
    # keeps (see test_training.test_dropout_mask_differs_on_cpu): 3 bytes an element more.
    dropout_mask = batch * 1024
    assert saved == int(a.total["saved_bytes"]) + 3 * dropout_mask
    with FlopCounterMode(display=False) as counter:
        out.sum().backward()
    overcount = grouped_weight_overcount(model, x)
    assert overcount > 0
    assert counter.get_total_flops() - overcount == 2 * int(a.total["backward_macs"])


def test_convnext_receptive_field_stops_before_the_pool():
    """The network's receptive field is the last feature map's, not that of the norm applied
    after global pooling: 4x4 stem (jump 4), each 7x7 depthwise conv adds 6 jumps, each 2x2
    stride-2 downsampling one jump and doubles it."""
    size, jump = 4, 4
    for i, blocks in enumerate((3, 3, 9, 3)):
        if i:
            size, jump = size + jump, 2 * jump
        size += blocks * 6 * jump
    a = cnncalc.analyze(model="convnext_tiny")
    field, layer = a.total["receptive_field"], a.total["receptive_field_layer"]
    assert size == 1688
    assert tuple(h - lo + 1 for lo, h in zip(field.lo, field.hi)) == (size, size)
    assert field.jump == (jump, jump) == (32, 32)
    assert a.layers[layer + 1].type == "adaptive_avg_pool2d"


@pytest.mark.parametrize("name", list(ref.MODELS))
def test_from_torch_keeps_what_the_spec_keeps(name):
    """The torch models, read by ``from_torch``, keep for backward what the layer language
    says (itself checked against autograd above): their squeeze-and-excitation products
    (``scale * x``), layer scales (``gamma * x``) and stochastic depth have no module of
    their own, and each keeps a tensor."""
    model = ref.MODELS[name]().train()
    traced = cnncalc.from_torch(model, (3, 64, 64), batch=2)
    spec = cnncalc.analyze(model=name, input="3x64x64", batch=2)
    for key in ("saved_bytes", "training_bytes", "backward_macs"):
        assert traced.total[key] == spec.total[key], key
