"""``cnncalc params``: the per-layer analysis of a network."""

from __future__ import annotations

import sys

import click

from ..render import FORMATS
from .network import check_network, network_options, read_analysis

# Here rather than imported from cnncalc.training, so that --help loads no sympy.
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
DTYPES = ("float32", "float16", "bfloat16")


@click.command("params")
@network_options
@click.option("--show-work", is_flag=True,
              help="Print every quantity as formula -> substituted arithmetic -> value.")
@click.option("-o", "--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True)
@click.option("--training", is_flag=True,
              help="Show the training step: backward MACs (input and weight gradients) and "
                   "memory (params, gradients, optimizer state, activations kept).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS),
              help="Optimizer state to count (sgd 0, momentum 1x, adam/adamw 2x the trainable "
                   "params) [default: sgd]; implies --training.")
@click.option("--dtype", type=click.Choice(DTYPES),
              help="Bytes per value for the training memory [default: float32]; implies "
                   "--training.")
@click.option("--freeze", metavar="WHICH",
              help="Freeze layers: index ranges, kinds or names, e.g. 0-6, conv, bn, basic1 "
                   "(comma-separated); implies --training.")
@click.option("--receptive-field", "receptive", is_flag=True,
              help="Show each layer's receptive field: size, jump and start.")
@click.option("--plot", "plot", metavar="FILE",
              help="Also draw the per-layer MACs, params and activation memory and the "
                   "training step's memory to FILE (.png, .svg or .pdf; needs matplotlib). "
                   "Symbolic sizes need --subs.")
def command(inputs, input_dtypes, layers, model, file_, batch, layout, no_bias, subs,
            show_work, fmt, training, optimizer, dtype, freeze, receptive, torch_, plot):
    """Per-layer output shapes, params, MACs, activations and memory change."""
    layers = check_network(inputs, input_dtypes, layers, model, file_, torch_, no_bias)
    if plot is not None:
        from ..render.plot import check_target
        check_target(plot)
    analysis = read_analysis(inputs, input_dtypes, layers, model, torch_, batch, layout,
                             no_bias, subs, optimizer=optimizer or "sgd",
                             dtype=dtype or "float32", freeze=freeze)
    training = training or any(v is not None for v in (optimizer, dtype, freeze))
    emit(analysis, fmt, show_work, training=training, receptive=receptive, plot=plot)


def emit(analysis, fmt: str, show_work: bool, *, training: bool = False,
         receptive: bool = False, plot: str | None = None) -> None:
    """Print an analysis in the chosen format (JSON always carries every key; the flags
    add the training and receptive-field columns to the other formats); with ``plot``,
    draw it to that file first (so a refused plot prints nothing)."""
    if plot is not None:
        from ..charts import chart
        from ..render.plot import draw
        draw([chart(analysis)], plot)
        click.echo(f"plot: wrote {plot}", err=True)
    if fmt == "table":
        from rich.console import Console

        from ..render.table import analysis_table, fitting_table, worked_solution
        if sys.stdout.isatty():  # fit the terminal, never cutting a number
            table, width = fitting_table(analysis, Console().width, training, receptive)
            Console(width=width).print(table)
        else:  # a pipe gets a width that fits the table and its share bars
            wide = 180 + 70 * training + 30 * receptive
            Console(width=wide).print(analysis_table(analysis, training=training,
                                                     receptive=receptive, width=wide))
        if show_work:
            sys.stdout.write("\n".join(worked_solution(analysis)) + "\n")
        return
    from ..render import formats
    if fmt == "json":
        sys.stdout.write(formats.to_json(analysis, show_work))
    else:
        render = {"csv": formats.to_csv, "markdown": formats.to_markdown,
                  "latex": formats.to_latex}[fmt]
        sys.stdout.write(render(analysis, show_work, training=training, receptive=receptive))
    if fmt == "json":
        sys.stdout.write("\n")
