"""cnncalc: exact, symbolic cost analysis of convolutional networks.

>>> import cnncalc
>>> a = cnncalc.analyze("conv(K, k=F, s=1, p=0)", input="CxHxW")
>>> a.total["params"]
C*F**2*K + K

The heavy modules (sympy) load on first use, so the CLI starts fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["analyze", "parse_layers", "zoo", "CnnCalcError", "SpecError", "ShapeError"]

from .errors import CnnCalcError, ShapeError, SpecError


def __getattr__(name: str):
    if name == "analyze":
        from .analysis import analyze
        return analyze
    if name == "parse_layers":
        from .layers import parse_layers
        return parse_layers
    if name == "zoo":
        from . import zoo
        return zoo
    raise AttributeError(f"module 'cnncalc' has no attribute {name!r}")
