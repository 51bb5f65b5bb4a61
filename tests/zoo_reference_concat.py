"""Independent PyTorch reference for the zoo's branching networks.

Written by hand in plain ``torch.nn`` following torchvision's definitions (torchvision
itself is deliberately not used), plus the common PyTorch U-Net (milesial/Pytorch-UNet
with transposed-conv upsampling). The auxiliary heads of GoogLeNet and Inception-v3 are
built on request only, to check the published counts that include them.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicConv2d(nn.Sequential):
    """torchvision's ``BasicConv2d``: conv without bias, batch norm (eps 0.001), relu."""

    def __init__(self, cin: int, cout: int, **kwargs):
        super().__init__(nn.Conv2d(cin, cout, bias=False, **kwargs),
                         nn.BatchNorm2d(cout, eps=0.001), nn.ReLU())


class Concat(nn.Module):
    """Runs every branch on the same input and concatenates them on channels."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


# -- GoogLeNet ------------------------------------------------------------------------

def googlenet_inception(cin, c1, c3r, c3, c5r, c5, pool) -> nn.Module:
    """torchvision's ``Inception`` (its "5x5" branch has a 3x3 kernel, as torchvision's)."""
    return Concat(
        BasicConv2d(cin, c1, kernel_size=1),
        nn.Sequential(BasicConv2d(cin, c3r, kernel_size=1),
                      BasicConv2d(c3r, c3, kernel_size=3, padding=1)),
        nn.Sequential(BasicConv2d(cin, c5r, kernel_size=1),
                      BasicConv2d(c5r, c5, kernel_size=3, padding=1)),
        nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                      BasicConv2d(cin, pool, kernel_size=1)),
    )


def googlenet() -> nn.Module:
    """torchvision ``googlenet(aux_logits=False)``: the network that runs at inference."""
    return nn.Sequential(
        BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
        BasicConv2d(64, 64, kernel_size=1),
        BasicConv2d(64, 192, kernel_size=3, padding=1),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
        googlenet_inception(192, 64, 96, 128, 16, 32, 32),
        googlenet_inception(256, 128, 128, 192, 32, 96, 64),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
        googlenet_inception(480, 192, 96, 208, 16, 48, 64),
        googlenet_inception(512, 160, 112, 224, 24, 64, 64),
        googlenet_inception(512, 128, 128, 256, 24, 64, 64),
        googlenet_inception(512, 112, 144, 288, 32, 64, 64),
        googlenet_inception(528, 256, 160, 320, 32, 128, 128),
        nn.MaxPool2d(2, stride=2, ceil_mode=True),
        googlenet_inception(832, 256, 160, 320, 32, 128, 128),
        googlenet_inception(832, 384, 192, 384, 48, 128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1024, 1000),
    )


def googlenet_aux_heads() -> nn.Module:
    """torchvision's two ``InceptionAux`` heads (after inception4a and 4d), training only."""
    def head(cin):
        return nn.Sequential(nn.AdaptiveAvgPool2d(4), BasicConv2d(cin, 128, kernel_size=1),
                             nn.Flatten(), nn.Linear(2048, 1024), nn.ReLU(),
                             nn.Dropout(0.7), nn.Linear(1024, 1000))
    return nn.ModuleList([head(512), head(528)])


# -- Inception-v3 ---------------------------------------------------------------------

def _pool_branch(cin, cout) -> nn.Module:
    return nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1),
                         BasicConv2d(cin, cout, kernel_size=1))


def inception_a(cin, pool) -> nn.Module:
    return Concat(
        BasicConv2d(cin, 64, kernel_size=1),
        nn.Sequential(BasicConv2d(cin, 48, kernel_size=1),
                      BasicConv2d(48, 64, kernel_size=5, padding=2)),
        nn.Sequential(BasicConv2d(cin, 64, kernel_size=1),
                      BasicConv2d(64, 96, kernel_size=3, padding=1),
                      BasicConv2d(96, 96, kernel_size=3, padding=1)),
        _pool_branch(cin, pool),
    )


def inception_b(cin) -> nn.Module:
    return Concat(
        BasicConv2d(cin, 384, kernel_size=3, stride=2),
        nn.Sequential(BasicConv2d(cin, 64, kernel_size=1),
                      BasicConv2d(64, 96, kernel_size=3, padding=1),
                      BasicConv2d(96, 96, kernel_size=3, stride=2)),
        nn.MaxPool2d(3, stride=2),
    )


def _row(cin, cout):
    return BasicConv2d(cin, cout, kernel_size=(1, 7), padding=(0, 3))


def _col(cin, cout):
    return BasicConv2d(cin, cout, kernel_size=(7, 1), padding=(3, 0))


def inception_c(cin, c7) -> nn.Module:
    return Concat(
        BasicConv2d(cin, 192, kernel_size=1),
        nn.Sequential(BasicConv2d(cin, c7, kernel_size=1), _row(c7, c7), _col(c7, 192)),
        nn.Sequential(BasicConv2d(cin, c7, kernel_size=1), _col(c7, c7), _row(c7, c7),
                      _col(c7, c7), _row(c7, 192)),
        _pool_branch(cin, 192),
    )


def inception_d(cin) -> nn.Module:
    return Concat(
        nn.Sequential(BasicConv2d(cin, 192, kernel_size=1),
                      BasicConv2d(192, 320, kernel_size=3, stride=2)),
        nn.Sequential(BasicConv2d(cin, 192, kernel_size=1), _row(192, 192), _col(192, 192),
                      BasicConv2d(192, 192, kernel_size=3, stride=2)),
        nn.MaxPool2d(3, stride=2),
    )


def _fan_1x3_3x1(cin) -> nn.Module:
    return Concat(BasicConv2d(cin, 384, kernel_size=(1, 3), padding=(0, 1)),
                  BasicConv2d(cin, 384, kernel_size=(3, 1), padding=(1, 0)))


def inception_e(cin) -> nn.Module:
    return Concat(
        BasicConv2d(cin, 320, kernel_size=1),
        nn.Sequential(BasicConv2d(cin, 384, kernel_size=1), _fan_1x3_3x1(384)),
        nn.Sequential(BasicConv2d(cin, 448, kernel_size=1),
                      BasicConv2d(448, 384, kernel_size=3, padding=1), _fan_1x3_3x1(384)),
        _pool_branch(cin, 192),
    )


def inception_v3() -> nn.Module:
    """torchvision ``inception_v3(aux_logits=False)``."""
    return nn.Sequential(
        BasicConv2d(3, 32, kernel_size=3, stride=2),
        BasicConv2d(32, 32, kernel_size=3),
        BasicConv2d(32, 64, kernel_size=3, padding=1),
        nn.MaxPool2d(3, stride=2),
        BasicConv2d(64, 80, kernel_size=1),
        BasicConv2d(80, 192, kernel_size=3),
        nn.MaxPool2d(3, stride=2),
        inception_a(192, 32), inception_a(256, 64), inception_a(288, 64),
        inception_b(288),
        inception_c(768, 128), inception_c(768, 160), inception_c(768, 160),
        inception_c(768, 192),
        inception_d(768), inception_e(1280), inception_e(2048),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(2048, 1000),
    )


def inception_v3_aux_head() -> nn.Module:
    """torchvision's ``InceptionAux`` on Mixed_6e's 768 channels, training only."""
    return nn.Sequential(nn.AvgPool2d(5, stride=3), BasicConv2d(768, 128, kernel_size=1),
                         BasicConv2d(128, 768, kernel_size=5), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(768, 1000))


# -- DenseNet-121 ---------------------------------------------------------------------

class DenseLayer(nn.Module):
    """torchvision's ``_DenseLayer``: bn, relu, 1x1 conv to 128, bn, relu, 3x3 conv to 32;
    the 32 new channels are concatenated after the input's."""

    def __init__(self, cin: int, growth: int = 32, bn_size: int = 4):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, bn_size * growth, 1, bias=False),
            nn.BatchNorm2d(bn_size * growth), nn.ReLU(),
            nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


def densenet121(growth: int = 32, blocks=(6, 12, 24, 16), init: int = 64) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, init, 7, stride=2, padding=3, bias=False),
                               nn.BatchNorm2d(init), nn.ReLU(),
                               nn.MaxPool2d(3, stride=2, padding=1)]
    c = init
    for i, n in enumerate(blocks):
        for _ in range(n):
            layers.append(DenseLayer(c, growth))
            c += growth
        if i < len(blocks) - 1:
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False),
                       nn.AvgPool2d(2, stride=2)]
            c //= 2
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(c, 1000)]
    return nn.Sequential(*layers)


# -- SqueezeNet -----------------------------------------------------------------------

def fire(cin, squeeze, e1, e3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, squeeze, 1), nn.ReLU(),
        Concat(nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU()),
               nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU())))


def _squeezenet(features: list[nn.Module]) -> nn.Module:
    return nn.Sequential(*features, nn.Dropout(0.5), nn.Conv2d(512, 1000, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def squeezenet1_0() -> nn.Module:
    pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    return _squeezenet([
        nn.Conv2d(3, 96, 7, stride=2), nn.ReLU(), pool,
        fire(96, 16, 64, 64), fire(128, 16, 64, 64), fire(128, 32, 128, 128), pool,
        fire(256, 32, 128, 128), fire(256, 48, 192, 192), fire(384, 48, 192, 192),
        fire(384, 64, 256, 256), pool, fire(512, 64, 256, 256)])


def squeezenet1_1() -> nn.Module:
    pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    return _squeezenet([
        nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(), pool,
        fire(64, 16, 64, 64), fire(128, 16, 64, 64), pool,
        fire(128, 32, 128, 128), fire(256, 32, 128, 128), pool,
        fire(256, 48, 192, 192), fire(384, 48, 192, 192), fire(384, 64, 256, 256),
        fire(512, 64, 256, 256)])


# -- ShuffleNetV2 ---------------------------------------------------------------------

def _dw(c, stride):
    return [nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm2d(c)]


def _pw(cin, cout):
    return [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class ShuffleUnit(nn.Module):
    """torchvision's ShuffleNetV2 ``InvertedResidual``."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(*_dw(cin, stride), *_pw(cin, half))
        self.branch2 = nn.Sequential(*_pw(cin if stride > 1 else half, half),
                                     *_dw(half, stride), *_pw(half, half))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def shufflenet_v2_x1_0(repeats=(4, 8, 4), widths=(24, 116, 232, 464, 1024)) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 2, 1, bias=False),
                               nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    c = widths[0]
    for n, out in zip(repeats, widths[1:]):
        layers += [ShuffleUnit(c, out, 2)] + [ShuffleUnit(out, out, 1) for _ in range(n - 1)]
        c = out
    layers += [*_pw(c, widths[-1]), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(widths[-1], 1000)]
    return nn.Sequential(*layers)


# -- U-Net ----------------------------------------------------------------------------

def double_conv(cin, cout) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    """milesial/Pytorch-UNet ``UNet(n_channels, n_classes, bilinear=False)``."""

    def __init__(self, n_channels: int = 1, n_classes: int = 2,
                 widths=(64, 128, 256, 512, 1024)):
        super().__init__()
        self.down = nn.ModuleList()
        c = n_channels
        for w in widths:
            self.down.append(double_conv(c, w))
            c = w
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c, c // 2, 2, stride=2))
            self.up_conv.append(double_conv(c, w))
            c = w
        self.head = nn.Conv2d(c, n_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = nn.functional.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, conv in zip(self.up, self.up_conv):
            x = conv(torch.cat([skips.pop(), up(x)], 1))
        return self.head(x)


def unet() -> nn.Module:
    return UNet()
