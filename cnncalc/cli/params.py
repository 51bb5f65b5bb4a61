"""``cnncalc params``: the per-layer analysis of a network."""

from __future__ import annotations

import sys

import click

from ..errors import CnnCalcError
from ..render import FORMATS

# Here rather than imported from cnncalc.training, so that --help loads no sympy.
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
DTYPES = ("float32", "float16", "bfloat16")


@click.command("params")
@click.option("-i", "--input", "inputs", metavar="SHAPE", multiple=True,
              help="Input shape without batch: CxHxW (e.g. 3x32x32, CxHxW), CxL, or D. "
                   "Defaults to the model's own input with --model. With --torch, give it "
                   "once per positional input of the model's forward.")
@click.option("--input-dtype", "input_dtypes", metavar="DTYPE", multiple=True,
              help="With --torch: the dtype of the inputs (one for all, or one per --input), "
                   "e.g. int64 for token ids (they are zeros, a valid id) [default: float32].")
@click.option("-l", "--layers", metavar="SPEC", help='Layer language, e.g. "conv(6,k=5), relu".')
@click.option("-m", "--model", metavar="NAME", help="A built-in network (see `cnncalc zoo`).")
@click.option("-f", "--file", "file_", type=click.File("r", encoding="utf-8"),
              help="Read the layer language from a file ('-' for stdin).")
@click.option("-t", "--torch", "torch_", metavar="MODULE:FACTORY",
              help="A live PyTorch model: imports MODULE (from the current folder or "
                   "PYTHONPATH) and calls FACTORY() for an nn.Module, then runs it once on "
                   "meta tensors. Importing and calling run that code: use only code you "
                   "trust.")
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
def command(inputs, input_dtypes, layers, model, file_, batch, layout, no_bias, subs,
            show_work, fmt, training, optimizer, dtype, freeze, receptive, torch_):
    """Per-layer output shapes, params, MACs, activations and memory change."""
    given = [name for name, v in (("--layers", layers), ("--model", model), ("--file", file_),
                                  ("--torch", torch_)) if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --layers, --model, --file or --torch"
                               + (f" (got {', '.join(given)})" if given else ""))
    if file_ is not None:
        try:
            layers = file_.read()
        except UnicodeDecodeError:
            raise CnnCalcError(f"--file: {file_.name} is not UTF-8 text") from None
    if model is None and not inputs:
        raise click.UsageError("--input is required (e.g. --input 3x32x32)")
    if torch_ is None and len(inputs) > 1:
        raise click.UsageError(f"--input: give one shape (got {len(inputs)}; several are "
                               "for a --torch model with several inputs)")
    if torch_ is None and input_dtypes:
        raise click.UsageError("--input-dtype applies to --torch models only")
    input_ = inputs[0] if inputs else None

    from ..analysis import analyze, parse_subs

    values = parse_subs(subs) if subs else None
    if torch_ is not None:
        if no_bias:
            raise click.UsageError("--no-bias does not apply to --torch (the model has the "
                                   "biases it has)")
        from ..torch_trace import from_torch, load_factory
        analysis = from_torch(load_factory(torch_), list(inputs) if len(inputs) > 1 else input_,
                              batch, input_dtype=list(input_dtypes) or None, layout=layout,
                              optimizer=optimizer or "sgd", dtype=dtype or "float32",
                              freeze=freeze, name=torch_)
        analysis = analysis.subs(values) if values else analysis
        training = training or any(v is not None for v in (optimizer, dtype, freeze))
        emit(analysis, fmt, show_work, training=training, receptive=receptive)
        return
    analysis = analyze(layers, input=input_, batch=batch, layout=layout, bias=not no_bias,
                       subs=values, model=model, optimizer=optimizer or "sgd",
                       dtype=dtype or "float32", freeze=freeze)
    training = training or any(v is not None for v in (optimizer, dtype, freeze))
    emit(analysis, fmt, show_work, training=training, receptive=receptive)


def emit(analysis, fmt: str, show_work: bool, *, training: bool = False,
         receptive: bool = False) -> None:
    """Print an analysis in the chosen format (JSON always carries every key; the flags
    add the training and receptive-field columns to the other formats)."""
    if fmt == "table":
        from rich.console import Console

        from ..render.table import analysis_table, fitting_table, worked_solution
        if sys.stdout.isatty():  # fit the terminal, never cutting a number
            table, width = fitting_table(analysis, Console().width, training, receptive)
            Console(width=width).print(table)
        else:  # a pipe gets a width that fits the table instead of rich's default 80
            wide = 160 + 50 * training + 30 * receptive
            Console(width=wide).print(analysis_table(analysis, training=training,
                                                     receptive=receptive))
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
