"""The default view: a rich table per layer, a summary, and the worked solution."""

from __future__ import annotations

from fractions import Fraction

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..analysis import Analysis
from ..charts import shares
from .summary import field_cells, receptive_summary, training_cells, training_summary
from .values import (
    compact_shape,
    percent,
    pretty,
    pretty_shape,
    si,
    step_pretty,
    where_lines,
)


def _with_si(value) -> str:
    unit = si(value)
    return f"{pretty(value)} ({unit})" if unit else pretty(value)


# the share columns: (quantity, heading, bar colour); memory only with --training
SHARES = (("macs", "MACs share", "magenta"), ("training_bytes", "memory share", "yellow"))
BAR = 10  # cells of a full-width share bar
BAR_MIN = 4  # narrower than this, the share is a percentage alone
_EIGHTHS = " ▏▎▍▌▋▊▉"


def analysis_table(a: Analysis, training: bool = False, receptive: bool = False,
                   width: int | None = None, compact: int = 0,
                   names: int | None = None) -> Group:
    """The per-layer table, its totals and the summary. Each share column gives a
    layer's percentage of the total, with a bar that the heaviest layer fills. ``width``
    (the console's) sizes the bars to the room the other columns leave: narrower bars,
    then percentages alone, then no share columns at all, rather than squeezing the
    numbers. ``compact`` narrows the table for a terminal too narrow for the full one (no
    column rules, ``acts`` for activations, with a legend), so that no number is cut; at
    ``compact=2`` the type and memory-change columns give way too, and ``names`` is the
    width the layer names wrap at."""
    fractions, bar = _shares(a, training, receptive, width, compact, names)
    table = _table(a, training, receptive, fractions, bar, compact, names)
    t = a.total
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("params", f"{_with_si(t['params'])}   trainable "
                    f"{pretty(t['trainable_params'])}, non-trainable "
                    f"{pretty(t['non_trainable_params'])}")
    summary.add_row("buffers", f"{pretty(t['buffers'])}   (running statistics of norms)")
    summary.add_row("MACs", f"{_with_si(t['macs'])}   (FLOPs ≈ 2 × MACs; bias adds not counted)")
    summary.add_row("activations", f"{_with_si(t['activations'])} elements, summed over layers")
    summary.add_row("memory Δ", f"{percent(a.memory_change)} from the input "
                    f"{pretty_shape(a.input_shape)} to the output {pretty_shape(a.output_shape)}")
    if training:
        for label, text in training_summary(a):
            summary.add_row(label, text)
    if receptive:
        summary.add_row("receptive field", receptive_summary(a))
    parts = [table, summary]
    where = where_lines(a.named_sizes)
    if where:
        parts.append(Text("where  " + "\n       ".join(where)))
    if compact:
        legend = "acts: activations, the elements of each layer's output"
        if compact >= 2:
            legend += "; each layer's type and memory change are in --format markdown"
        parts.insert(1, Text(legend, style="dim"))
    if a.symbols:
        parts.append(Text("symbols: " + ", ".join(s.name for s in a.symbols)
                          + " (positive integers; floor() is exact)", style="dim"))
    for u in getattr(a, "unsupported", ()):  # from_torch: what it could not cost
        parts.append(Text(f"warning: {u.name} ({u.type}) {u.reason}", style="yellow"))
    for note in a.notes:  # how a trace went, or a size assumption the figures rest on
        parts.append(Text(f"note: {note}", style="dim"))
    return Group(*parts)


def _shares(a: Analysis, training: bool, receptive: bool, width: int | None, compact: int,
            names: int | None) -> tuple[list, int]:
    """The share columns ``(quantity, heading, colour, fractions)`` and their bar width:
    as wide as the room the other columns leave in ``width`` allows (none if too little)."""
    fractions = [(q, head, colour, f) for q, head, colour in SHARES
                 if (q != "training_bytes" or training) and (f := shares(a, q)) is not None]
    bar = BAR
    if width is not None and fractions:
        natural = _width(a, training, receptive, [], 0, compact, names)
        spare = (width - natural) // len(fractions) - 3  # each column's borders and padding
        bar = min(BAR, spare - 7) if spare - 7 >= BAR_MIN else 0
        if spare < 6:
            fractions = []
    return fractions, bar


def _width(a: Analysis, training: bool, receptive: bool, fractions: list, bar: int,
           compact: int = 0, names: int | None = None) -> int:
    """The width the table takes when nothing limits it, measured on its widest rows
    alone (a column is as wide as its widest cell: measuring every row of a deep
    network took rich most of a second)."""
    return natural_width(_table(a, training, receptive, fractions, bar, compact, names,
                                widest_only=True))


def _table(a: Analysis, training: bool, receptive: bool, fractions: list, bar: int,
           compact: int = 0, names: int | None = None, widest_only: bool = False) -> Table:
    title = (f"{a.name or 'network'} — input {pretty_shape(a.input_shape)} "
             f"({a.layout.upper()}), batch {pretty(a.batch)}")
    table = Table(title=title, title_justify="left", header_style="bold", expand=False,
                  show_lines=False, **({"box": box.SIMPLE_HEAD} if compact else {}))
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    # At compact=2 the layer names may wrap (numbers never do), and the type and mem Δ
    # columns give way (the names say the type).
    lean = compact >= 2
    table.add_column("layer", no_wrap=not lean, overflow="fold", max_width=names)
    if not lean:
        table.add_column("type", style="cyan", no_wrap=True)
    # A long formula folds; in the compact views, printed where every column has its
    # natural width or the names alone give way, nothing else needs to.
    fold = {"no_wrap": True} if compact else {"overflow": "fold"}
    table.add_column("output", **fold)
    table.add_column("params", justify="right", **fold)
    table.add_column("MACs", justify="right", **fold)
    if compact:
        table.add_column("acts", justify="right", **fold)
    else:
        table.add_column("activations", justify="right", min_width=11, **fold)
    if not lean:
        table.add_column("mem Δ", justify="right", **fold)
    if training:
        for head in ("frozen", "∂x MACs", "∂W MACs", "kept for ∂ [B]"):
            table.add_column(head, justify="right", **fold)
    if receptive:
        for head in ("RF", "jump", "start"):
            table.add_column(head, justify="right", **fold)
    for _, head, _, _ in fractions:
        table.add_column(head, no_wrap=True)

    def shown(cells):  # the cells of the columns this table has
        return (*cells[:4], *cells[5:]) if lean else cells

    rows = []
    for r, cells, repeats in _runs(a.layers, training, receptive):
        bars = [share_cell(f[r.index], bar, colour, max(f)) for _, _, colour, f in fractions]
        cells = shown(cells)
        kind = () if lean else (r.type,)
        if repeats:
            rows.append((("⋮", "  " * r.depth + f"⋮ {repeats:,} more rows like these",
                          *(["⋮"] * (len(kind) + len(cells) + len(bars)))), "dim"))
        else:
            rows.append(((str(r.index), "  " * r.depth + r.name, *kind, *cells, *bars), None))
    if widest_only:  # the rows holding some column's widest cell
        widths = [[cell_len(c.plain if isinstance(c, Text) else c) for c in row]
                  for row, _ in rows]
        keep = {max(range(len(rows)), key=lambda i: widths[i][j])
                for j in range(len(widths[0]))} if rows else set()
        rows = [rows[i] for i in sorted(keep)]
    for cells, style in rows:
        table.add_row(*cells, style=style)
    t = a.total
    table.add_section()
    totals = shown((compact_shape(a.output_shape), pretty(t["params"]), pretty(t["macs"]),
                    pretty(t["activations"]), percent(a.memory_change),
                    *(("", pretty(t["backward_input_macs"]), pretty(t["backward_weight_macs"]),
                       pretty(t["saved_bytes"])) if training else ()),
                    *(field_cells(t["receptive_field"]) if receptive else ())))
    table.add_row("", Text("total", style="bold"), *(() if lean else ("",)), *totals,
                  *(Text("100%".rjust(bar + 7 if bar else 6)) for _ in fractions),
                  style="bold")
    return table


def share_cell(fraction, bar: int, colour: str, scale=1) -> Text:
    """``█████▍     43.2%``: the percentage, after a bar of up to ``bar`` cells (drawn in
    eighths) that ``scale``, the largest share of the column, fills."""
    text = Text()
    if bar:
        eighths = round(fraction / scale * bar * 8)
        full, part = divmod(eighths, 8)
        text.append(("█" * full + (_EIGHTHS[part] if part else "")).ljust(bar), style=colour)
        text.append(" ")
    pct = ("0%" if fraction == 0 else "<0.1%" if fraction < Fraction(1, 1000)
           else f"{float(100 * fraction):.1f}%")
    text.append(pct.rjust(6))
    return text


def natural_width(renderable) -> int:
    """The width ``renderable`` takes when nothing limits it."""
    return Console(width=10_000).measure(renderable).maximum


def fitting_table(a: Analysis, width: int, training: bool = False,
                  receptive: bool = False) -> tuple[Group, int]:
    """The table for a terminal ``width`` columns wide, and the width to print it at: the
    full table if it fits (its share bars narrowed or left out to make it fit), else the
    compact one, then the leaner one with its layer names wrapped if need be, if that
    fits; else, with symbols, the full one with its formulas folded, and with numbers only
    the compact one at its own width (the terminal wraps its lines; a table cut to fit
    would cut numbers)."""
    for compact in (0, 1, 2):
        natural = _width(a, training, receptive, *_shares(a, training, receptive, width,
                                                          compact, None), compact)
        if natural <= width:
            return analysis_table(a, training, receptive, width=width, compact=compact), width
    longest = max(len(r.name) + 2 * r.depth for r in a.layers)
    names = longest - (natural - width)
    if names >= NAMES_MIN:
        return analysis_table(a, training, receptive, width=width, compact=2,
                              names=names), width
    if a.symbols:  # formulas fold onto more lines, as text does
        return analysis_table(a, training, receptive, width=width), width
    # numbers too wide even alone: the table at its own width
    return analysis_table(a, training, receptive, width=width, compact=2), natural


NAMES_MIN = 10  # layer names wrap at no fewer columns than this
LONG_RUN = 12  # identical rows in a row beyond this are shown as first, "⋮ N more", last


def _runs(rows, training: bool, receptive: bool):
    """``(row, cells, 0)`` per row to show, and ``(row, cells, n)`` standing for ``n`` rows
    left out of a long run of identical ones (``relu*9999``: the JSON and CSV formats
    keep every row; a table of ten thousand lines is neither readable nor quick)."""
    def cells(r):
        return (compact_shape(r.output_shape), pretty(r.params), pretty(r.macs),
                pretty(r.activations), percent(r.memory_change),
                *(training_cells(r) if training else ()),
                *(field_cells(r.receptive_field) if receptive else ()))

    run: list = []
    for r in rows:
        c = cells(r)
        if run and (r.type, r.depth, c) != (run[0][0].type, run[0][0].depth, run[0][1]):
            yield from _flush(run)
            run = []
        run.append((r, c))
    yield from _flush(run)


def _flush(run: list):
    if len(run) <= LONG_RUN:
        yield from ((r, c, 0) for r, c in run)
        return
    yield (*run[0], 0)
    yield (*run[1], len(run) - 2)
    yield (*run[-1], 0)


def worked_solution(a: Analysis) -> list[str]:
    """The worked steps as plain lines (printed unwrapped, so they can be copied)."""
    lines = ["", "Worked solution"]
    for r in a.layers:
        if r.steps:
            lines.append(f"{r.index} {r.name} ({r.type})")
            lines += ["  " + step_pretty(s) for s in r.steps]
    lines += ["network, input → output", "  " + step_pretty(a.memory_step)]
    return lines
