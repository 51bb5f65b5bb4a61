"""U-Net for segmentation: an encoder whose tensors are saved and concatenated onto the
decoder at the same size (the skip connections).

Laid out as the common PyTorch U-Net (milesial/Pytorch-UNet, ``bilinear=False``): widths
64-1024, 3x3 convolutions padded by 1 without bias, each followed by batch norm and relu,
2x2 max pooling down, 2x2 stride-2 transposed convolutions up, the skip concatenated
before the upsampled tensor, a 1x1 head to 2 classes. The input is Ronneberger et al.'s
setting, 1 channel, at 256x256: with padded convolutions the skips meet only at sizes
that divide by 16 (572 does not), so closed forms are asked for as ``1x16Hx16W``.
"""

from __future__ import annotations

from .entry import ZooEntry


def _double_conv(out: int) -> str:
    """Two 3x3 convolutions, padded (so sizes stay), each with batch norm and relu."""
    conv = f"conv({out},k=3,p=1,bias=false), bn, relu"
    return f"{conv}, {conv}"


def _unet(widths: tuple[int, ...], classes: int) -> str:
    *encoder, bottom = widths
    layers = []
    for i, w in enumerate(encoder, 1):  # down: convolve, keep the tensor, halve the size
        layers += [_double_conv(w), f"save(e{i})", "maxpool(2)"]
    layers.append(_double_conv(bottom))
    for i, w in reversed(list(enumerate(encoder, 1))):  # up: double the size, join the skip
        layers += [f"deconv({w},k=2,s=2)", f"concat(e{i}, identity)", _double_conv(w)]
    layers.append(f"conv({classes},k=1)")
    return ", ".join(layers)


ENTRIES = (
    ZooEntry("unet", "1x256x256", _unet((64, 128, 256, 512, 1024), 2),
             "U-Net, 1 channel in, 2 classes, padded convs + bn (milesial/Pytorch-UNet); "
             "symbolic: --input 1x16Hx16W", family="U-Net"),
)
