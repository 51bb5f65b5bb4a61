"""``cnncalc zoo``: the built-in networks."""

from __future__ import annotations

import click

from ..render import FORMATS

HOMEWORK = "course homework"


@click.command("zoo")
@click.argument("name", required=False)
@click.option("-o", "--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True)
def command(name, fmt):
    """List the built-in networks by family, with their input, params and MACs; with a
    NAME, show that one's description and its layer-language text."""
    import json
    import textwrap

    from ..analysis import analyze
    from ..render.values import pretty, si
    from ..zoo import MODELS, get

    entries = [get(name)] if name else list(MODELS.values())
    rows = []
    for entry in entries:
        a = analyze(model=entry.name)
        rows.append((entry, a.total["params"], a.total["macs"]))
    if fmt == "json":
        click.echo(json.dumps([{"name": e.name, "family": e.family, "input": e.input,
                                "params": int(p), "macs": int(m),
                                "description": e.description, "spec": e.spec}
                               for e, p, m in rows], indent=2))
        return
    if name and fmt == "table":
        e, p, m = rows[0]
        click.echo(textwrap.fill(f"{e.name} ({e.family}): {e.description}", 79))
        click.echo(f"input {e.input}, {pretty(p)} params, {pretty(m)} MACs")
        click.echo("\n" + textwrap.fill(e.spec, 79, break_long_words=False,
                                        break_on_hyphens=False) + "\n")
        click.echo(f"Use: cnncalc params --model {e.name} [--input CxHxW] [--show-work]")
        return
    if fmt in ("markdown", "csv", "latex"):
        sep = {"markdown": " | ", "csv": ",", "latex": " & "}[fmt]
        head = ["name", "family", "input", "params", "MACs", "description"]
        lines = [sep.join(head)]
        if fmt == "markdown":
            lines = ["| " + lines[0] + " |", "|" + "---|" * len(head)]
        elif fmt == "latex":
            lines = [r"\begin{tabular}{lllrrl}", r"\hline", lines[0] + r" \\", r"\hline"]
        for e, p, m in rows:
            numbers = (str(p), str(m)) if fmt == "csv" else (f"{int(p):,}", f"{int(m):,}")
            cells = [e.name, e.family, e.input, *numbers, e.description]
            if fmt == "csv":
                cells = [f'"{c}"' if "," in c else c for c in cells]
            line = sep.join(cells)
            lines.append(f"| {line} |" if fmt == "markdown" else (
                line.replace("_", r"\_") + r" \\" if fmt == "latex" else line))
        if fmt == "latex":
            lines += [r"\hline", r"\end{tabular}"]
        click.echo("\n".join(lines))
        return
    from rich.console import Console
    from rich.table import Table
    # Names and numbers never wrap (a split number misreads); the descriptions are one
    # `cnncalc zoo NAME` away, and the exact MACs in --format json/csv.
    table = Table(title="cnncalc zoo", title_justify="left", header_style="bold")
    for col, justify in (("name", "left"), ("input", "left"), ("params", "right"),
                         ("MACs", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    families: dict[str, list] = {}
    for row in sorted(rows, key=lambda r: r[0].family == HOMEWORK):  # the blocks come last
        families.setdefault(row[0].family, []).append(row)
    for i, (family, members) in enumerate(families.items()):
        if i:
            table.add_section()
        table.add_row(f"[bold]{family}[/bold]", "", "", "")
        for e, p, m in members:
            table.add_row(f"  {e.name}", e.input, pretty(p), si(m) or pretty(m))
    Console().print(table)
    click.echo("cnncalc zoo NAME shows one; cnncalc params --model NAME costs it")
