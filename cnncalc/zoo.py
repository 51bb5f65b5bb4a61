"""Built-in networks, written in the layer language itself.

Each is laid out as its classic / torchvision definition so that totals match
the published counts (tests check them against hand-written torch models).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CnnCalcError


@dataclass(frozen=True)
class ZooEntry:
    name: str
    input: str  # C x H x W
    spec: str
    description: str


def _vgg(config: list) -> str:
    layers = [f"conv({v},k=3,p=1), relu" if v != "M" else "maxpool(2)" for v in config]
    return ", ".join(layers) + (", adaptiveavgpool(7), flatten, fc(4096), relu, dropout(0.5), "
                                "fc(4096), relu, dropout(0.5), fc(1000)")


def _resnet(block: str, counts: list[int]) -> str:
    stages = []
    for i, (width, n) in enumerate(zip((64, 128, 256, 512), counts)):
        first = f"{block}({width}, s=2)" if i else f"{block}({width})"
        stages.append(first + (f", {block}({width})*{n - 1}" if n > 1 else ""))
    return ("conv(64,k=7,s=2,p=3,bias=false), bn, relu, maxpool(3,s=2,p=1), "
            + ", ".join(stages) + ", gap, flatten, fc(1000)")


def _mobilenet_v2() -> str:
    layers = ["conv(32,k=3,s=2,p=1,bias=false), bn, relu6"]
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        layers.append(f"inverted({c}, t={t}, s={s})")
        if n > 1:
            layers.append(f"inverted({c}, t={t})*{n - 1}")
    layers.append("conv(1280,k=1,bias=false), bn, relu6, gap, flatten, dropout(0.2), fc(1000)")
    return ", ".join(layers)


MODELS: dict[str, ZooEntry] = {e.name: e for e in (
    ZooEntry("lenet5", "3x32x32",
             "conv(6,k=5), relu, maxpool(2), conv(16,k=5), relu, maxpool(2), flatten, "
             "fc(120), relu, fc(84), relu, fc(10)",
             "LeNet-5 as in the convolutional-networks homework, problem 4 (ReLU, max "
             "pooling), 10 classes"),
    ZooEntry("alexnet", "3x224x224",
             "conv(64,k=11,s=4,p=2), relu, maxpool(3,s=2), conv(192,k=5,p=2), relu, "
             "maxpool(3,s=2), conv(384,k=3,p=1), relu, conv(256,k=3,p=1), relu, "
             "conv(256,k=3,p=1), relu, maxpool(3,s=2), adaptiveavgpool(6), flatten, "
             "dropout(0.5), fc(4096), relu, dropout(0.5), fc(4096), relu, fc(1000)",
             "AlexNet, torchvision layout (one tower)"),
    ZooEntry("vgg16", "3x224x224",
             _vgg([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                   512, 512, 512, "M"]),
             "VGG-16 (configuration D), torchvision layout, no batch norm"),
    ZooEntry("resnet18", "3x224x224", _resnet("basic", [2, 2, 2, 2]),
             "ResNet-18, torchvision layout"),
    ZooEntry("resnet50", "3x224x224", _resnet("bottleneck", [3, 4, 6, 3]),
             "ResNet-50 v1.5 (stride on the 3x3 conv), torchvision layout"),
    ZooEntry("mobilenet_v2", "3x224x224", _mobilenet_v2(),
             "MobileNetV2 (width 1.0), torchvision layout"),
    ZooEntry("two_conv_block", "128x64x64",
             "conv(256,k=3,s=2,p=1,bias=false), conv(512,k=3,p=1,bias=false)",
             "two 3x3 convs on a 64x64x128 input, padding 1, no bias (the "
             "convolutional-networks homework, problem 1)"),
    ZooEntry("standard_block", "32x56x56",
             "residual(conv(32,k=3,p=1), bn, relu, conv(32,k=3,p=1), bn)",
             "standard residual block (convs with bias), 18,624 params (the "
             "backpropagation homework, problem 3)"),
    ZooEntry("bottleneck_block", "128x56x56",
             "residual(conv(32,k=1), bn, relu, conv(32,k=3,p=1), bn, relu, conv(128,k=1), bn)",
             "bottleneck residual block (convs with bias), 17,984 params (the "
             "backpropagation homework, problem 3)"),
)}


# Earlier names of the homework blocks, still accepted (not listed).
FORMER_NAMES = {"seed002_block": "two_conv_block", "seed004_standard": "standard_block",
                "seed004_bottleneck": "bottleneck_block"}


def get(name: str) -> ZooEntry:
    try:
        return MODELS[FORMER_NAMES.get(name.lower(), name.lower())]
    except KeyError:
        import difflib
        hint = difflib.get_close_matches(name.lower(), list(MODELS), n=1)
        tip = f" (did you mean {hint[0]}?)" if hint else ""
        raise CnnCalcError(f"unknown model {name!r}{tip}; `cnncalc zoo` lists them") from None
