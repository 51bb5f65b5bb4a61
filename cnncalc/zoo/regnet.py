"""RegNetX-400MF and RegNetY-400MF, laid out as torchvision defines them.

Every block is a residual bottleneck with bottleneck ratio 1: 1x1 conv, 3x3 grouped conv
(group width 16 for X, 8 for Y) carrying the stage's stride, (Y: squeeze-and-excitation
to round(0.25 * block input channels)), 1x1 conv; the first block of a stage projects
its shortcut with a strided 1x1 conv and batch norm (``residual``'s automatic
projection), and a ReLU follows the addition.
"""

from __future__ import annotations

from .entry import ZooEntry


def _block(c_in: int, width: int, stride: int, group_width: int, se: bool) -> str:
    layers = [f"conv({width},k=1,bias=false), bn, relu",
              f"conv({width},k=3,s={stride},p=1,groups={width // group_width},bias=false), "
              "bn, relu"]
    if se:
        layers.append(f"se({int(round(0.25 * c_in))})")
    layers.append(f"conv({width},k=1,bias=false), bn")
    return f"residual({', '.join(layers)}), relu"


def regnet(stages: list[tuple[int, int]], group_width: int, se: bool) -> str:
    """``stages``: (width, depth), the widths and depths torchvision's
    ``BlockParams.from_init_params`` derives; every stage starts with stride 2."""
    lines = ["conv(32,k=3,s=2,p=1,bias=false), bn, relu"]
    c_in = 32
    for width, depth in stages:
        for i in range(depth):
            lines.append(_block(c_in, width, 2 if i == 0 else 1, group_width, se))
            c_in = width
    lines.append("gap, flatten, fc(1000)")
    return "\n".join(lines)


FAMILY = "RegNet"
ENTRIES = (
    # from_init_params(depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16)
    ZooEntry("regnet_x_400mf", "3x224x224",
             regnet([(32, 1), (64, 2), (160, 7), (400, 12)], 16, se=False),
             "RegNetX-400MF, torchvision layout", FAMILY),
    # from_init_params(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25)
    ZooEntry("regnet_y_400mf", "3x224x224",
             regnet([(48, 1), (104, 3), (208, 6), (440, 6)], 8, se=True),
             "RegNetY-400MF, torchvision layout", FAMILY),
)
