"""cnncalc: exact, symbolic cost analysis of convolutional networks.

>>> import cnncalc
>>> a = cnncalc.analyze("conv(K, k=F, s=1, p=0)", input="CxHxW")
>>> a.total["params"]
C*F**2*K + K

The derivations are here too: ``correlate``, ``conv_matrix`` / ``backward_conv``
(with ``conv_geometry``), ``normalize`` / ``statistic_shapes``, ``backprop`` and
``differentiate``. The heavy modules (sympy) load on first use, so the CLI
starts fast.
"""

from __future__ import annotations

import importlib

from .errors import CnnCalcError, ShapeError, SpecError

__version__ = "0.1.0"

# public name -> (module, attribute), imported on first use
_LAZY = {
    "analyze": ("cnncalc.analysis", "analyze"),
    "from_torch": ("cnncalc.torch_trace", "from_torch"),
    "compare": ("cnncalc.comparison", "compare"),
    "parse_layers": ("cnncalc.layers", "parse_layers"),
    "zoo": ("cnncalc.zoo", None),
    "correlate": ("cnncalc.derive.correlate", "correlate"),
    "conv_geometry": ("cnncalc.derive.matrix", "geometry"),
    "conv_matrix": ("cnncalc.derive.matrix", "conv_matrix"),
    "backward_conv": ("cnncalc.derive.matrix", "backward_conv"),
    "normalize": ("cnncalc.derive.norm", "normalize"),
    "statistic_shapes": ("cnncalc.derive.norm", "statistic_shapes"),
    "backprop": ("cnncalc.derive.backprop", "backprop"),
    "differentiate": ("cnncalc.derive.calculus", "derive"),
}
__all__ = [*_LAZY, "CnnCalcError", "SpecError", "ShapeError"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'cnncalc' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    loaded = importlib.import_module(module)
    return loaded if attribute is None else getattr(loaded, attribute)
