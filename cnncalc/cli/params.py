"""``cnncalc params``: the per-layer analysis of a network."""

from __future__ import annotations

import sys

import click

from ..errors import CnnCalcError
from ..render import FORMATS


@click.command("params")
@click.option("-i", "--input", "input_", metavar="SHAPE",
              help="Input shape without batch: CxHxW (e.g. 3x32x32, CxHxW), CxL, or D. "
                   "Defaults to the model's own input with --model.")
@click.option("-l", "--layers", metavar="SPEC", help='Layer language, e.g. "conv(6,k=5), relu".')
@click.option("-m", "--model", metavar="NAME", help="A built-in network (see `cnncalc zoo`).")
@click.option("-f", "--file", "file_", type=click.File("r", encoding="utf-8"),
              help="Read the layer language from a file ('-' for stdin).")
@click.option("-b", "--batch", default="1", show_default=True,
              help="Batch size: a number or a symbol such as N.")
@click.option("--layout", type=click.Choice(["chw", "hwc"]), default="chw", show_default=True,
              help="Read and print shapes as CxHxW (PyTorch) or HxWxC (textbooks).")
@click.option("--no-bias", is_flag=True, help="Count every conv/linear without bias.")
@click.option("--subs", metavar="H=64,W=64", help="Give values to symbols.")
@click.option("--show-work", is_flag=True,
              help="Print every quantity as formula -> substituted arithmetic -> value.")
@click.option("-o", "--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True)
def command(input_, layers, model, file_, batch, layout, no_bias, subs, show_work, fmt):
    """Per-layer output shapes, params, MACs, activations and memory change."""
    given = [name for name, v in (("--layers", layers), ("--model", model), ("--file", file_))
             if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --layers, --model or --file"
                               + (f" (got {', '.join(given)})" if given else ""))
    if file_ is not None:
        try:
            layers = file_.read()
        except UnicodeDecodeError:
            raise CnnCalcError(f"--file: {file_.name} is not UTF-8 text") from None
    if model is None and input_ is None:
        raise click.UsageError("--input is required (e.g. --input 3x32x32)")

    from ..analysis import analyze, parse_subs

    values = parse_subs(subs) if subs else None
    analysis = analyze(layers, input=input_, batch=batch, layout=layout, bias=not no_bias,
                       subs=values, model=model)
    emit(analysis, fmt, show_work)


def emit(analysis, fmt: str, show_work: bool) -> None:
    """Print an analysis in the chosen format."""
    if fmt == "table":
        from rich.console import Console

        from ..render.table import analysis_table, worked_solution
        # A pipe gets a width that fits the table instead of rich's default 80 columns.
        console = Console(width=None if sys.stdout.isatty() else 160)
        console.print(analysis_table(analysis))
        if show_work:
            sys.stdout.write("\n".join(worked_solution(analysis)) + "\n")
        return
    from ..render import formats
    render = {"json": formats.to_json, "csv": formats.to_csv,
              "markdown": formats.to_markdown, "latex": formats.to_latex}[fmt]
    sys.stdout.write(render(analysis, show_work))
    if fmt == "json":
        sys.stdout.write("\n")
