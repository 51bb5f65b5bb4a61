"""GoogLeNet and Inception-v3: blocks of parallel branches joined by channel concatenation.

Every convolution is torchvision's ``BasicConv2d`` (conv without bias, batch norm, relu).
The auxiliary classifiers are training-only heads and are left out: the entries count
the network that runs at inference.
"""

from __future__ import annotations

from .entry import ZooEntry


def _basic(out: int, k="1", s: int = 1, p="0") -> str:
    """torchvision's ``BasicConv2d``: conv (no bias), batch norm, relu. ``k``/``p`` may be
    pairs written ``1x7`` (height x width, as torch)."""
    stride = f",s={s}" if s != 1 else ""
    pad = f",p={p}" if str(p) != "0" else ""
    return f"conv({out},k={k}{stride}{pad},bias=false), bn, relu"


def _branch(*layers: str) -> str:
    """One branch of a concat: a layer list in brackets."""
    return "[" + ", ".join(layers) + "]"


def _concat(name: str, *branches: str) -> str:
    return f"concat({', '.join(branches)}, name={name})"


# -- GoogLeNet -------------------------------------------------------------------------

def _googlenet_block(name: str, c1: int, c3r: int, c3: int, c5r: int, c5: int,
                     pool: int) -> str:
    """torchvision's ``Inception``: 1x1 | 1x1, 3x3 | 1x1, 3x3 (its "5x5" branch uses a 3x3
    kernel, as torchvision's does) | 3x3 max pool, 1x1."""
    return _concat(name,
                   _branch(_basic(c1)),
                   _branch(_basic(c3r), _basic(c3, 3, p=1)),
                   _branch(_basic(c5r), _basic(c5, 3, p=1)),
                   _branch("maxpool(3,s=1,p=1,ceil_mode=true)", _basic(pool)))


def _googlenet() -> str:
    pool = "maxpool(3,s=2,ceil_mode=true)"
    return ", ".join([
        _basic(64, 7, s=2, p=3), pool, _basic(64), _basic(192, 3, p=1), pool,
        _googlenet_block("inception3a", 64, 96, 128, 16, 32, 32),
        _googlenet_block("inception3b", 128, 128, 192, 32, 96, 64), pool,
        _googlenet_block("inception4a", 192, 96, 208, 16, 48, 64),
        _googlenet_block("inception4b", 160, 112, 224, 24, 64, 64),
        _googlenet_block("inception4c", 128, 128, 256, 24, 64, 64),
        _googlenet_block("inception4d", 112, 144, 288, 32, 64, 64),
        _googlenet_block("inception4e", 256, 160, 320, 32, 128, 128),
        "maxpool(2,s=2,ceil_mode=true)",
        _googlenet_block("inception5a", 256, 160, 320, 32, 128, 128),
        _googlenet_block("inception5b", 384, 192, 384, 48, 128, 128),
        "gap, flatten, dropout(0.2), fc(1000)",
    ])


# -- Inception-v3 ----------------------------------------------------------------------

_AVG = "avgpool(3,s=1,p=1)"  # the pooling branch of the A, C and E blocks


def _block_a(name: str, pool: int) -> str:
    return _concat(name,
                   _branch(_basic(64)),
                   _branch(_basic(48), _basic(64, 5, p=2)),
                   _branch(_basic(64), _basic(96, 3, p=1), _basic(96, 3, p=1)),
                   _branch(_AVG, _basic(pool)))


def _block_b(name: str) -> str:
    return _concat(name,
                   _branch(_basic(384, 3, s=2)),
                   _branch(_basic(64), _basic(96, 3, p=1), _basic(96, 3, s=2)),
                   "maxpool(3,s=2)")


def _row(out: int) -> str:
    """A 1x7 convolution (height 1, width 7), padded to keep the size."""
    return _basic(out, "1x7", p="0x3")


def _col(out: int) -> str:
    """A 7x1 convolution: with a 1x7 before or after it, a factorized 7x7."""
    return _basic(out, "7x1", p="3x0")


def _block_c(name: str, c7: int) -> str:
    return _concat(name,
                   _branch(_basic(192)),
                   _branch(_basic(c7), _row(c7), _col(192)),
                   _branch(_basic(c7), _col(c7), _row(c7), _col(c7), _row(192)),
                   _branch(_AVG, _basic(192)))


def _block_d(name: str) -> str:
    return _concat(name,
                   _branch(_basic(192), _basic(320, 3, s=2)),
                   _branch(_basic(192), _row(192), _col(192), _basic(192, 3, s=2)),
                   "maxpool(3,s=2)")


def _split_1x3_3x1() -> str:
    """The E block's fan-out: a 1x3 and a 3x1 convolution side by side, concatenated."""
    return (f"concat({_branch(_basic(384, '1x3', p='0x1'))}, "
            f"{_branch(_basic(384, '3x1', p='1x0'))})")


def _block_e(name: str) -> str:
    return _concat(name,
                   _branch(_basic(320)),
                   _branch(_basic(384), _split_1x3_3x1()),
                   _branch(_basic(448), _basic(384, 3, p=1), _split_1x3_3x1()),
                   _branch(_AVG, _basic(192)))


def _inception_v3() -> str:
    return ", ".join([
        _basic(32, 3, s=2), _basic(32, 3), _basic(64, 3, p=1), "maxpool(3,s=2)",
        _basic(80), _basic(192, 3), "maxpool(3,s=2)",
        _block_a("mixed5b", 32), _block_a("mixed5c", 64), _block_a("mixed5d", 64),
        _block_b("mixed6a"),
        _block_c("mixed6b", 128), _block_c("mixed6c", 160), _block_c("mixed6d", 160),
        _block_c("mixed6e", 192),
        _block_d("mixed7a"), _block_e("mixed7b"), _block_e("mixed7c"),
        "gap, flatten, dropout(0.5), fc(1000)",
    ])


ENTRIES = (
    ZooEntry("googlenet", "3x224x224", _googlenet(),
             "GoogLeNet, torchvision layout; the 2 aux heads (training only, 6,379,984 "
             "params) not counted", family="Inception"),
    ZooEntry("inception_v3", "3x299x299", _inception_v3(),
             "Inception-v3, torchvision layout; the aux head (training only, 3,326,696 "
             "params, in torchvision's 27,161,264) not counted", family="Inception"),
)
