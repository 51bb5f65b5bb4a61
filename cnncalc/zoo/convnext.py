"""ConvNeXt-Tiny, laid out as torchvision defines it.

A ConvNeXt block is a 7x7 depthwise conv, LayerNorm over channels, an MLP to 4x the
channels with GELU, a per-channel layer scale and stochastic depth (probability
0.1 * block index / 17) before the identity skip. torchvision runs the MLP as
``nn.Linear`` on channels-last tensors; here it is written as 1x1 convs, which have the
same parameters and multiply-adds.
"""

from __future__ import annotations

from fractions import Fraction

from .entry import ZooEntry
from .text import probability


def _block(dim: int, drop: Fraction) -> str:
    return (f"residual(dwconv(k=7,p=3), ln2d, conv({4 * dim},k=1), gelu, conv({dim},k=1), "
            f"layerscale, droppath({probability(drop)}))")


def convnext(stages: list[tuple[int, int]], drop: str = "0.1") -> str:
    """``stages``: (channels, blocks); a LayerNorm and a 2x2 stride-2 conv between them."""
    lines = [f"conv({stages[0][0]},k=4,s=4), ln2d"]
    total = sum(n for _, n in stages)
    index = 0
    for i, (dim, n) in enumerate(stages):
        if i:
            lines.append(f"ln2d, conv({dim},k=2,s=2)")
        for _ in range(n):
            lines.append(_block(dim, Fraction(drop) * index / (total - 1)))
            index += 1
    lines.append("gap, ln2d, flatten, fc(1000)")
    return "\n".join(lines)


ENTRIES = (
    ZooEntry("convnext_tiny", "3x224x224", convnext([(96, 3), (192, 3), (384, 9), (768, 3)]),
             "ConvNeXt-Tiny, torchvision layout (its MLP's Linear as 1x1 convs)", "ConvNeXt"),
)
