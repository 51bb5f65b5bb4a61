"""Hand-written ``torch.nn`` references for the mobile-era zoo networks.

MobileNetV3 (large, small), MNASNet 1.0, EfficientNet-B0, EfficientNetV2-S,
ConvNeXt-Tiny and RegNetX/Y-400MF, written out in plain PyTorch following
torchvision's layouts (torchvision itself is deliberately not used): its
``SqueezeExcitation``, ``StochasticDepth``, ``LayerNorm2d`` and channels-last
``nn.Linear`` MLP (ConvNeXt) included, so that the zoo's 1x1-conv rewriting is
checked against the real thing.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvNormAct(nn.Sequential):
    """torchvision's Conv2dNormActivation: conv (no bias before a norm), BN, activation."""

    def __init__(self, c_in, c_out, k=3, stride=1, groups=1, act=nn.ReLU):
        layers = [nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(c_out)]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """gate = scale_act(fc2(act(fc1(avgpool(x))))); returns gate * x."""

    def __init__(self, channels, squeeze, act=nn.ReLU, gate=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = act()
        self.scale_activation = gate()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class StochasticDepth(nn.Module):
    """Drops the whole residual branch of a sample with probability ``p`` ("row" mode)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x * noise.bernoulli_(survival).div_(survival)


# -- MobileNetV3 ----------------------------------------------------------------------------

class V3Block(nn.Module):
    def __init__(self, c_in, k, expanded, c_out, use_se, act, stride):
        super().__init__()
        self.use_res = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(ConvNormAct(c_in, expanded, 1, act=act))
        layers.append(ConvNormAct(expanded, expanded, k, stride, groups=expanded, act=act))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4),
                                            gate=nn.Hardsigmoid))
        layers.append(ConvNormAct(expanded, c_out, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res else y


RE, HS = nn.ReLU, nn.Hardswish
V3_LARGE = [(16, 3, 16, 16, False, RE, 1), (16, 3, 64, 24, False, RE, 2),
            (24, 3, 72, 24, False, RE, 1), (24, 5, 72, 40, True, RE, 2),
            (40, 5, 120, 40, True, RE, 1), (40, 5, 120, 40, True, RE, 1),
            (40, 3, 240, 80, False, HS, 2), (80, 3, 200, 80, False, HS, 1),
            (80, 3, 184, 80, False, HS, 1), (80, 3, 184, 80, False, HS, 1),
            (80, 3, 480, 112, True, HS, 1), (112, 3, 672, 112, True, HS, 1),
            (112, 5, 672, 160, True, HS, 2), (160, 5, 960, 160, True, HS, 1),
            (160, 5, 960, 160, True, HS, 1)]
V3_SMALL = [(16, 3, 16, 16, True, RE, 2), (16, 3, 72, 24, False, RE, 2),
            (24, 3, 88, 24, False, RE, 1), (24, 5, 96, 40, True, HS, 2),
            (40, 5, 240, 40, True, HS, 1), (40, 5, 240, 40, True, HS, 1),
            (40, 5, 120, 48, True, HS, 1), (48, 5, 144, 48, True, HS, 1),
            (48, 5, 288, 96, True, HS, 2), (96, 5, 576, 96, True, HS, 1),
            (96, 5, 576, 96, True, HS, 1)]


class MobileNetV3(nn.Module):
    def __init__(self, setting, last_channel, num_classes=1000):
        super().__init__()
        layers: list[nn.Module] = [ConvNormAct(3, setting[0][0], 3, 2, act=nn.Hardswish)]
        layers += [V3Block(*cfg) for cfg in setting]
        last_conv = 6 * setting[-1][3]
        layers.append(ConvNormAct(setting[-1][3], last_conv, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(last_conv, last_channel), nn.Hardswish(),
                                        nn.Dropout(0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v3_large():
    return MobileNetV3(V3_LARGE, 1280)


def mobilenet_v3_small():
    return MobileNetV3(V3_SMALL, 1024)


# -- MNASNet 1.0 ------------------------------------------------------------------------------

class MnasBlock(nn.Module):
    def __init__(self, c_in, c_out, k, stride, t):
        super().__init__()
        mid = c_in * t
        self.apply_residual = c_in == c_out and stride == 1
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, k, padding=k // 2, stride=stride, groups=mid, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return self.layers(x) + x if self.apply_residual else self.layers(x)


def _stack(c_in, c_out, k, stride, t, repeats):
    return nn.Sequential(MnasBlock(c_in, c_out, k, stride, t),
                         *(MnasBlock(c_out, c_out, k, 1, t) for _ in range(1, repeats)))


class MNASNet(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        d = [32, 16, 24, 40, 80, 96, 192, 320]
        self.layers = nn.Sequential(
            nn.Conv2d(3, d[0], 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(d[0]),
            nn.ReLU(),
            nn.Conv2d(d[0], d[0], 3, padding=1, groups=d[0], bias=False), nn.BatchNorm2d(d[0]),
            nn.ReLU(),
            nn.Conv2d(d[0], d[1], 1, bias=False), nn.BatchNorm2d(d[1]),
            _stack(d[1], d[2], 3, 2, 3, 3), _stack(d[2], d[3], 5, 2, 3, 3),
            _stack(d[3], d[4], 5, 2, 6, 3), _stack(d[4], d[5], 3, 1, 6, 2),
            _stack(d[5], d[6], 5, 2, 6, 4), _stack(d[6], d[7], 3, 1, 6, 1),
            nn.Conv2d(d[7], 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.layers(x).mean([2, 3]))


def mnasnet1_0():
    return MNASNet()


# -- EfficientNet -----------------------------------------------------------------------------

class MBConv(nn.Module):
    def __init__(self, c_in, c_out, k, stride, t, sd_prob):
        super().__init__()
        self.use_res = stride == 1 and c_in == c_out
        expanded = make_divisible(c_in * t)
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(ConvNormAct(c_in, expanded, 1, act=nn.SiLU))
        layers += [ConvNormAct(expanded, expanded, k, stride, groups=expanded, act=nn.SiLU),
                   SqueezeExcitation(expanded, max(1, c_in // 4), act=nn.SiLU),
                   ConvNormAct(expanded, c_out, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x):
        y = self.block(x)
        return self.stochastic_depth(y) + x if self.use_res else y


class FusedMBConv(nn.Module):
    def __init__(self, c_in, c_out, k, stride, t, sd_prob):
        super().__init__()
        self.use_res = stride == 1 and c_in == c_out
        expanded = make_divisible(c_in * t)
        if expanded != c_in:
            layers = [ConvNormAct(c_in, expanded, k, stride, act=nn.SiLU),
                      ConvNormAct(expanded, c_out, 1, act=None)]
        else:
            layers = [ConvNormAct(c_in, c_out, k, stride, act=nn.SiLU)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x):
        y = self.block(x)
        return self.stochastic_depth(y) + x if self.use_res else y


class EfficientNet(nn.Module):
    """``setting``: (block class, expand ratio, kernel, stride, in, out, layers)."""

    def __init__(self, setting, last_channel, sd=0.2, num_classes=1000):
        super().__init__()
        layers: list[nn.Module] = [ConvNormAct(3, setting[0][4], 3, 2, act=nn.SiLU)]
        total = sum(cfg[-1] for cfg in setting)
        block_id = 0
        for block, t, k, s, c_in, c_out, n in setting:
            stage = []
            for i in range(n):
                stage.append(block(c_in if i == 0 else c_out, c_out, k, s if i == 0 else 1, t,
                                   sd * float(block_id) / total))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        layers.append(ConvNormAct(setting[-1][5], last_channel, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def efficientnet_b0():
    return EfficientNet([(MBConv, 1, 3, 1, 32, 16, 1), (MBConv, 6, 3, 2, 16, 24, 2),
                         (MBConv, 6, 5, 2, 24, 40, 2), (MBConv, 6, 3, 2, 40, 80, 3),
                         (MBConv, 6, 5, 1, 80, 112, 3), (MBConv, 6, 5, 2, 112, 192, 4),
                         (MBConv, 6, 3, 1, 192, 320, 1)], 4 * 320)


def efficientnet_v2_s():
    return EfficientNet([(FusedMBConv, 1, 3, 1, 24, 24, 2), (FusedMBConv, 4, 3, 2, 24, 48, 4),
                         (FusedMBConv, 4, 3, 2, 48, 64, 4), (MBConv, 4, 3, 2, 64, 128, 6),
                         (MBConv, 6, 3, 1, 128, 160, 9), (MBConv, 6, 3, 2, 160, 256, 15)],
                        1280)


# -- ConvNeXt ---------------------------------------------------------------------------------

class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim, layer_scale, sd_prob):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)  # channels last: Linear acts on channels
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))).permute(0, 3, 1, 2)
        return self.stochastic_depth(self.layer_scale * y) + x


class ConvNeXt(nn.Module):
    def __init__(self, stages, sd=0.1, num_classes=1000):
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, stages[0][0], 4, 4),
                                                 LayerNorm2d(stages[0][0], eps=1e-6))]
        total = sum(n for _, n in stages)
        block_id = 0
        for i, (dim, n) in enumerate(stages):
            blocks = []
            for _ in range(n):
                blocks.append(CNBlock(dim, 1e-6, sd * block_id / (total - 1.0)))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            if i + 1 < len(stages):
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6),
                                            nn.Conv2d(dim, stages[i + 1][0], 2, 2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = stages[-1][0]
        self.classifier = nn.Sequential(LayerNorm2d(last, eps=1e-6), nn.Flatten(1),
                                        nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


def convnext_tiny():
    return ConvNeXt([(96, 3), (192, 3), (384, 9), (768, 3)])


# -- RegNet -----------------------------------------------------------------------------------

class ResBottleneckBlock(nn.Module):
    def __init__(self, w_in, w_out, stride, group_width, se_ratio):
        super().__init__()
        self.proj = (ConvNormAct(w_in, w_out, 1, stride, act=None)
                     if w_in != w_out or stride != 1 else None)
        layers = [ConvNormAct(w_in, w_out, 1),
                  ConvNormAct(w_out, w_out, 3, stride, groups=w_out // group_width)]
        if se_ratio:
            layers.append(SqueezeExcitation(w_out, int(round(se_ratio * w_in))))
        layers.append(ConvNormAct(w_out, w_out, 1, act=None))
        self.f = nn.Sequential(*layers)
        self.activation = nn.ReLU()

    def forward(self, x):
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(shortcut + self.f(x))


class RegNet(nn.Module):
    """``stages``: (width, depth) as torchvision's BlockParams.from_init_params yields."""

    def __init__(self, stages, group_width, se_ratio=None, num_classes=1000):
        super().__init__()
        self.stem = ConvNormAct(3, 32, 3, 2)
        blocks, w_in = [], 32
        for width, depth in stages:
            for i in range(depth):
                blocks.append(ResBottleneckBlock(w_in, width, 2 if i == 0 else 1, group_width,
                                                 se_ratio))
                w_in = width
        self.trunk_output = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w_in, num_classes)

    def forward(self, x):
        x = self.avgpool(self.trunk_output(self.stem(x)))
        return self.fc(x.flatten(start_dim=1))


def regnet_x_400mf():
    return RegNet([(32, 1), (64, 2), (160, 7), (400, 12)], 16)


def regnet_y_400mf():
    return RegNet([(48, 1), (104, 3), (208, 6), (440, 6)], 8, se_ratio=0.25)


MODELS = {f.__name__: f for f in (mobilenet_v3_large, mobilenet_v3_small, mnasnet1_0,
                                  efficientnet_b0, efficientnet_v2_s, convnext_tiny,
                                  regnet_x_400mf, regnet_y_400mf)}
