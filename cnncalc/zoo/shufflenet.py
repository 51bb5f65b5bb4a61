"""ShuffleNetV2: units that split the channels, convolve one half, concatenate and
shuffle the channels so the halves mix."""

from __future__ import annotations

from .entry import ZooEntry


def _pointwise(out: int) -> str:
    return f"conv({out},k=1,bias=false), bn, relu"


def _depthwise(s: int) -> str:
    stride = f",s={s}" if s != 1 else ""
    return f"dwconv(k=3{stride},p=1,bias=false), bn"


def _unit(out: int, s: int) -> str:
    """torchvision's ``InvertedResidual``. Stride 1: the first half of the channels passes
    through, the second is convolved. Stride 2: both branches convolve the whole input."""
    half = out // 2
    if s == 1:
        left = "split(2,0)"
        right = f"[split(2,1), {_pointwise(half)}, {_depthwise(1)}, {_pointwise(half)}]"
    else:
        left = f"[{_depthwise(2)}, {_pointwise(half)}]"
        right = f"[{_pointwise(half)}, {_depthwise(2)}, {_pointwise(half)}]"
    return f"concat({left}, {right}), shuffle(2)"


def _shufflenet_v2(repeats: tuple[int, ...], widths: tuple[int, ...]) -> str:
    layers = [f"conv({widths[0]},k=3,s=2,p=1,bias=false), bn, relu, maxpool(3,s=2,p=1)"]
    for n, out in zip(repeats, widths[1:]):
        layers += [_unit(out, 2)] + [_unit(out, 1)] * (n - 1)
    layers.append(f"{_pointwise(widths[-1])}, gap, flatten, fc(1000)")
    return ", ".join(layers)


ENTRIES = (
    ZooEntry("shufflenet_v2_x1_0", "3x224x224",
             _shufflenet_v2((4, 8, 4), (24, 116, 232, 464, 1024)),
             "ShuffleNetV2 x1.0, torchvision layout", family="ShuffleNet"),
)
