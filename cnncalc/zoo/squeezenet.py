"""SqueezeNet 1.0 and 1.1: fire modules, a 1x1 squeeze then 1x1 and 3x3 expands
concatenated, and a convolutional classifier (no fully connected layer)."""

from __future__ import annotations

from .entry import ZooEntry

_POOL = "maxpool(3,s=2,ceil_mode=true)"


def _fire(n: int, squeeze: int, expand: int) -> str:
    """torchvision's ``Fire`` (``fire2`` ... ``fire9`` as in the paper); its two expands
    are equally wide in every SqueezeNet."""
    return (f"conv({squeeze},k=1), relu, "
            f"concat([conv({expand},k=1), relu], [conv({expand},k=3,p=1), relu], name=fire{n})")


def _squeezenet(stem: str, plan: list) -> str:
    """``plan``: ``(squeeze, expand)`` per fire module, ``"M"`` for a max pool."""
    layers, n = [stem, "relu", _POOL], 2
    for item in plan:
        if item == "M":
            layers.append(_POOL)
        else:
            layers.append(_fire(n, *item))
            n += 1
    layers.append("dropout(0.5), conv(1000,k=1), relu, gap, flatten")
    return ", ".join(layers)


ENTRIES = (
    ZooEntry("squeezenet1_0", "3x224x224",
             _squeezenet("conv(96,k=7,s=2)", [(16, 64), (16, 64), (32, 128), "M", (32, 128),
                                               (48, 192), (48, 192), (64, 256), "M",
                                               (64, 256)]),
             "SqueezeNet 1.0, torchvision layout", family="SqueezeNet"),
    ZooEntry("squeezenet1_1", "3x224x224",
             _squeezenet("conv(64,k=3,s=2)", [(16, 64), (16, 64), "M", (32, 128), (32, 128),
                                               "M", (48, 192), (48, 192), (64, 256),
                                               (64, 256)]),
             "SqueezeNet 1.1 (2.4x fewer MACs than 1.0), torchvision layout",
             family="SqueezeNet"),
)
