"""EfficientNet-B0 and EfficientNetV2-S, laid out as torchvision defines them.

An MBConv block is a 1x1 expansion, a kxk depthwise conv, squeeze-and-excitation
(squeeze = block input channels // 4, SiLU inside, sigmoid gate) and a 1x1 projection;
V2's Fused-MBConv replaces expansion and depthwise conv by one kxk conv. A block with
a skip drops its residual branch with probability 0.2 * (block index) / (block count)
(``droppath``, stochastic depth: no cost at inference, written for completeness).
"""

from __future__ import annotations

from fractions import Fraction

from .entry import ZooEntry
from .text import block, make_divisible, probability


def _conv_bn_silu(out: int, k: int, s: int = 1) -> str:
    """torchvision's Conv2dNormActivation with SiLU: padding (k - 1) // 2, no bias."""
    window = f",k={k},s={s},p={(k - 1) // 2}" if k > 1 else ",k=1"
    return f"conv({out}{window},bias=false), bn, silu"


def _mbconv(c_in: int, out: int, k: int, s: int, t: int, fused: bool, drop: Fraction) -> str:
    expanded = make_divisible(c_in * t)
    skip = s == 1 and c_in == out
    if fused:
        if expanded != c_in:
            layers = [_conv_bn_silu(expanded, k, s), f"conv({out},k=1,bias=false), bn"]
        else:  # expansion 1: the kxk conv goes straight to the output channels
            layers = [_conv_bn_silu(out, k, s)]
    else:
        layers = [_conv_bn_silu(expanded, 1)] if expanded != c_in else []
        layers.append(f"dwconv(k={k},s={s},p={(k - 1) // 2},bias=false), bn, silu")
        layers.append(f"se({max(1, c_in // 4)}, act=silu)")
        layers.append(f"conv({out},k=1,bias=false), bn")
    if skip:
        layers.append(f"droppath({probability(drop)})")
    return block(layers, skip)


def efficientnet(stem: int, stages: list, last: int, drop: float) -> str:
    """``stages``: (fused, expansion, kernel, stride, in, out, repeats) rows, as
    torchvision's MBConvConfig / FusedMBConvConfig lists."""
    lines = [_conv_bn_silu(stem, 3, 2)]
    total = sum(n for *_, n in stages)
    index = 0
    for fused, t, k, s, c_in, out, n in stages:
        for i in range(n):
            p = Fraction(str(drop)) * index / total
            lines.append(_mbconv(c_in if i == 0 else out, out, k, s if i == 0 else 1, t,
                                 fused, p))
            index += 1
    lines.append(_conv_bn_silu(last, 1))
    lines.append("gap, flatten, dropout(0.2), fc(1000)")
    return "\n".join(lines)


B0 = [(False, 1, 3, 1, 32, 16, 1), (False, 6, 3, 2, 16, 24, 2), (False, 6, 5, 2, 24, 40, 2),
      (False, 6, 3, 2, 40, 80, 3), (False, 6, 5, 1, 80, 112, 3), (False, 6, 5, 2, 112, 192, 4),
      (False, 6, 3, 1, 192, 320, 1)]
V2_S = [(True, 1, 3, 1, 24, 24, 2), (True, 4, 3, 2, 24, 48, 4), (True, 4, 3, 2, 48, 64, 4),
        (False, 4, 3, 2, 64, 128, 6), (False, 6, 3, 1, 128, 160, 9),
        (False, 6, 3, 2, 160, 256, 15)]

FAMILY = "EfficientNet"
ENTRIES = (
    ZooEntry("efficientnet_b0", "3x224x224", efficientnet(32, B0, 1280, 0.2),
             "EfficientNet-B0, torchvision layout", FAMILY),
    ZooEntry("efficientnet_v2_s", "3x384x384", efficientnet(24, V2_S, 1280, 0.2),
             "EfficientNetV2-S, torchvision layout, at its 384x384 eval size", FAMILY),
)
