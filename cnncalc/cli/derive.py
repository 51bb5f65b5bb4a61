"""``cnncalc derive``: symbolic derivatives and gradients, simplified."""

from __future__ import annotations

import click

from .common import emit_derivation, format_option, show_work_option

EPILOG = """\b
Examples:
  cnncalc derive "tanh(x)"                          # 1 - tanh(x)**2
  cnncalc derive "sigmoid(x)"                       # sigmoid(x)*(1 - sigmoid(x))
  cnncalc derive "(tanh(w1*x1 + w2*x2) - y)**2" --wrt w1,w2 --show-work
\b
The gradient of E_in(w) = (1/N) sum_n (tanh(w^T x_n) - y_n)^2 (the backpropagation
homework, problem 1),
written out for N = 2 samples a, b in two dimensions:
  cnncalc derive "((tanh(w1*a1 + w2*a2) - ya)^2 + (tanh(w1*b1 + w2*b2) - yb)^2)/2" \\
      --wrt w1,w2
and its vanishing as w grows (x > 0 fixes the sign of w*x):
  cnncalc derive "(tanh(w*x) - y)^2" --wrt w --limit w=oo --positive x
"""


@click.command("derive", epilog=EPILOG)
@click.argument("expr", metavar="EXPR")
@click.option("--wrt", metavar="x|w1,w2",
              help="The variable, or several for the gradient (default: the only one in EXPR).")
@click.option("--limit", metavar="w=oo",
              help="Also print the limit of each derivative as a variable tends to a point.")
@click.option("--positive", metavar="x,y", help="Declare these variables positive (> 0).")
@show_work_option
@format_option
def command(expr, wrt, limit, positive, show_work, fmt):
    """The derivative of EXPR, simplified: tanh(x) -> 1 - tanh(x)**2.

    EXPR uses + - * / ** (or ^), numbers, variable names, pi, and the functions
    sin cos tan sinh cosh tanh asin acos atan exp log (ln) sqrt abs sigmoid relu.
    It is parsed, never evaluated as Python. relu'(0) is taken as 0, as PyTorch.
    """
    from ..derive.calculus import derive

    emit_derivation(derive(expr, wrt=wrt, limit=limit, positive=positive), fmt, show_work)
