"""Small helpers that write layer-language text for the family modules."""

from __future__ import annotations

from fractions import Fraction


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: round to a multiple of ``divisor``, never below
    90% of ``value`` (sizes MobileNetV3's squeeze channels and EfficientNet's expansions)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def block(layers: list[str], residual: bool) -> str:
    """One block's layers on one line, inside ``residual(...)`` when it has a skip."""
    body = ", ".join(layers)
    return f"residual({body})" if residual else body


def probability(p: Fraction) -> str:
    """A probability as the language reads it exactly: 0.0125, or 1/170 when no finite
    decimal is exact.

    >>> probability(Fraction(1, 80)), probability(Fraction(1, 170)), probability(Fraction(0))
    ('0.0125', '1/170', '0')
    """
    if p == 0:
        return "0"
    rest = p.denominator
    for factor in (2, 5):
        while rest % factor == 0:
            rest //= factor
    if rest != 1:
        return f"{p.numerator}/{p.denominator}"
    text = f"{float(p):.12f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
