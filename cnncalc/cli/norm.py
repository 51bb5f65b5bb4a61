"""``cnncalc norm``: batch / layer / instance / group normalization step by step, and shapes."""

from __future__ import annotations

import click

from .common import emit_derivation, format_option, show_work_option


# ignore_unknown_options lets a value start with a minus sign: ``--beta -1,2``.
@click.command("norm", context_settings={"ignore_unknown_options": True})
@click.argument("data", required=False, metavar="[DATA]")
@click.option("-k", "--kind", type=click.Choice(("batch", "layer", "instance", "group")),
              help="Which slices share one μ and σ² (all four with --shape if omitted).")
@click.option("--shape", metavar="NxCxHxW",
              help="Print the shapes of μ and σ² for an input of this shape (NxC for a "
                   "linear layer's output; numbers or names) instead of normalizing DATA.")
@click.option("--layout", metavar="LETTERS",
              help="The axes of DATA or --shape, in the order written: N batch, C channels, "
                   "other letters spatial. DATA defaults to CN (features × batch, as in the "
                   "homework; NC for batch × features) and NCL / NCHW / NCDHW; --shape to "
                   "NC / NCHW, or to its own letters (NxHxWxC).")
@click.option("--axes", metavar="AXES",
              help="Reduce over these axes instead of a --kind: layout letters (N or NHW) or "
                   "0-based indices (1 or 0,2,3).")
@click.option("-g", "--groups", metavar="G", help="Channel groups for --kind group (divides C).")
@click.option("--gamma", metavar="VALUES", help="γ: one value per channel, or one for all "
              "(layer norm: also one per element of an example). Default 1.")
@click.option("--beta", metavar="VALUES", help="β, as --gamma. Default 0.")
@click.option("--eps", metavar="ε", help="ε ≥ 0 under the square root; default 1e-5 as in "
              "PyTorch, 0 for the textbook formula.")
@click.option("--momentum", metavar="M",
              help="Momentum of batch norm's running statistics (PyTorch: 0.1).")
@show_work_option
@format_option
def command(data, kind, shape, layout, axes, groups, gamma, beta, eps, momentum, show_work,
            fmt):
    """Batch / layer / instance / group normalization, exact, step by step.

    Prints μ, σ² (biased), ẑ = (z − μ)/√(σ² + ε) and z̃ = γ ẑ + β for DATA, a
    matrix (rows = features, columns = examples, as in the homework problems) or an N×C×H×W
    tensor written as nested lists. With --shape, prints the shapes of the
    statistics each kind computes, and what changes between training and inference.

    \b
    Examples:
      cnncalc norm --kind batch "[[12,14,14,12],[0,10,10,0],[-5,5,5,-5]]" \\
          --gamma 1,1,1 --beta 0,-10,10 --eps 0 --show-work
      cnncalc norm --kind layer "[[1,2],[3,5]]" --layout NC
      cnncalc norm --kind group --groups 2 --shape NxCxHxW
    """
    if (data is None) == (shape is None):
        raise click.UsageError("give DATA to normalize or --shape, exactly one of them")
    if shape is not None:
        given = [f"--{n}" for n, v in (("gamma", gamma), ("beta", beta), ("eps", eps),
                                      ("axes", axes)) if v is not None]
        if given:
            raise click.UsageError(f"{given[0]} applies to DATA, not to --shape")
        from ..derive.norm import statistic_shapes

        derivation = statistic_shapes(shape, kind, groups=groups, layout=layout,
                                      momentum=momentum)
    else:
        from ..derive.norm import normalize

        derivation = normalize(data, kind, layout=layout, axes=axes, groups=_groups(groups),
                               gamma=gamma, beta=beta, eps=eps, momentum=momentum)
    emit_derivation(derivation, fmt, show_work)


def _groups(text: str | None) -> int | None:
    """--groups for DATA: a whole number (a name only makes sense with --shape)."""
    if text is None:
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise click.BadParameter(f"{text!r} is not a positive whole number", param_hint="--groups")
    return int(text)
