"""``cnncalc graph``: the network as a diagram (Mermaid, Graphviz DOT, or SVG)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import CnnCalcError
from .network import check_network, network_options, read_analysis

# Here rather than imported from render.graph, so that --help loads no sympy.
FORMATS = ("mermaid", "dot", "svg")
EXTENSIONS = {".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot", ".gv": "dot",
              ".svg": "svg"}


@click.command("graph")
@network_options
@click.option("-o", "--format", "fmt", type=click.Choice(FORMATS),
              help="mermaid, dot (Graphviz) or svg (drawn by cnncalc, no Graphviz needed) "
                   "[default: from --output's extension, else mermaid].")
@click.option("--output", metavar="FILE",
              help="Write to FILE (.mmd, .dot/.gv or .svg) instead of standard output.")
@click.option("--collapse", is_flag=True,
              help="One box per block (bottleneck3, layer1, ...), and one box ×N for a run "
                   "of identical blocks.")
def command(inputs, input_dtypes, layers, model, file_, batch, layout, no_bias, subs,
            torch_, fmt, output, collapse):
    """The network as a diagram: one box per layer with its output shape and cost,
    branches and merges as drawn edges.

    \b
    Examples:
      cnncalc graph --model resnet18 --collapse
      cnncalc graph --model resnet50 --output resnet50.svg
      cnncalc graph --input 3x32x32 --layers "residual(conv(3,k=3,p=1), relu)" -o dot
    """
    layers = check_network(inputs, input_dtypes, layers, model, file_, torch_, no_bias)
    if fmt is None:
        ext = Path(output).suffix.lower() if output else ""
        if output and ext not in EXTENSIONS:
            raise click.UsageError(f"--output: {output!r} should end in .mmd, .dot, .gv or "
                                   ".svg (or give --format)")
        fmt = EXTENSIONS.get(ext, "mermaid")
    if output is not None and not Path(output).parent.is_dir():
        raise CnnCalcError(f"--output: the folder {str(Path(output).parent)!r} does not exist")
    analysis = read_analysis(inputs, input_dtypes, layers, model, torch_, batch, layout,
                             no_bias, subs)

    from ..graph import diagram
    from ..render.graph import RENDERERS
    text = RENDERERS[fmt](diagram(analysis, collapse=collapse))
    if output is None:
        sys.stdout.write(text)
        return
    from ..files import write_atomic
    write_atomic(output, lambda handle: handle.write(text.encode("utf-8")), "--output")
    click.echo(f"graph: wrote {output}", err=True)

