"""``cnncalc compare``: two networks side by side, per quantity, with B − A and B / A."""

from __future__ import annotations

import sys

import click

from ..errors import CnnCalcError
from ..render import FORMATS


def _label(kind: str, value: str) -> str:
    text = " ".join(value.split())
    return text if kind == "model" or len(text) <= 60 else text[:59] + "…"


@click.command("compare")
@click.argument("specs", nargs=-1, metavar="[SPEC_A] [SPEC_B]")
@click.option("-m", "--model", "models", multiple=True, metavar="NAME",
              help="A built-in network; give it twice, or once with one SPEC.")
@click.option("-t", "--torch", "torches", multiple=True, metavar="MODULE:FACTORY",
              help="A live PyTorch model, as for `cnncalc params --torch` (imports and runs "
                   "that code: use only code you trust).")
@click.option("-i", "--input", "inputs", multiple=True, metavar="SHAPE",
              help="Input shape for both networks, or give it twice (A's, then B's). "
                   "Defaults to a model's own input.")
@click.option("-b", "--batch", default="1", show_default=True,
              help="Batch size: a number or a symbol such as N.")
@click.option("--layout", type=click.Choice(["chw", "hwc"]), default="chw", show_default=True,
              help="Read and print shapes as CxHxW (PyTorch) or HxWxC (textbooks).")
@click.option("--no-bias", is_flag=True, help="Count every conv/linear without bias.")
@click.option("--subs", metavar="H=64,W=64", help="Give values to symbols (of either network).")
@click.option("-o", "--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True)
@click.option("--plot", "plot", metavar="FILE",
              help="Also draw both networks' per-layer costs and training memory side by "
                   "side to FILE (.png, .svg or .pdf; needs matplotlib).")
def command(specs, models, torches, inputs, batch, layout, no_bias, subs, fmt, plot):
    """Compare two networks: params, MACs, activations, ... of A and B, B − A and B / A.

    \b
    Networks are layer-language SPECs, --model names or --torch models; A is the
    first of them in that order:
      cnncalc compare --model standard_block --model bottleneck_block
      cnncalc compare "conv(K,k=3,p=1)" "dwconv(k=3), conv(K,k=1)" --input CxHxW
    """
    networks = ([("spec", s) for s in specs] + [("model", m) for m in models]
                + [("torch", t) for t in torches])
    if len(networks) != 2:
        raise click.UsageError("give two networks: SPEC_A SPEC_B, --model twice, or any two "
                               f"of SPEC, --model and --torch (got {len(networks)})")
    if len(inputs) > 2:
        raise click.UsageError("--input: give one shape for both networks, or one for each "
                               f"(got {len(inputs)})")
    shapes = list(inputs) * 2 if len(inputs) == 1 else list(inputs) or [None, None]
    for (kind, _), shape, side in zip(networks, shapes, "AB"):
        if kind != "model" and shape is None:
            raise click.UsageError(f"--input is required for network {side}, a {kind} "
                                   "(e.g. --input 3x32x32)")
        if kind == "torch" and no_bias:
            raise click.UsageError("--no-bias does not apply to --torch (the model has the "
                                   "biases it has)")
    if plot is not None:
        from ..render.plot import check_target
        check_target(plot)

    from ..analysis import analyze, parse_subs
    from ..comparison import compare

    def analysis(kind: str, value: str, shape: str | None):
        if kind == "torch":
            from ..torch_trace import from_torch, load_factory
            return from_torch(load_factory(value), shape, batch, layout=layout, name=value)
        return analyze(value if kind == "spec" else None, input=shape, batch=batch,
                       layout=layout, bias=not no_bias, model=value if kind == "model" else None)

    analyses = [analysis(kind, value, shape) for (kind, value), shape in zip(networks, shapes)]
    if subs:
        values = parse_subs(subs)
        names = [{s.name for s in a.symbols} for a in analyses]
        unknown = sorted(set(values) - names[0] - names[1])
        if unknown:
            known = ", ".join(sorted(names[0] | names[1])) or "none"
            raise CnnCalcError(f"--subs: {', '.join(unknown)} is not a symbol of either "
                               f"network (their symbols: {known})")
        analyses = [a.subs({k: v for k, v in values.items() if k in n}) if n & set(values)
                    else a for a, n in zip(analyses, names)]
    labels = [_label(kind, value) for kind, value in networks]
    if plot is not None:  # first, so that a refused plot prints nothing
        from ..charts import chart
        from ..render.plot import draw
        draw([chart(a, f"{side}: {label}") for a, side, label in zip(analyses, "AB", labels)],
             plot)
        click.echo(f"plot: wrote {plot}", err=True)
    result = compare(*analyses, *labels)

    from ..render import compare as render
    if fmt == "table":
        from rich.console import Console
        Console(width=None if sys.stdout.isatty() else 160).print(render.to_table(result))
    else:
        sys.stdout.write(render.RENDERERS[fmt](result))
