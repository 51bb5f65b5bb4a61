"""Every layer kind of the language against the PyTorch module it names.

For each spec, an equivalent ``torch.nn`` module runs on the meta device (shapes
only, no arithmetic): the output shape, ``sum(p.numel())``, the running-stat
buffers and the conv/linear MACs seen by the module must equal cnncalc's.
"""

from __future__ import annotations

import math

import pytest

import cnncalc

torch = pytest.importorskip("torch")
nn = torch.nn

# (spec, input C x ..., torch module factory)
CASES = [
    ("conv(8, k=3)", (3, 17, 23), lambda: nn.Conv2d(3, 8, 3)),
    ("conv(8, k=(3,5), s=(2,1), p=(1,2), d=(2,1))", (3, 17, 23),
     lambda: nn.Conv2d(3, 8, (3, 5), (2, 1), (1, 2), (2, 1))),
    ("conv(12, k=3, groups=3, bias=false)", (6, 9, 9),
     lambda: nn.Conv2d(6, 12, 3, groups=3, bias=False)),
    ("conv(8, k=3, p=same, d=2)", (4, 10, 11), lambda: nn.Conv2d(4, 8, 3, padding="same",
                                                                dilation=2)),
    ("conv(8, k=4, p=valid, s=3)", (4, 10, 11), lambda: nn.Conv2d(4, 8, 4, 3, padding="valid")),
    ("conv2d(out_channels=5, kernel_size=2x3, stride=2, padding=1)", (2, 8, 8),
     lambda: nn.Conv2d(2, 5, (2, 3), 2, 1)),
    ("dwconv", (16, 14, 14), lambda: nn.Conv2d(16, 16, 3, 1, 1, groups=16)),
    ("dwconv(k=5, s=2, p=2, multiplier=2, bias=false)", (8, 14, 14),
     lambda: nn.Conv2d(8, 16, 5, 2, 2, groups=8, bias=False)),
    ("conv1d(6, k=5, s=2, p=1)", (3, 50), lambda: nn.Conv1d(3, 6, 5, 2, 1)),
    ("conv3d(4, k=3, s=(1,2,2), p=1)", (2, 8, 16, 16), lambda: nn.Conv3d(2, 4, 3, (1, 2, 2), 1)),
    ("deconv(6, k=4, s=2, p=1)", (3, 7, 9), lambda: nn.ConvTranspose2d(3, 6, 4, 2, 1)),
    ("convtranspose2d(4, k=3, s=2, p=1, output_padding=1, groups=2)", (6, 5, 5),
     lambda: nn.ConvTranspose2d(6, 4, 3, 2, 1, output_padding=1, groups=2)),
    ("deconv1d(3, k=5, s=3)", (2, 11), lambda: nn.ConvTranspose1d(2, 3, 5, 3)),
    ("maxpool(2)", (3, 15, 15), lambda: nn.MaxPool2d(2)),
    ("maxpool(3, s=2, p=1)", (3, 15, 16), lambda: nn.MaxPool2d(3, 2, 1)),
    ("maxpool(3, s=2, ceil_mode=true)", (3, 15, 16), lambda: nn.MaxPool2d(3, 2, ceil_mode=True)),
    ("maxpool(2, s=2, p=1, ceil=true)", (1, 6, 7), lambda: nn.MaxPool2d(2, 2, 1, ceil_mode=True)),
    ("maxpool(3, s=1, d=2)", (3, 12, 12), lambda: nn.MaxPool2d(3, 1, dilation=2)),
    ("avgpool(3, s=2)", (3, 15, 16), lambda: nn.AvgPool2d(3, 2)),
    ("maxpool1d(3)", (4, 20), lambda: nn.MaxPool1d(3)),
    ("avgpool3d(2)", (2, 6, 8, 8), lambda: nn.AvgPool3d(2)),
    ("gap", (7, 9, 9), lambda: nn.AdaptiveAvgPool2d(1)),
    ("adaptiveavgpool(6)", (7, 13, 13), lambda: nn.AdaptiveAvgPool2d(6)),
    ("adaptiveavgpool((2,3))", (7, 13, 13), lambda: nn.AdaptiveAvgPool2d((2, 3))),
    ("bn", (5, 6, 6), lambda: nn.BatchNorm2d(5)),
    ("bn", (5, 6), lambda: nn.BatchNorm1d(5)),
    ("bn", (5,), lambda: nn.BatchNorm1d(5)),
    ("bn(affine=false)", (5, 6, 6), lambda: nn.BatchNorm2d(5, affine=False)),
    ("bn(track_running_stats=false)", (5, 6, 6),
     lambda: nn.BatchNorm2d(5, track_running_stats=False)),
    ("ln", (5, 6, 7), lambda: nn.LayerNorm([5, 6, 7])),
    ("ln(dims=1)", (5, 6, 7), lambda: nn.LayerNorm(7)),
    ("in", (5, 6, 7), lambda: nn.InstanceNorm2d(5)),
    ("in(affine=true, track=true)", (5, 6, 7),
     lambda: nn.InstanceNorm2d(5, affine=True, track_running_stats=True)),
    ("gn(2)", (6, 4, 4), lambda: nn.GroupNorm(2, 6)),
    ("gn(3, affine=false)", (6, 4, 4), lambda: nn.GroupNorm(3, 6, affine=False)),
    ("fc(7)", (12,), lambda: nn.Linear(12, 7)),
    ("linear(7, bias=false)", (3, 12), lambda: nn.Linear(12, 7, bias=False)),
    ("flatten", (3, 4, 5), lambda: nn.Flatten()),
    ("relu", (3, 4, 5), lambda: nn.ReLU()),
    ("dropout(0.3)", (3, 4, 5), lambda: nn.Dropout(0.3)),
    ("softmax", (10,), lambda: nn.Softmax(dim=-1)),
]


def torch_facts(module: nn.Module, shape: tuple[int, ...], batch: int) -> dict:
    """Output shape, params, buffers and MACs, as PyTorch itself reports them."""
    module = module.to("meta").eval()
    out = module(torch.empty((batch, *shape), device="meta"))
    macs = 0
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        spatial = out.shape[2:] if not isinstance(module, nn.Linear) else out.shape[:-1]
        macs = module.weight.numel() * math.prod(spatial) * (
            batch if not isinstance(module, nn.Linear) else 1)
    elif isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        macs = module.weight.numel() * math.prod(shape[1:]) * batch
    buffers = sum(b.numel() for name, b in module.named_buffers()
                  if name.endswith(("running_mean", "running_var")))
    return {"shape": tuple(out.shape[1:]), "params": sum(p.numel() for p in module.parameters()),
            "buffers": buffers, "macs": macs}


@pytest.mark.parametrize(("spec", "shape", "factory"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("batch", [1, 3])
def test_layer_matches_torch(spec, shape, factory, batch):
    expected = torch_facts(factory(), shape, batch)
    a = cnncalc.analyze(spec, input=shape, batch=batch)
    row = a.layers[0]
    got = {"shape": tuple(int(d) for d in row.output_shape), "params": int(row.params),
           "buffers": int(row.buffers), "macs": int(row.macs)}
    assert got == expected
    assert int(row.activations) == math.prod(expected["shape"]) * batch


def test_basic_block_with_projection_matches_torch():
    """basic(128, s=2) on 64 channels: conv-bn-relu-conv-bn + 1x1/2 conv-bn shortcut."""
    body = nn.Sequential(nn.Conv2d(64, 128, 3, 2, 1, bias=False), nn.BatchNorm2d(128),
                         nn.ReLU(), nn.Conv2d(128, 128, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(128))
    shortcut = nn.Sequential(nn.Conv2d(64, 128, 1, 2, bias=False), nn.BatchNorm2d(128))
    params = sum(p.numel() for m in (body, shortcut) for p in m.parameters())
    a = cnncalc.analyze("basic(128, s=2)", input="64x56x56")
    assert int(a.total["params"]) == params
    assert [r.name for r in a.layers] == [
        "basic1.conv1", "basic1.bn1", "basic1.relu1", "basic1.conv2", "basic1.bn2",
        "basic1.shortcut.conv", "basic1.shortcut.bn", "basic1.add", "basic1.relu2"]
    assert a.output_shape == (128, 28, 28)


def test_auto_projection_without_bn_has_bias():
    """residual() projects with a biased 1x1 conv when the body has no batch norm."""
    a = cnncalc.analyze("residual(conv(16, k=3, s=2, p=1), relu, conv(16, k=3, p=1))",
                        input="8x10x10")
    proj = nn.Conv2d(8, 16, 1, 2)
    row = next(r for r in a.layers if r.name.endswith("shortcut.conv"))
    assert int(row.params) == sum(p.numel() for p in proj.parameters())
    assert row.output_shape == (16, 5, 5)


def test_inverted_residual_matches_torch():
    """inverted(24, t=6, s=2) on 16 channels: no residual (stride 2), torchvision layout."""
    m = nn.Sequential(nn.Conv2d(16, 96, 1, bias=False), nn.BatchNorm2d(96), nn.ReLU6(),
                      nn.Conv2d(96, 96, 3, 2, 1, groups=96, bias=False), nn.BatchNorm2d(96),
                      nn.ReLU6(), nn.Conv2d(96, 24, 1, bias=False), nn.BatchNorm2d(24))
    a = cnncalc.analyze("inverted(24, t=6, s=2)", input="16x32x32")
    assert int(a.total["params"]) == sum(p.numel() for p in m.parameters())
    assert not any(r.type == "add" for r in a.layers)
    b = cnncalc.analyze("inverted(16, t=6)", input="16x32x32")
    assert b.layers[-1].type == "add"


def test_no_bias_flag_drops_every_bias():
    a = cnncalc.analyze("conv(8, k=3), flatten, fc(4)", input="3x5x5", bias=False)
    ref = [nn.Conv2d(3, 8, 3, bias=False), nn.Linear(72, 4, bias=False)]
    assert int(a.total["params"]) == sum(p.numel() for m in ref for p in m.parameters())
