"""A :class:`~cnncalc.graph.Diagram` as Mermaid, Graphviz DOT or a self-drawn SVG.

Each box says the layer's name, its type and output shape, and its cost (MACs and
params, exact). The SVG needs no Graphviz: it draws the boxes where
:func:`cnncalc.graph.layout` puts them, and each connection as one path (through the
lanes of the ranks it crosses), with the full text of a box in its tooltip.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from ..graph import INPUT, Diagram, Node, layout
from .values import compact_shape, pretty

GRAPH_FORMATS = ("mermaid", "dot", "svg")


def label_lines(n: Node) -> list[str]:
    """Name (×N for a run), type and output shape, cost."""
    name = n.name if n.count == 1 else f"{n.name} … {n.last} (×{n.count})"
    if n.id == INPUT:  # several inputs of a --torch model: no one shape
        return [name, compact_shape(n.output_shape) if n.output_shape else "see --input"]
    layers = len(n.rows)
    kind = f"{layers} layer{'s' if layers != 1 else ''}" if n.block else n.type
    cost = [f"{pretty(v)} {unit}" for v, unit in ((n.macs, "MACs"), (n.params, "params"))
            if v != 0]
    cost = " · ".join(cost) + (" in all" if cost and n.count > 1 else "")
    if n.uncosted:  # the table and JSON say why
        cost = "MACs not costed" + (f" · {cost}" if cost else "")
    return [name, f"{kind} · {compact_shape(n.output_shape)}", cost or "no MACs"]


# -- Mermaid ---------------------------------------------------------------------------

def _mermaid_text(text: str) -> str:
    for a, b in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(a, b)
    return text


def to_mermaid(d: Diagram) -> str:
    """``flowchart TD``: one node line per box (blocks as subgraphs), then the edges."""
    def node(n: Node, indent: str) -> str:
        text = "<br/>".join(_mermaid_text(line) for line in label_lines(n))
        shape = ('(["', '"])') if n.id == INPUT else ('["', '"]')
        return f"{indent}{n.id}{shape[0]}{text}{shape[1]}"

    lines = [f"%% cnncalc graph: {_mermaid_text(d.title)}", "flowchart TD"]
    for group, members in _in_order(d):
        if group is None:
            lines.append(node(members[0], "  "))
            continue
        lines.append(f'  subgraph g{group}["{_mermaid_text(d.groups[group][0])}"]')
        lines += [node(n, "    ") for n in members]
        lines.append("  end")
    lines += [f"  {u} --> {v}" for u, v in d.edges]
    return "\n".join(lines) + "\n"


def _in_order(d: Diagram):
    """``(None, [node])`` for a node in no block and ``(k, nodes)`` for block ``k`` where
    its first node comes, so the text follows the network."""
    group_of = {i: k for k, (_, ids) in enumerate(d.groups) for i in ids}
    by_id = {n.id: n for n in d.nodes}
    done = set()
    for n in d.nodes:
        k = group_of.get(n.id)
        if k is None:
            yield None, [n]
        elif k not in done:
            done.add(k)
            yield k, [by_id[i] for i in d.groups[k][1]]


# -- DOT -------------------------------------------------------------------------------

def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(d: Diagram) -> str:
    """A ``digraph``; blocks are ``cluster`` subgraphs, so Graphviz boxes them."""
    def node(n: Node, indent: str) -> str:
        text = "\\n".join(_dot_text(line) for line in label_lines(n))
        extra = ', shape=oval' if n.id == INPUT else ""
        return f'{indent}{n.id} [label="{text}"{extra}];'

    lines = [f'digraph "{_dot_text(d.title)}" {{', "  rankdir=TB;",
             '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=10];']
    for group, members in _in_order(d):
        if group is None:
            lines.append(node(members[0], "  "))
            continue
        lines.append(f"  subgraph cluster_{group} {{")
        lines.append(f'    label="{_dot_text(d.groups[group][0])}"; style=dashed;')
        lines += [node(n, "    ") for n in members]
        lines.append("  }")
    lines += [f"  {u} -> {v};" for u, v in d.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- SVG -------------------------------------------------------------------------------

CHAR_W, LINE_H, PAD = 7.2, 14, 8  # monospace 11 px: a character (with room to spare), a line
MAX_CHARS = 44  # longer lines are cut with … (the tooltip keeps the whole text)
GAP_X, GAP_Y = 28, 34  # between columns, between ranks
GROUP_PAD = 8


def _clip(line: str) -> str:
    return line if len(line) <= MAX_CHARS else line[:MAX_CHARS - 1] + "…"


def to_svg(d: Diagram) -> str:
    """Boxes in ranks top to bottom, one ``<g class="node">`` per box and one
    ``<path class="edge">`` per connection."""
    lay = layout(d)
    labels = {n.id: label_lines(n) for n in d.nodes}
    chars = min(MAX_CHARS, max(len(line) for lines in labels.values() for line in lines))
    box_w = chars * CHAR_W + 2 * PAD
    box_h = 3 * LINE_H + PAD
    pitch_x, pitch_y = box_w + GAP_X, box_h + GAP_Y
    margin = GROUP_PAD + 16

    def x(col):  # left edge of a column
        return margin + col * pitch_x

    def y(rank):  # top edge of a rank
        return margin + rank * pitch_y

    width = margin * 2 + lay.columns * pitch_x - GAP_X
    height = margin * 2 + lay.ranks * pitch_y - GAP_Y
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
           'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="11">',
           f"<title>{escape(d.title)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
           'fill="#555"/></marker></defs>',
           '<rect width="100%" height="100%" fill="white"/>']
    for name, ids in d.groups:
        cols = [lay.place[i][1] for i in ids]
        ranks = [lay.place[i][0] for i in ids]
        left, top = x(min(cols)) - GROUP_PAD, y(min(ranks)) - GROUP_PAD - 12
        right = x(max(cols)) + box_w + GROUP_PAD
        bottom = y(max(ranks)) + box_h + GROUP_PAD
        out.append(f'<g class="group" data-name={quoteattr(name)}><rect x="{left:.1f}" '
                   f'y="{top:.1f}" width="{right - left:.1f}" height="{bottom - top:.1f}" '
                   'rx="6" fill="#f4f6fb" stroke="#b0b8d0" stroke-dasharray="4 3"/>'
                   f'<text x="{left + 6:.1f}" y="{top + 11:.1f}" fill="#556" '
                   f'font-size="10">{escape(_clip(name))}</text></g>')
    inputs_of: dict[str, list[int]] = {}
    for e, (_, v) in enumerate(d.edges):
        inputs_of.setdefault(v, []).append(e)
    for e, ((u, v), lanes) in enumerate(zip(d.edges, lay.routes)):
        (ur, uc), (vr, vc) = lay.place[u], lay.place[v]
        points = [(x(uc) + box_w / 2, y(ur) + box_h)]
        for r, c in lanes:
            points += [(x(c) + box_w / 2, y(r)), (x(c) + box_w / 2, y(r) + box_h)]
        k, m = inputs_of[v].index(e), len(inputs_of[v])
        spread = min(24.0, box_w / (m + 1))
        points.append((x(vc) + box_w / 2 + (k - (m - 1) / 2) * spread, y(vr)))
        path = " ".join(f"{'M' if i == 0 else 'L'} {px:.1f} {py:.1f}"
                        for i, (px, py) in enumerate(points))
        out.append(f'<path class="edge" data-from="{u}" data-to="{v}" d="{path}" fill="none" '
                   'stroke="#555" stroke-width="1.2" marker-end="url(#arrow)"/>')
    for n in d.nodes:
        r, c = lay.place[n.id]
        lines = labels[n.id]
        fill = "#eef3e8" if n.id == INPUT else "#ffffff" if n.macs == 0 else "#e8eefb"
        out.append(f'<g class="node" data-id="{n.id}" data-name={quoteattr(n.name)}>'
                   f"<title>{escape(chr(10).join(lines))}</title>"
                   f'<rect x="{x(c):.1f}" y="{y(r):.1f}" width="{box_w:.1f}" '
                   f'height="{box_h:.1f}" rx="5" fill="{fill}" stroke="#333"/>')
        for i, line in enumerate(lines):
            weight = ' font-weight="bold"' if i == 0 else ""
            out.append(f'<text x="{x(c) + PAD:.1f}" y="{y(r) + PAD / 2 + LINE_H * (i + 0.8):.1f}"'
                       f"{weight}>{escape(_clip(line))}</text>")
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


RENDERERS = {"mermaid": to_mermaid, "dot": to_dot, "svg": to_svg}
