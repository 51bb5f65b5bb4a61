"""``cnncalc matrix``: a convolution written as a matrix, its backward pass, its Jacobian."""

from __future__ import annotations

import click

from .common import emit_derivation, format_option, show_work_option


class Dims(click.ParamType):
    """One positive integer, or ``AxB`` (one per axis): ``3``, ``3x3``, ``2x1``."""

    name = "N|AxB"

    def __init__(self, least: int = 1):
        self.least = least

    def convert(self, value, param, ctx):
        if isinstance(value, (int, tuple)):
            return value
        parts = value.lower().replace("×", "x").split("x")
        try:
            numbers = tuple(int(p) for p in parts)
        except ValueError:
            self.fail(f"expected an integer or AxB such as 3x3, got {value!r}", param, ctx)
        if len(numbers) > 2:
            self.fail(f"expected at most two sizes (AxB), got {value!r}", param, ctx)
        if any(n < self.least for n in numbers):
            self.fail(f"must be at least {self.least}, got {value!r}", param, ctx)
        return numbers[0] if len(numbers) == 1 else numbers


@click.command("matrix")
@click.option("--length", type=click.IntRange(min=1), metavar="L",
              help="Length of a 1-D input (conv1d).")
@click.option("--size", type=Dims(), metavar="HxW", help="Height x width of a 2-D input (conv2d).")
@click.option("--in-channels", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--out-channels", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--kernel", type=Dims(), required=True, help="Kernel size: k, or kHxkW in 2-D.")
@click.option("--stride", type=Dims(), default="1", show_default=True)
@click.option("--padding", type=Dims(least=0), default="0", show_default=True,
              help="Zeros on each side: p, or pHxpW in 2-D.")
@click.option("--backward", is_flag=True,
              help="Also print B = Aᵀ and the convolution that computes ∂L/∂X from ∂L/∂Y.")
@click.option("--jacobian", is_flag=True, help="Also print C_x with Ỹ = C_x w̃ (w ⋆ x = C_x w).")
@show_work_option
@format_option
def command(length, size, in_channels, out_channels, kernel, stride, padding, backward,
            jacobian, show_work, fmt):
    """The symbolic matrix A with Ỹ = A X̃ for a conv1d (--length) or conv2d (--size).

    \b
    Examples:
      cnncalc matrix --length 4 --in-channels 2 --out-channels 2 --kernel 3 --backward
      cnncalc matrix --size 3x3 --kernel 2 --padding 1
      cnncalc matrix --length 4 --kernel 3 --padding 2 --jacobian
    """
    if (length is None) == (size is None):
        raise click.UsageError("give exactly one of --length L (1-D) or --size HxW (2-D)")
    if size is not None and not isinstance(size, tuple):
        raise click.BadParameter(f"expected HxW such as 3x3, got {size}", param_hint="--size")
    ndim = 1 if length is not None else 2
    for name, value in (("--kernel", kernel), ("--stride", stride), ("--padding", padding)):
        if ndim == 1 and isinstance(value, tuple):
            raise click.BadParameter(f"a 1-D convolution takes one number, got "
                                     f"{'x'.join(map(str, value))}", param_hint=name)

    from ..derive.matrix import geometry, matrix_derivation

    g = geometry(length if ndim == 1 else size, in_channels, out_channels, kernel, stride,
                 padding)
    emit_derivation(matrix_derivation(g, backward=backward, jacobian=jacobian), fmt, show_work)
