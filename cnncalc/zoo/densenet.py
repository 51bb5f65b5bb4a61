"""DenseNet-121: every layer's output is concatenated onto everything before it."""

from __future__ import annotations

from .entry import ZooEntry

GROWTH = 32  # channels each dense layer adds
BN_SIZE = 4  # the bottleneck 1x1 conv widens to BN_SIZE * GROWTH


def _dense_layer() -> str:
    """torchvision's ``_DenseLayer``: its new features joined after the ones flowing in."""
    new = (f"[bn, relu, conv({BN_SIZE * GROWTH},k=1,bias=false), "
           f"bn, relu, conv({GROWTH},k=3,p=1,bias=false)]")
    return f"concat(identity, {new})"


def _densenet(blocks: tuple[int, ...], init: int = 64) -> str:
    layers = [f"conv({init},k=7,s=2,p=3,bias=false), bn, relu, maxpool(3,s=2,p=1)"]
    channels = init
    for i, n in enumerate(blocks):
        layers.append(f"{_dense_layer()}*{n}")
        channels += n * GROWTH
        if i < len(blocks) - 1:  # a transition halves channels and size
            channels //= 2
            layers.append(f"bn, relu, conv({channels},k=1,bias=false), avgpool(2)")
    layers.append("bn, relu, gap, flatten, fc(1000)")
    return ", ".join(layers)


ENTRIES = (
    ZooEntry("densenet121", "3x224x224", _densenet((6, 12, 24, 16)),
             "DenseNet-121 (growth 32, bottleneck 4x), torchvision layout", family="DenseNet"),
)
