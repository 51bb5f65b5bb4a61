"""A network as a graph of boxes, and where each box goes: the data behind ``cnncalc graph``.

Built from the analysed rows alone, so it draws any network the calculator reads
(the layer language, the zoo, ``--torch`` models): each row is a node, each entry
of ``Row.inputs`` an edge (-1 is the network's input, a node of its own), and the
first part of a dotted name (``bottleneck3`` of ``bottleneck3.conv1``, ``layer1`` of
``layer1.0.conv1``) the block a row belongs to.

``collapse`` draws each block as one box, and a run of identical blocks one after
another (same layers, shapes, costs and wiring; likewise ``conv*100`` at the top level)
as one box ``×N``.

:func:`layout` places the boxes in layers (ranks by longest path from the input, top
to bottom); an edge that skips ranks runs through a lane of its own in each rank it
crosses, so a shortcut never passes through a box. Nothing here formats text:
``render/graph.py`` writes Mermaid, DOT and SVG.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

INPUT = "input"


@dataclass(frozen=True)
class Node:
    """One box: a row, or with ``collapse`` a block (``count`` of them in a run)."""

    id: str
    name: str
    type: str
    output_shape: tuple
    macs: sp.Expr
    params: sp.Expr
    rows: tuple[int, ...] = ()  # the analysis rows it stands for (none for the input)
    count: int = 1  # identical blocks in a run
    last: str = ""  # the name of the run's last block
    block: bool = False  # a collapsed block (its type is "block")
    uncosted: bool = False  # a --torch trace could not cost (a row of) it


@dataclass(frozen=True)
class Diagram:
    title: str
    nodes: tuple[Node, ...]  # the input first, then in execution order
    edges: tuple[tuple[str, str], ...]  # (from, to), in the order of each row's inputs
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # block name -> its node ids


def block_of(name: str) -> str | None:
    """``bottleneck3.conv1`` -> ``bottleneck3``; a top-level row is in no block."""
    head, dot, _ = name.partition(".")
    return head if dot else None


def diagram(a, collapse: bool = False) -> Diagram:
    """The graph of an analysis: one node per row (or per block with ``collapse``)."""
    # A --torch model with several inputs reads them all as -1, and its analysis keeps the
    # first one's shape: where rows read the input in other shapes, the box names none
    # rather than a wrong one.
    several = any(r.input_shape != a.input_shape for r in a.layers if -1 in r.inputs)
    first = Node(INPUT, INPUT, INPUT, () if several else a.input_shape, sp.S.Zero, sp.S.Zero)
    title = a.name or "network"
    if collapse:
        return _collapsed(a, first, title)
    nodes = [first] + [Node(f"n{r.index}", r.name, r.type, r.output_shape, r.macs, r.params,
                            (r.index,), uncosted=r.name in _uncosted(a)) for r in a.layers]
    edges = [(_id(i), f"n{r.index}") for r in a.layers for i in r.inputs]
    groups: dict[str, list[str]] = {}
    for r in a.layers:
        block = block_of(r.name)
        if block is not None:
            groups.setdefault(block, []).append(f"n{r.index}")
    return Diagram(title, tuple(nodes), tuple(edges),
                   tuple((k, tuple(v)) for k, v in groups.items()))


def _uncosted(a) -> frozenset[str]:
    """The rows a --torch trace kept but could not cost (named in ``a.unsupported``)."""
    return frozenset(u.name for u in getattr(a, "unsupported", ()))


def _id(index: int) -> str:
    return INPUT if index < 0 else f"n{index}"


def _segments(rows) -> list[list]:
    """Consecutive rows of one block together; a top-level row alone."""
    out: list[list] = []
    for r in rows:
        block = block_of(r.name)
        if out and block is not None and block_of(out[-1][-1].name) == block:
            out[-1].append(r)
        else:
            out.append([r])
    return out


def _signature(segment) -> tuple:
    """What makes two blocks (or two top-level layers) identical: their layers, shapes,
    costs and wiring, with names and indices taken relative to the block."""
    start = segment[0].index
    block = block_of(segment[0].name)
    return tuple((r.name[len(block) + 1:] if block else "", r.type, r.output_shape,
                  r.params, r.macs, tuple(i - start if i >= start else "outside"
                                          for i in r.inputs))
                 for r in segment)


def _repeats(seg, prev) -> bool:
    """Whether ``seg`` repeats ``prev`` and follows it: the same signature, and all it
    reads from outside itself is ``prev``'s (not two branches side by side)."""
    if (block_of(seg[0].name) is None) != (block_of(prev[0].name) is None):
        return False
    inside = {r.index for r in prev}
    outside = [i for r in seg for i in r.inputs if i < seg[0].index]
    return (len(seg) == len(prev) and all(i in inside for i in outside)
            and _signature(seg) == _signature(prev))


def _collapsed(a, first: Node, title: str) -> Diagram:
    runs: list[list[list]] = []  # runs of identical segments, one after another
    for seg in _segments(a.layers):
        if runs and _repeats(seg, runs[-1][-1]):
            runs[-1].append(seg)
        else:
            runs.append([seg])
    nodes, owner = [first], {}
    for k, run in enumerate(runs):
        rows = [r for seg in run for r in seg]
        head, tail = run[0][0], run[-1][0]
        block = block_of(head.name)
        node = Node(f"n{head.index}" if block is None else f"b{k}", block or head.name,
                    head.type if block is None else "block", rows[-1].output_shape,
                    sp.Add(*(r.macs for r in rows)), sp.Add(*(r.params for r in rows)),
                    tuple(r.index for r in rows), len(run),
                    "" if len(run) == 1 else block_of(tail.name) or tail.name,
                    block is not None, any(r.name in _uncosted(a) for r in rows))
        nodes.append(node)
        owner.update({r.index: node.id for r in rows})
    edges: dict[tuple[str, str], None] = {}  # ordered, without repeats
    for r in a.layers:
        for i in r.inputs:
            edge = (INPUT if i < 0 else owner[i], owner[r.index])
            if edge[0] != edge[1]:
                edges[edge] = None
    return Diagram(title, tuple(nodes), tuple(edges))


# -- layout ------------------------------------------------------------------------------

@dataclass
class Layout:
    """Ranks (top to bottom) and columns (left to right) in grid units: ``place`` of each
    node, and for each edge the lanes ``(rank, column)`` it runs through."""

    place: dict[str, tuple[int, int]]
    routes: list[list[tuple[int, int]]] = field(default_factory=list)

    @property
    def ranks(self) -> int:
        return 1 + max(r for r, _ in self.place.values())

    @property
    def columns(self) -> int:
        cols = [c for _, c in self.place.values()]
        cols += [c for route in self.routes for _, c in route]
        return 1 + max(cols)


def layout(d: Diagram) -> Layout:
    """Longest-path ranks; in each rank, boxes and lanes ordered by the column of what
    feeds them and packed left to right, so a chain runs straight down and a branch
    steps aside."""
    preds: dict[str, list[str]] = {n.id: [] for n in d.nodes}
    for u, v in d.edges:
        preds[v].append(u)
    rank: dict[str, int] = {}
    for n in d.nodes:  # nodes come in execution order: every input before its user
        rank[n.id] = 1 + max((rank[p] for p in preds[n.id]), default=-1)
    # items per rank: (key, the item it follows); a lane is ("lane", edge, rank)
    items: dict[int, list[tuple]] = {}
    for n in d.nodes:
        follow = preds[n.id][0] if preds[n.id] else None
        items.setdefault(rank[n.id], []).append((n.id, follow))
    for e, (u, v) in enumerate(d.edges):
        prev = u
        for r in range(rank[u] + 1, rank[v]):
            key = ("lane", e, r)
            items[r].append((key, prev))
            prev = key
    column: dict = {}
    for r in sorted(items):
        wanted = [(column.get(follow, 0), isinstance(key, tuple), pos, key)
                  for pos, (key, follow) in enumerate(items[r])]
        last = -1
        for want, _, _, key in sorted(wanted):
            column[key] = last = max(want, last + 1)
    place = {n.id: (rank[n.id], column[n.id]) for n in d.nodes}
    routes = [[(r, column[("lane", e, r)]) for r in range(rank[u] + 1, rank[v])]
              for e, (u, v) in enumerate(d.edges)]
    return Layout(place, routes)
