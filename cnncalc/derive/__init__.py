"""Derivations: convolution as a matrix, correlation, normalization, backprop, calculus.

Each module builds a :class:`~cnncalc.derive.result.Derivation` of exact sympy
values; ``cnncalc.render.derivation`` prints it in every format.
"""
