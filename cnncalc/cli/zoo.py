"""``cnncalc zoo``: the built-in networks."""

from __future__ import annotations

import click

from ..render import FORMATS


@click.command("zoo")
@click.option("-o", "--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True)
def command(fmt):
    """List the built-in networks with their input, params and MACs."""
    import json

    from ..analysis import analyze
    from ..render.values import pretty, si
    from ..zoo import MODELS

    rows = []
    for entry in MODELS.values():
        a = analyze(model=entry.name)
        rows.append((entry, a.total["params"], a.total["macs"]))
    if fmt == "json":
        click.echo(json.dumps([{"name": e.name, "input": e.input, "params": int(p),
                                "macs": int(m), "description": e.description, "spec": e.spec}
                               for e, p, m in rows], indent=2))
        return
    if fmt in ("markdown", "csv", "latex"):
        sep = {"markdown": " | ", "csv": ",", "latex": " & "}[fmt]
        head = ["name", "input", "params", "MACs", "description"]
        lines = [sep.join(head)]
        if fmt == "markdown":
            lines = ["| " + lines[0] + " |", "|" + "---|" * len(head)]
        for e, p, m in rows:
            cells = [e.name, e.input, str(p), str(m), e.description]
            if fmt == "csv":
                cells = [f'"{c}"' if "," in c else c for c in cells]
            line = sep.join(cells)
            lines.append(f"| {line} |" if fmt == "markdown" else (
                line.replace("_", r"\_") + r" \\" if fmt == "latex" else line))
        click.echo("\n".join(lines))
        return
    from rich.console import Console
    from rich.table import Table
    # NOTE: names and numbers never wrap (a split number misreads); in 80 columns only
    # the description wraps, at spaces. The exact MACs are in --format json/csv.
    table = Table(title="cnncalc zoo", title_justify="left", header_style="bold")
    for col, justify in (("name", "left"), ("input", "left"), ("params", "right"),
                         ("MACs", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    table.add_column("description")
    for e, p, m in rows:
        table.add_row(e.name, e.input, pretty(p), si(m) or pretty(m), e.description)
    Console().print(table)
    click.echo("Use: cnncalc params --model NAME [--input CxHxW] [--show-work]")
