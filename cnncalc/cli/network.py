"""The network a command reads (``params``, ``graph``): its options and its analysis.

One place for ``--input``/``--layers``/``--model``/``--file``/``--torch`` and their
checks, so every command that takes a network reads it the same way.
"""

from __future__ import annotations

import click

from ..errors import CnnCalcError

_OPTIONS = (
    click.option("-i", "--input", "inputs", metavar="SHAPE", multiple=True,
                 help="Input shape without batch: CxHxW (e.g. 3x32x32, CxHxW), CxL, or D. "
                      "Defaults to the model's own input with --model. With --torch, give it "
                      "once per positional input of the model's forward."),
    click.option("--input-dtype", "input_dtypes", metavar="DTYPE", multiple=True,
                 help="With --torch: the dtype of the inputs (one for all, or one per "
                      "--input), e.g. int64 for token ids (they are zeros, a valid id) "
                      "[default: float32]."),
    click.option("-l", "--layers", metavar="SPEC",
                 help='Layer language, e.g. "conv(6,k=5), relu".'),
    click.option("-m", "--model", metavar="NAME", help="A built-in network (see `cnncalc zoo`)."),
    click.option("-f", "--file", "file_", type=click.File("r", encoding="utf-8"),
                 help="Read the layer language from a file ('-' for stdin)."),
    click.option("-t", "--torch", "torch_", metavar="MODULE:FACTORY",
                 help="A live PyTorch model: imports MODULE (from the current folder or "
                      "PYTHONPATH) and calls FACTORY() for an nn.Module, then runs it once on "
                      "meta tensors. Importing and calling run that code: use only code you "
                      "trust."),
    click.option("-b", "--batch", default="1", show_default=True,
                 help="Batch size: a number or a symbol such as N."),
    click.option("--layout", type=click.Choice(["chw", "hwc"]), default="chw",
                 show_default=True,
                 help="Read and print shapes as CxHxW (PyTorch) or HxWxC (textbooks)."),
    click.option("--no-bias", is_flag=True, help="Count every conv/linear without bias."),
    click.option("--subs", metavar="H=64,W=64", help="Give values to symbols."),
)


def network_options(command):
    """The options that name a network, in the order ``--help`` lists them."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def check_network(inputs, input_dtypes, layers, model, file_, torch_, no_bias) -> str | None:
    """The usage checks, before anything heavy loads; returns the layer-language text
    (read from ``--file`` if given)."""
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
    if torch_ is not None and no_bias:
        raise click.UsageError("--no-bias does not apply to --torch (the model has the "
                               "biases it has)")
    return layers


def read_analysis(inputs, input_dtypes, layers, model, torch_, batch, layout, no_bias, subs,
                  *, optimizer: str = "sgd", dtype: str = "float32", freeze=None):
    """The analysis of the network the options name (after :func:`check_network`)."""
    from ..analysis import analyze, parse_subs

    values = parse_subs(subs) if subs else None
    input_ = inputs[0] if inputs else None
    if torch_ is not None:
        from ..torch_trace import from_torch, load_factory
        analysis = from_torch(load_factory(torch_), list(inputs) if len(inputs) > 1 else input_,
                              batch, input_dtype=list(input_dtypes) or None, layout=layout,
                              optimizer=optimizer, dtype=dtype, freeze=freeze, name=torch_)
        return analysis.subs(values) if values else analysis
    return analyze(layers, input=input_, batch=batch, layout=layout, bias=not no_bias,
                   subs=values, model=model, optimizer=optimizer, dtype=dtype, freeze=freeze)
