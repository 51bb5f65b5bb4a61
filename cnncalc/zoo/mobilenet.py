"""MobileNetV3 (large, small) and MNASNet 1.0, laid out as torchvision defines them.

Each block is one line of the spec: an inverted residual is a 1x1 expansion, a kxk
depthwise conv, (MobileNetV3: squeeze-and-excitation), a 1x1 linear projection, and
``residual(...)`` around them when stride 1 keeps the channels.
"""

from __future__ import annotations

from .entry import ZooEntry
from .text import block, make_divisible

# (input, kernel, expanded, out, SE, activation, stride) per block, from torchvision's
# _mobilenet_v3_conf
V3_LARGE = [
    (16, 3, 16, 16, False, "relu", 1), (16, 3, 64, 24, False, "relu", 2),
    (24, 3, 72, 24, False, "relu", 1), (24, 5, 72, 40, True, "relu", 2),
    (40, 5, 120, 40, True, "relu", 1), (40, 5, 120, 40, True, "relu", 1),
    (40, 3, 240, 80, False, "hardswish", 2), (80, 3, 200, 80, False, "hardswish", 1),
    (80, 3, 184, 80, False, "hardswish", 1), (80, 3, 184, 80, False, "hardswish", 1),
    (80, 3, 480, 112, True, "hardswish", 1), (112, 3, 672, 112, True, "hardswish", 1),
    (112, 5, 672, 160, True, "hardswish", 2), (160, 5, 960, 160, True, "hardswish", 1),
    (160, 5, 960, 160, True, "hardswish", 1),
]
V3_SMALL = [
    (16, 3, 16, 16, True, "relu", 2), (16, 3, 72, 24, False, "relu", 2),
    (24, 3, 88, 24, False, "relu", 1), (24, 5, 96, 40, True, "hardswish", 2),
    (40, 5, 240, 40, True, "hardswish", 1), (40, 5, 240, 40, True, "hardswish", 1),
    (40, 5, 120, 48, True, "hardswish", 1), (48, 5, 144, 48, True, "hardswish", 1),
    (48, 5, 288, 96, True, "hardswish", 2), (96, 5, 576, 96, True, "hardswish", 1),
    (96, 5, 576, 96, True, "hardswish", 1),
]


def _v3_block(c_in: int, k: int, expanded: int, out: int, se: bool, act: str, s: int) -> str:
    layers = []
    if expanded != c_in:
        layers.append(f"conv({expanded},k=1,bias=false), bn, {act}")
    layers.append(f"dwconv(k={k},s={s},p={(k - 1) // 2},bias=false), bn, {act}")
    if se:  # squeeze: expanded // 4 made divisible by 8; ReLU inside, hard-sigmoid gate
        layers.append(f"se({make_divisible(expanded // 4)}, gate=hardsigmoid)")
    layers.append(f"conv({out},k=1,bias=false), bn")
    return block(layers, s == 1 and c_in == out)


def mobilenet_v3(setting: list, last_channel: int) -> str:
    lines = ["conv(16,k=3,s=2,p=1,bias=false), bn, hardswish"]
    lines += [_v3_block(*cfg) for cfg in setting]
    lines.append(f"conv({6 * setting[-1][3]},k=1,bias=false), bn, hardswish")
    lines.append(f"gap, flatten, fc({last_channel}), hardswish, dropout(0.2), fc(1000)")
    return "\n".join(lines)


def _mnas_block(c_in: int, out: int, k: int, s: int, t: int) -> str:
    mid = c_in * t
    return block([f"conv({mid},k=1,bias=false), bn, relu",
                  f"dwconv(k={k},s={s},p={k // 2},bias=false), bn, relu",
                  f"conv({out},k=1,bias=false), bn"], s == 1 and c_in == out)


def mnasnet1_0() -> str:
    lines = ["conv(32,k=3,s=2,p=1,bias=false), bn, relu",
             "dwconv(k=3,p=1,bias=false), bn, relu, conv(16,k=1,bias=false), bn"]
    c_in = 16
    # (out, kernel, stride, expansion, repeats) per stack, from torchvision's MNASNet
    for out, k, s, t, n in ((24, 3, 2, 3, 3), (40, 5, 2, 3, 3), (80, 5, 2, 6, 3),
                            (96, 3, 1, 6, 2), (192, 5, 2, 6, 4), (320, 3, 1, 6, 1)):
        for i in range(n):
            lines.append(_mnas_block(c_in, out, k, s if i == 0 else 1, t))
            c_in = out
    lines.append("conv(1280,k=1,bias=false), bn, relu, gap, flatten, dropout(0.2), fc(1000)")
    return "\n".join(lines)


FAMILY = "MobileNet"
ENTRIES = (
    ZooEntry("mobilenet_v3_large", "3x224x224", mobilenet_v3(V3_LARGE, 1280),
             "MobileNetV3-Large, torchvision layout", FAMILY),
    ZooEntry("mobilenet_v3_small", "3x224x224", mobilenet_v3(V3_SMALL, 1024),
             "MobileNetV3-Small, torchvision layout", FAMILY),
    ZooEntry("mnasnet1_0", "3x224x224", mnasnet1_0(),
             "MNASNet 1.0, torchvision layout", "MNASNet"),
)
