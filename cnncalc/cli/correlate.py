"""``cnncalc correlate``: cross-correlation ``X ⋆ Y`` in the homework's notation, C_w and C_x."""

from __future__ import annotations

import click

from .common import emit_derivation, format_option, show_work_option


# ignore_unknown_options lets a value start with a minus sign: ``cnncalc correlate -1,2 3,4``.
@click.command("correlate", context_settings={"ignore_unknown_options": True})
@click.argument("x", metavar="X")
@click.argument("y", metavar="Y")
@click.option("--mode", type=click.Choice(("full", "valid", "same")), default="full",
              show_default=True,
              help="full: every overlap; valid: X wholly inside Y; same: Y's size, centred.")
@click.option("--matrix", is_flag=True, help="Also print C_w with w ⋆ x = C_w x (w = X, x = Y).")
@click.option("--jacobian", is_flag=True,
              help="Also print the Jacobian C_x = ∂(w ⋆ x)/∂w, with w ⋆ x = C_x w.")
@show_work_option
@format_option
def command(x, y, mode, matrix, jacobian, show_work, fmt):
    """Cross-correlation X ⋆ Y: X slides over fixed Y (= scipy.signal.correlate(Y, X)).

    X and Y are both vectors (3,2,1 or [3,2,1]) or both matrices ([[1,2],[3,4]]);
    names such as w1,w2,w3 make them symbolic.

    \b
    Examples:
      cnncalc correlate 3,2,1 4,6,3,9 --show-work
      cnncalc correlate "[[1,2],[3,4]]" "[[1,0,2],[0,1,0],[2,0,1]]"
      cnncalc correlate w1,w2,w3 x1,x2,x3,x4 --matrix --jacobian
    """
    from ..derive.correlate import derive

    emit_derivation(derive(x, y, mode, matrix=matrix, jacobian=jacobian), fmt, show_work)
