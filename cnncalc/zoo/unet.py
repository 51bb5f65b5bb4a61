"""U-Net for segmentation: an encoder whose tensors are saved and concatenated onto the
decoder at the same size (the skip connections)."""

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
             "U-Net (Ronneberger et al.: 1 input channel, 2 classes) with padded 3x3 convs "
             "and batch norm, as milesial/Pytorch-UNet with transposed-conv upsampling; "
             "sizes must divide by 16 for the skips to meet", family="U-Net"),
)
