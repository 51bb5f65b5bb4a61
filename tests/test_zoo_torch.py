"""Independent PyTorch reference for the built-in zoo networks.

Every zoo model is rewritten here by hand in plain ``torch.nn`` (torchvision is
deliberately not used), following the torchvision layouts. The totals and the
per-layer conv/linear figures that cnncalc derives symbolically are compared with
what PyTorch itself reports: parameter counts from ``model.parameters()``, MACs
and output shapes from forward hooks that see the real tensors.

Models are built and run on the ``meta`` device: shapes and ``numel`` are exact,
but no memory is allocated and no arithmetic is done, so VGG16 costs nothing.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

META = torch.device("meta")

CONV_LINEAR_TYPES = {
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "linear",
}

CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_TRANSPOSE_MODULES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


# --------------------------------------------------------------------------------------
# Reference models (torchvision layouts, written out by hand)
# --------------------------------------------------------------------------------------


def lenet5(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """The course homework's LeNet-5 (all layers with bias)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def alexnet(num_classes: int = 1000) -> nn.Module:
    """torchvision ``alexnet``."""
    features = nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )
    classifier = nn.Sequential(
        nn.Dropout(0.5),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Linear(4096, num_classes),
    )
    return nn.Sequential(features, nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(), classifier)


VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512, "M"]  # fmt: skip


def vgg16(num_classes: int = 1000, batch_norm: bool = False) -> nn.Module:
    """torchvision ``vgg16`` (configuration D), ``vgg16_bn`` with ``batch_norm``."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1),
                       *([nn.BatchNorm2d(v)] if batch_norm else []), nn.ReLU()]
            in_channels = v
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(4096, num_classes),
    )
    return nn.Sequential(
        nn.Sequential(*layers), nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(), classifier
    )


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-bn-relu-conv3x3-bn, (downsample), add, relu."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # The shortcut runs after the main branch, so hooks see it last.
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv, whose width is
    ``planes * base_width / 64 * groups`` (ResNeXt, Wide ResNet)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision ``ResNet`` (ImageNet stem, four stages, global pool, fc)."""

    def __init__(self, block, layers: list[int], num_classes: int = 1000, **block_args):
        super().__init__()
        self.block_args = block_args  # groups and base_width, for bottlenecks
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, **self.block_args)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **self.block_args) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18() -> nn.Module:
    return ResNet(BasicBlock, [2, 2, 2, 2])


def resnet34() -> nn.Module:
    return ResNet(BasicBlock, [3, 4, 6, 3])


def resnet50() -> nn.Module:
    return ResNet(Bottleneck, [3, 4, 6, 3])


def resnet101() -> nn.Module:
    return ResNet(Bottleneck, [3, 4, 23, 3])


def resnext50_32x4d() -> nn.Module:
    return ResNet(Bottleneck, [3, 4, 6, 3], groups=32, base_width=4)


def wide_resnet50_2() -> nn.Module:
    return ResNet(Bottleneck, [3, 4, 6, 3], base_width=128)


def vgg16_bn() -> nn.Module:
    return vgg16(batch_norm=True)


def conv_bn_relu6(inp: int, oup: int, kernel: int = 3, stride: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(inp, hidden, kernel=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


MOBILENET_V2_SETTINGS = [  # (t, c, n, s)
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class MobileNetV2(nn.Module):
    """torchvision ``mobilenet_v2`` at width multiplier 1.0."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        input_channel, last_channel = 32, 1280
        features: list[nn.Module] = [conv_bn_relu6(3, input_channel, stride=2)]
        for t, c, n, s in MOBILENET_V2_SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(input_channel, c, s if i == 0 else 1, t))
                input_channel = c
        features.append(conv_bn_relu6(input_channel, last_channel, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2() -> nn.Module:
    return MobileNetV2()


class Residual(nn.Module):
    """``x + body(x)``: the homework's residual wrapper (identity shortcut)."""

    def __init__(self, *body: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return x + self.body(x)


def standard_block() -> nn.Module:
    """CSCE 636 Q3 standard residual block on 32x56x56 (convs with bias)."""
    return Residual(
        nn.Conv2d(32, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.BatchNorm2d(32),
    )


def bottleneck_block() -> nn.Module:
    """CSCE 636 Q3 bottleneck residual block on 128x56x56 (convs with bias)."""
    return Residual(
        nn.Conv2d(128, 32, 1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 128, 1),
        nn.BatchNorm2d(128),
    )


# name -> (builder, default input shape C, H, W, published parameter count)
ZOO = {
    "lenet5": (lenet5, (3, 32, 32), 62_006),
    "alexnet": (alexnet, (3, 224, 224), 61_100_840),
    "vgg16": (vgg16, (3, 224, 224), 138_357_544),
    "vgg16_bn": (vgg16_bn, (3, 224, 224), 138_365_992),
    "resnet18": (resnet18, (3, 224, 224), 11_689_512),
    "resnet34": (resnet34, (3, 224, 224), 21_797_672),
    "resnet50": (resnet50, (3, 224, 224), 25_557_032),
    "resnet101": (resnet101, (3, 224, 224), 44_549_160),
    "resnext50_32x4d": (resnext50_32x4d, (3, 224, 224), 25_028_904),
    "wide_resnet50_2": (wide_resnet50_2, (3, 224, 224), 68_883_240),
    "mobilenet_v2": (mobilenet_v2, (3, 224, 224), 3_504_872),
}

# name -> (builder, input shape, cnncalc spec, parameter count from the homework)
HOMEWORK_BLOCKS = {
    "standard": (
        standard_block,
        (32, 56, 56),
        "residual(conv(32,k=3,p=1), bn, relu, conv(32,k=3,p=1), bn)",
        18_624,
    ),
    "bottleneck": (
        bottleneck_block,
        (128, 56, 56),
        "residual(conv(32,k=1), bn, relu, conv(32,k=3,p=1), bn, relu, conv(128,k=1), bn)",
        17_984,
    ),
}


# --------------------------------------------------------------------------------------
# Independent measurement with PyTorch
# --------------------------------------------------------------------------------------


def build(builder) -> nn.Module:
    """Build a model on the meta device in eval mode (no memory, no arithmetic)."""
    with META:
        model = builder()
    return model.eval()


def layer_macs(module: nn.Module, inp, out) -> int:
    """MACs of one conv/linear call, from the tensor shapes the hook sees.

    Conv: every output element of every image costs k*k*(C_in/groups) MACs, i.e.
    ``weight.numel() * N * prod(output spatial)``. Transposed conv: every *input*
    element is multiplied by a (C_out/groups)*k*k slice of the weight, i.e.
    ``weight.numel() * N * prod(input spatial)``. Linear: ``in * out`` per row of
    the input, rows being all leading dimensions (batch included). Bias adds and
    normalisation are not MACs.
    """
    x = inp[0]
    if isinstance(module, CONV_MODULES):
        return module.weight.numel() * out.shape[0] * math.prod(out.shape[2:])
    if isinstance(module, CONV_TRANSPOSE_MODULES):
        return module.weight.numel() * x.shape[0] * math.prod(x.shape[2:])
    return module.in_features * module.out_features * math.prod(x.shape[:-1])


def measure(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1) -> dict:
    """Run ``model`` once and record, in call order, each conv/linear layer's MACs,
    output shape (without batch) and own parameter count."""
    records: list[tuple[int, tuple[int, ...], int]] = []

    def hook(module, inp, out):
        params = sum(p.numel() for p in module.parameters(recurse=False))
        records.append((layer_macs(module, inp, out), tuple(out.shape[1:]), params))

    kinds = CONV_MODULES + CONV_TRANSPOSE_MODULES + (nn.Linear,)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            model(torch.zeros((batch, *input_shape), device=META))
    finally:
        for handle in handles:
            handle.remove()

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return {
        "params": sum(p.numel() for p in model.parameters()),
        # cnncalc counts running statistics only, not num_batches_tracked.
        "buffers": sum(m.running_mean.numel() + m.running_var.numel() for m in bns),
        "macs": sum(r[0] for r in records),
        "layer_macs": [r[0] for r in records],
        "layer_shapes": [r[1] for r in records],
        "layer_params": [r[2] for r in records],
    }


def cnncalc_view(analysis) -> dict:
    """The same figures as ``measure`` reports, read off a cnncalc analysis."""
    rows = [row for row in analysis.layers if row.type in CONV_LINEAR_TYPES]
    return {
        "params": int(analysis.total["params"]),
        "buffers": int(analysis.total["buffers"]),
        "macs": int(analysis.total["macs"]),
        "layer_macs": [int(row.macs) for row in rows],
        "layer_shapes": [tuple(int(d) for d in row.output_shape) for row in rows],
        "layer_params": [int(row.params) for row in rows],
    }


def first_mismatch(expected: list, got: list) -> str:
    """Human-readable first difference between two per-layer lists."""
    for i, (e, g) in enumerate(zip(expected, got, strict=False)):
        if e != g:
            return f"conv/linear layer #{i}: expected {e}, got {g}"
    return f"length: expected {len(expected)} layers, got {len(got)}"


def assert_matches(expected: dict, got: dict) -> None:
    for key in ("params", "buffers", "macs"):
        assert got[key] == expected[key], f"total {key}: expected {expected[key]}, got {got[key]}"
    for key in ("layer_macs", "layer_shapes", "layer_params"):
        assert got[key] == expected[key], f"{key}: {first_mismatch(expected[key], got[key])}"


@pytest.fixture(scope="module")
def cnncalc():
    """cnncalc itself; skip (rather than error) while the package is unavailable."""
    return pytest.importorskip("cnncalc")


# --------------------------------------------------------------------------------------
# The reference on its own: it must reproduce the published numbers.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ZOO))
def test_reference_matches_published_param_count(name):
    """Guards the hand-written models: torchvision's published parameter counts."""
    builder, input_shape, published = ZOO[name]
    ref = measure(build(builder), input_shape)
    assert ref["params"] == published


@pytest.mark.parametrize("name", list(HOMEWORK_BLOCKS))
def test_reference_homework_block_param_count(name):
    """Guards the hand-written homework blocks against the homework's answers."""
    builder, input_shape, _, published = HOMEWORK_BLOCKS[name]
    ref = measure(build(builder), input_shape)
    assert ref["params"] == published
    assert ref["layer_shapes"][-1] == input_shape  # the identity shortcut fits


def test_reference_known_mac_counts():
    """Well-known conv+linear MAC counts (batch 1, 224x224) confirm the hooks."""
    assert measure(build(alexnet), (3, 224, 224))["macs"] == 714_188_480
    assert measure(build(vgg16), (3, 224, 224))["macs"] == 15_470_264_320
    assert measure(build(resnet18), (3, 224, 224))["macs"] == 1_814_073_344
    assert measure(build(resnet50), (3, 224, 224))["macs"] == 4_089_184_256
    assert measure(build(mobilenet_v2), (3, 224, 224))["macs"] == 300_774_272
    # torchvision's published GFLOPS (multiply-adds) for the rest, to its two decimals
    for builder, gmacs in ((resnet34, 3.66), (resnet101, 7.80), (resnext50_32x4d, 4.23),
                           (wide_resnet50_2, 11.40), (vgg16_bn, 15.47)):
        assert round(measure(build(builder), (3, 224, 224))["macs"] / 1e9, 2) == gmacs


# --------------------------------------------------------------------------------------
# cnncalc against the reference
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_matches_torch(cnncalc, name):
    """Totals and per-layer conv/linear MACs and shapes agree with PyTorch."""
    builder, input_shape, _ = ZOO[name]
    expected = measure(build(builder), input_shape)
    analysis = cnncalc.analyze(model=name, input="x".join(map(str, input_shape)), batch=1)
    assert_matches(expected, cnncalc_view(analysis))


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "mobilenet_v2"])
def test_zoo_batch_scaling(cnncalc, name):
    """At batch 2 MACs double while parameters, buffers and shapes do not change."""
    builder, input_shape, _ = ZOO[name]
    spec = "x".join(map(str, input_shape))
    expected = measure(build(builder), input_shape, batch=2)
    single = measure(build(builder), input_shape, batch=1)
    assert expected["macs"] == 2 * single["macs"]
    assert_matches(expected, cnncalc_view(cnncalc.analyze(model=name, input=spec, batch=2)))


@pytest.mark.parametrize("name", list(HOMEWORK_BLOCKS))
def test_homework_blocks_match_torch(cnncalc, name):
    """The CSCE 636 Q3 residual blocks, written in the cnncalc DSL."""
    builder, input_shape, spec, _ = HOMEWORK_BLOCKS[name]
    expected = measure(build(builder), input_shape)
    analysis = cnncalc.analyze(spec, input="x".join(map(str, input_shape)))
    assert_matches(expected, cnncalc_view(analysis))
