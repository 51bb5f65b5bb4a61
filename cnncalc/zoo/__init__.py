"""Built-in networks, written in the layer language itself.

Each is laid out as its classic / torchvision definition so that totals match
the published counts (tests check them against hand-written torch models).
One module per family of networks; each lists its ``ENTRIES``.
"""

from __future__ import annotations

from ..errors import CnnCalcError
from . import classic, densenet, inception, shufflenet, squeezenet, unet
from .entry import ZooEntry

MODELS: dict[str, ZooEntry] = {e.name: e for module in (classic, inception, densenet, squeezenet,
                                                         shufflenet, unet)
                               for e in module.ENTRIES}

__all__ = ["MODELS", "ZooEntry", "get"]


# Earlier names of the homework blocks, still accepted (not listed).
FORMER_NAMES = {"seed002_block": "two_conv_block", "seed004_standard": "standard_block",
                "seed004_bottleneck": "bottleneck_block"}


def get(name: str) -> ZooEntry:
    try:
        return MODELS[FORMER_NAMES.get(name.lower(), name.lower())]
    except KeyError:
        import difflib
        hint = difflib.get_close_matches(name.lower(), list(MODELS), n=1)
        tip = f" (did you mean {hint[0]}?)" if hint else ""
        raise CnnCalcError(f"unknown model {name!r}{tip}; `cnncalc zoo` lists them") from None
