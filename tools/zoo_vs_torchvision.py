"""Every zoo network against torchvision's own definition: parameters (``numel``) and
multiply-adds (``FlopCounterMode``, 2 FLOPs a multiply-add) on the meta device.

A development check, not part of the test suite (which stays free of torchvision and
compares the zoo with hand-written torch models instead)::

    pip install --no-deps "torchvision==0.28.*"
    python tools/zoo_vs_torchvision.py

torchvision's C++ operators (detection ops, unused by these models) may fail to load
against a CPU build of torch; their registration is then skipped, which leaves the
pure-Python model definitions working.
"""

from __future__ import annotations

import sys

import torch
import torch.library
from torch.utils.flop_counter import FlopCounterMode

import cnncalc
from cnncalc.zoo import MODELS

# zoo name -> (torchvision builder name, keyword arguments): the inference networks
TORCHVISION = {
    "alexnet": ("alexnet", {}), "vgg16": ("vgg16", {}), "vgg16_bn": ("vgg16_bn", {}),
    "resnet18": ("resnet18", {}), "resnet34": ("resnet34", {}), "resnet50": ("resnet50", {}),
    "resnet101": ("resnet101", {}), "resnext50_32x4d": ("resnext50_32x4d", {}),
    "wide_resnet50_2": ("wide_resnet50_2", {}), "mobilenet_v2": ("mobilenet_v2", {}),
    "googlenet": ("googlenet", {"aux_logits": False, "init_weights": False}),
    "inception_v3": ("inception_v3", {"aux_logits": False, "init_weights": False}),
    "densenet121": ("densenet121", {}), "squeezenet1_0": ("squeezenet1_0", {}),
    "squeezenet1_1": ("squeezenet1_1", {}), "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", {}),
    "mobilenet_v3_large": ("mobilenet_v3_large", {}),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}), "mnasnet1_0": ("mnasnet1_0", {}),
    "efficientnet_b0": ("efficientnet_b0", {}), "efficientnet_v2_s": ("efficientnet_v2_s", {}),
    "convnext_tiny": ("convnext_tiny", {}), "regnet_x_400mf": ("regnet_x_400mf", {}),
    "regnet_y_400mf": ("regnet_y_400mf", {}),
}


def import_torchvision():
    try:
        import torchvision.models as models
        return models
    except (RuntimeError, OSError):  # its C++ ops would not load: skip registering them
        sys.modules.pop("torchvision", None)
    real_fake, real_impl = torch.library.register_fake, torch.library.Library.impl

    def fake(*args, **kwargs):
        try:
            return real_fake(*args, **kwargs)
        except Exception:
            return lambda f: f

    def impl(self, *args, **kwargs):
        try:
            return real_impl(self, *args, **kwargs)
        except Exception:
            return None

    torch.library.register_fake, torch.library.Library.impl = fake, impl
    try:
        import torchvision.models as models
    finally:
        torch.library.register_fake, torch.library.Library.impl = real_fake, real_impl
    return models


def main() -> int:
    models = import_torchvision()
    failed = 0
    print(f"{'network':20} {'params':>12} {'MACs':>15}  torchvision")
    for name, (builder, kwargs) in TORCHVISION.items():
        entry = MODELS[name]
        try:
            with torch.device("meta"):
                model = getattr(models, builder)(weights=None, **kwargs).eval()
        except NotImplementedError:  # RegNet computes its widths with tensors: on the CPU
            model = getattr(models, builder)(weights=None, **kwargs).eval().to("meta")
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, *map(int, entry.input.split("x")), device="meta"))
        params, macs = sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2
        a = cnncalc.analyze(model=name)
        same = a.total["params"] == params and a.total["macs"] == macs
        failed += not same
        print(f"{name:20} {int(a.total['params']):>12,} {int(a.total['macs']):>15,}  "
              + ("equal" if same else f"DIFFERENT: {params:,} params, {macs:,} MACs"))
    unchecked = sorted(set(MODELS) - set(TORCHVISION))
    print(f"not in torchvision: {', '.join(unchecked)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
