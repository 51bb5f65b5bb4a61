"""``cnncalc backprop``: forward and backward pass of a small fully connected net."""

from __future__ import annotations

import click

from .common import emit_derivation, format_option, show_work_option

ACTIVATION_NAMES = ("tanh", "relu", "sigmoid", "identity")

EPILOG = """\b
Example (the backpropagation homework, problem 2: a 1-2-1-1 tanh net
with a linear output):
  cnncalc backprop --weights "[[0.1,0.2],[0.3,0.4]]" --weights "[[0.2],[1],[-3]]" \\
      --weights "[[1],[2]]" --x 2 --y 1 --activation tanh --output identity
\b
W^(l) is (d^(l-1)+1) x d^(l) with the bias weights in row 0; a column is
written [[0.2],[1],[-3]]. e = sum (x^(L) - y)^2, without a 1/2 or 1/N factor.
"""


@click.command("backprop", epilog=EPILOG)
@click.option("-w", "--weights", "weights", multiple=True, required=True, metavar="MATRIX",
              help="W^(l), one option per layer in order, bias in row 0, "
                   "e.g. \"[[0.1,0.2],[0.3,0.4]]\".")
@click.option("--x", "x", required=True, metavar="VECTOR", help="The input x (without the bias 1).")
@click.option("--y", "y", required=True, metavar="VECTOR", help="The target y.")
@click.option("--activation", type=click.Choice(ACTIVATION_NAMES), default="tanh",
              show_default=True, help="θ of the hidden layers.")
@click.option("--output", type=click.Choice(ACTIVATION_NAMES), default="identity",
              show_default=True, help="θ_out of the output layer.")
@click.option("--exact", is_flag=True,
              help="Print the closed forms (tanh(7/10), ...) as well as their values.")
@click.option("--digits", type=click.IntRange(1, 100), default=15, show_default=True,
              help="Significant digits of values that are not rational.")
@show_work_option
@format_option
def command(weights, x, y, activation, output, exact, digits, show_work, fmt):
    """Every s^(l), x^(l), sensitivity δ^(l) and gradient ∂e/∂W^(l), exactly.

    Numbers stay exact (0.1 is 1/10); values that are not rational, such as
    tanh(7/10), print to --digits significant digits, and --exact adds their
    closed forms. Names such as w1 make the pass symbolic. relu'(0) = 0, as PyTorch.
    """
    from ..derive.backprop import backprop
    from ..derive.values import parse_matrix, parse_vector

    matrices = [parse_matrix(text, f"W^({layer})") for layer, text in enumerate(weights, start=1)]
    derivation = backprop(matrices, parse_vector(x, "--x"), parse_vector(y, "--y"),
                          activation=activation, output=output, exact=exact, digits=digits)
    emit_derivation(derivation, fmt, show_work)
