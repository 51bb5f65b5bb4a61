"""The classic networks: LeNet-5, AlexNet, VGG-16, the ResNet family, MobileNetV2, and
the course homework's blocks."""

from __future__ import annotations

from .entry import ZooEntry


def _vgg(config: list, bn: bool = False) -> str:
    conv = "conv({},k=3,p=1), bn, relu" if bn else "conv({},k=3,p=1), relu"
    layers = [conv.format(v) if v != "M" else "maxpool(2)" for v in config]
    return ", ".join(layers) + (", adaptiveavgpool(7), flatten, fc(4096), relu, dropout(0.5), "
                                "fc(4096), relu, dropout(0.5), fc(1000)")


def _resnet(block: str, counts: list[int], groups: int = 1, width_per_group: int = 64) -> str:
    """torchvision's ResNet family: a bottleneck's 3x3 width is planes * width_per_group / 64
    * groups, and its output planes * 4 (ResNeXt and Wide ResNet change only the width)."""
    stages = []
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
        if block == "basic":
            args = f"{planes}"
        else:
            width = planes * width_per_group // 64 * groups
            args = f"{width}" + (f", expansion={planes * 4 // width}" if width != planes else "")
            args += f", groups={groups}" if groups != 1 else ""
        first = f"{block}({args}, s=2)" if i else f"{block}({args})"
        stages.append(first + (f", {block}({args})*{n - 1}" if n > 1 else ""))
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


ENTRIES = (
    ZooEntry("lenet5", "3x32x32",
             "conv(6,k=5), relu, maxpool(2), conv(16,k=5), relu, maxpool(2), flatten, "
             "fc(120), relu, fc(84), relu, fc(10)",
             "LeNet-5 as in the convolutional-networks homework, problem 4 (ReLU, max "
             "pooling), 10 classes",
             family="LeNet"),
    ZooEntry("alexnet", "3x224x224",
             "conv(64,k=11,s=4,p=2), relu, maxpool(3,s=2), conv(192,k=5,p=2), relu, "
             "maxpool(3,s=2), conv(384,k=3,p=1), relu, conv(256,k=3,p=1), relu, "
             "conv(256,k=3,p=1), relu, maxpool(3,s=2), adaptiveavgpool(6), flatten, "
             "dropout(0.5), fc(4096), relu, dropout(0.5), fc(4096), relu, fc(1000)",
             "AlexNet, torchvision layout (one tower)",
             family="AlexNet"),
    ZooEntry("vgg16", "3x224x224",
             _vgg([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                   512, 512, 512, "M"]),
             "VGG-16 (configuration D), torchvision layout, no batch norm",
             family="VGG"),
    ZooEntry("vgg16_bn", "3x224x224",
             _vgg([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                   512, 512, 512, "M"], bn=True),
             "VGG-16 with batch norm after every conv, torchvision layout",
             family="VGG"),
    ZooEntry("resnet18", "3x224x224", _resnet("basic", [2, 2, 2, 2]),
             "ResNet-18, torchvision layout",
             family="ResNet"),
    ZooEntry("resnet34", "3x224x224", _resnet("basic", [3, 4, 6, 3]),
             "ResNet-34, torchvision layout",
             family="ResNet"),
    ZooEntry("resnet50", "3x224x224", _resnet("bottleneck", [3, 4, 6, 3]),
             "ResNet-50 v1.5 (stride on the 3x3 conv), torchvision layout",
             family="ResNet"),
    ZooEntry("resnet101", "3x224x224", _resnet("bottleneck", [3, 4, 23, 3]),
             "ResNet-101 v1.5 (stride on the 3x3 conv), torchvision layout",
             family="ResNet"),
    ZooEntry("resnext50_32x4d", "3x224x224",
             _resnet("bottleneck", [3, 4, 6, 3], groups=32, width_per_group=4),
             "ResNeXt-50 32x4d: ResNet-50 with 32 groups of 4 channels in each 3x3 "
             "(width twice ResNet-50's), torchvision layout",
             family="ResNet"),
    ZooEntry("wide_resnet50_2", "3x224x224",
             _resnet("bottleneck", [3, 4, 6, 3], width_per_group=128),
             "Wide ResNet-50-2: ResNet-50 with every 3x3 twice as wide, torchvision layout",
             family="ResNet"),
    ZooEntry("mobilenet_v2", "3x224x224", _mobilenet_v2(),
             "MobileNetV2 (width 1.0), torchvision layout",
             family="MobileNet"),
    ZooEntry("two_conv_block", "128x64x64",
             "conv(256,k=3,s=2,p=1,bias=false), conv(512,k=3,p=1,bias=false)",
             "two 3x3 convs on a 64x64x128 input, padding 1, no bias (the "
             "convolutional-networks homework, problem 1)",
             family="course homework"),
    ZooEntry("standard_block", "32x56x56",
             "residual(conv(32,k=3,p=1), bn, relu, conv(32,k=3,p=1), bn)",
             "standard residual block (convs with bias), 18,624 params (the "
             "backpropagation homework, problem 3)",
             family="course homework"),
    ZooEntry("bottleneck_block", "128x56x56",
             "residual(conv(32,k=1), bn, relu, conv(32,k=3,p=1), bn, relu, conv(128,k=1), bn)",
             "bottleneck residual block (convs with bias), 17,984 params (the "
             "backpropagation homework, problem 3)",
             family="course homework"),
)
