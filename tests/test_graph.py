"""``cnncalc graph``: the structure behind each picture, against networks written by hand.

The SVG is parsed with xml.etree, the DOT text with a small parser of the subset it
uses, the Mermaid text line by line; each must hold one node per layer (and the
input) and one edge per connection, the connections being those of the module or
spec as written, branches and merges included.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sympy as sp
import torch
from cli_helpers import run_any, run_ok
from torch import nn

from cnncalc import analyze
from cnncalc.graph import diagram, layout
from cnncalc.render.graph import label_lines, to_dot, to_mermaid, to_svg
from cnncalc.torch_trace import from_torch

SVG = "{http://www.w3.org/2000/svg}"


class Inception(nn.Module):
    """Three branches from the input, concatenated, then a 1x1 head."""

    def __init__(self):
        super().__init__()
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b2 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.b3 = nn.MaxPool2d(3, 1, 1)
        self.head = nn.Conv2d(18, 10, 1)

    def forward(self, x):
        return self.head(torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1))


INCEPTION_EDGES = {("input", "b1"), ("input", "b2.0"), ("b2.0", "b2.1"), ("b2.1", "b2.2"),
                   ("input", "b3"), ("b1", "cat"), ("b2.2", "cat"), ("b3", "cat"),
                   ("cat", "head")}
# residual(...) with a shape-keeping body: the identity shortcut joins the add
RESIDUAL = "residual(conv(8,k=3,p=1), bn, relu, conv(8,k=3,p=1), bn), relu"
RESIDUAL_EDGES = {("input", "res1.conv1"), ("res1.conv1", "res1.bn1"),
                  ("res1.bn1", "res1.relu1"), ("res1.relu1", "res1.conv2"),
                  ("res1.conv2", "res1.bn2"), ("res1.bn2", "res1.add"), ("input", "res1.add"),
                  ("res1.add", "relu1")}
# a stride-2 bottleneck: the projection (conv, bn) is a branch of its own
BOTTLENECK_EDGES = {("input", "bottleneck1.conv1"), ("bottleneck1.conv1", "bottleneck1.bn1"),
                    ("bottleneck1.bn1", "bottleneck1.relu1"),
                    ("bottleneck1.relu1", "bottleneck1.conv2"),
                    ("bottleneck1.conv2", "bottleneck1.bn2"),
                    ("bottleneck1.bn2", "bottleneck1.relu2"),
                    ("bottleneck1.relu2", "bottleneck1.conv3"),
                    ("bottleneck1.conv3", "bottleneck1.bn3"),
                    ("input", "bottleneck1.shortcut.conv"),
                    ("bottleneck1.shortcut.conv", "bottleneck1.shortcut.bn"),
                    ("bottleneck1.bn3", "bottleneck1.add"),
                    ("bottleneck1.shortcut.bn", "bottleneck1.add"),
                    ("bottleneck1.add", "bottleneck1.relu3")}


# the layer language's own branches: the same module as text, a U-Net skip and a gate
SPEC_INCEPTION = ("concat(conv(4, k=1), conv(4, k=1) -> relu -> conv(6, k=3, p=1), "
                  "maxpool(3, s=1, p=1), name=inc), conv(10, k=1)")
SPEC_INCEPTION_EDGES = {("input", "inc.b1.conv1"), ("input", "inc.b2.conv1"),
                        ("inc.b2.conv1", "inc.b2.relu1"), ("inc.b2.relu1", "inc.b2.conv2"),
                        ("input", "inc.b3.maxpool1"), ("inc.b1.conv1", "inc.cat"),
                        ("inc.b2.conv2", "inc.cat"), ("inc.b3.maxpool1", "inc.cat"),
                        ("inc.cat", "conv1")}
SKIP = "conv(4, k=3, p=1), save(e1), maxpool(2), deconv(4, k=2, s=2), concat(e1, identity), se(2)"
SKIP_EDGES = {("input", "conv1"), ("conv1", "maxpool1"), ("maxpool1", "deconv1"),
              ("conv1", "cat1.cat"), ("deconv1", "cat1.cat"), ("cat1.cat", "se1.gap1"),
              ("se1.gap1", "se1.conv1"), ("se1.conv1", "se1.relu1"),
              ("se1.relu1", "se1.conv2"), ("se1.conv2", "se1.sigmoid1"),
              ("cat1.cat", "se1.mul"), ("se1.sigmoid1", "se1.mul")}


def inception():
    return from_torch(Inception(), "8x16x16")


def networks():
    return [("inception", inception(), INCEPTION_EDGES),
            ("residual", analyze(RESIDUAL, input="8x16x16"), RESIDUAL_EDGES),
            ("bottleneck", analyze("bottleneck(4, s=2)", input="8x16x16"), BOTTLENECK_EDGES),
            ("spec_inception", analyze(SPEC_INCEPTION, input="8x16x16"), SPEC_INCEPTION_EDGES),
            ("skip", analyze(SKIP, input="8x16x16"), SKIP_EDGES)]


def named(edges, names) -> set[tuple[str, str]]:
    return {(names[u], names[v]) for u, v in edges}


# -- the diagram and its layout -----------------------------------------------------------

@pytest.mark.parametrize("case", networks(), ids=lambda c: c[0])
def test_diagram_has_every_layer_and_connection(case):
    _, a, expected = case
    d = diagram(a)
    names = {n.id: n.name for n in d.nodes}
    assert [n.name for n in d.nodes] == ["input", *(r.name for r in a.layers)]
    assert len(d.edges) == len(expected) and named(d.edges, names) == expected


@pytest.mark.parametrize("case", networks(), ids=lambda c: c[0])
def test_layout_ranks_run_down_and_lanes_never_share_a_cell(case):
    _, a, _ = case
    d = diagram(a)
    lay = layout(d)
    cells = list(lay.place.values()) + [cell for route in lay.routes for cell in route]
    assert len(cells) == len(set(cells))  # no box or lane on top of another
    for (u, v), route in zip(d.edges, lay.routes):
        (ru, _), (rv, _) = lay.place[u], lay.place[v]
        assert rv > ru and [r for r, _ in route] == list(range(ru + 1, rv))


def test_a_chain_runs_straight_down():
    d = diagram(analyze("conv(4,k=3), relu, maxpool(2)", input="3x8x8"))
    assert set(layout(d).place.values()) == {(0, 0), (1, 0), (2, 0), (3, 0)}


# -- the three outputs ----------------------------------------------------------------------

def _svg(a, collapse=False):
    root = ET.fromstring(to_svg(diagram(a, collapse=collapse)))
    nodes = root.findall(f"{SVG}g[@class='node']")
    edges = root.findall(f"{SVG}path[@class='edge']")
    return root, nodes, edges


@pytest.mark.parametrize("case", networks(), ids=lambda c: c[0])
def test_svg_holds_one_box_per_layer_and_one_path_per_connection(case):
    _, a, expected = case
    root, nodes, edges = _svg(a)
    assert [n.get("data-name") for n in nodes] == ["input", *(r.name for r in a.layers)]
    names = {n.get("data-id"): n.get("data-name") for n in nodes}
    pairs = [(e.get("data-from"), e.get("data-to")) for e in edges]
    assert len(pairs) == sum(len(r.inputs) for r in a.layers)
    assert named(pairs, names) == expected
    # each box states the layer's output shape and its MACs, exactly
    for node, r in zip(nodes[1:], a.layers):
        text = " ".join(t.text for t in node.findall(f"{SVG}text"))
        assert "×".join(f"{int(d):,}" for d in r.output_shape) in text
        assert (f"{int(r.macs):,} MACs" in text) == (r.macs != 0)


def test_svg_boxes_stay_inside_the_picture_and_apart():
    root, nodes, _ = _svg(analyze("bottleneck(4, s=2)", input="8x16x16"))
    width, height = float(root.get("width")), float(root.get("height"))
    boxes = []
    for n in nodes:
        rect = n.find(f"{SVG}rect")
        x, y, w, h = (float(rect.get(k)) for k in ("x", "y", "width", "height"))
        assert 0 <= x and x + w <= width and 0 <= y and y + h <= height
        boxes.append((x, y, w, h))
    for i, (x, y, w, h) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1:]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y


# A parser for the DOT subset cnncalc writes: statements `id [attrs];`, `a -> b;`,
# `key=value;` and `subgraph name { ... }`, with quoted strings and their escapes.
_DOT_TOKEN = re.compile(r'\s*(?:(->)|("(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z_0-9]*|\d+)'
                        r'|([{}\[\];,=]))')


def parse_dot(text: str) -> tuple[dict[str, dict], list[tuple[str, str]], list[str]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _DOT_TOKEN.match(text, pos)
        assert m, f"cannot read DOT at {text[pos:pos + 20]!r}"
        tokens.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    nodes, edges, clusters = {}, [], []
    assert tokens[0] == "digraph" and tokens[2] == "{" and tokens[-1] == "}"
    i, depth = 3, 1
    while i < len(tokens) - 1:
        t = tokens[i]
        if t == "subgraph":
            clusters.append(tokens[i + 1])
            assert tokens[i + 2] == "{"
            depth, i = depth + 1, i + 3
        elif t == "}":
            depth, i = depth - 1, i + 1
        elif tokens[i + 1] == "->":
            edges.append((t, tokens[i + 2]))
            assert tokens[i + 3] == ";"
            i += 4
        elif tokens[i + 1] == "=":  # a graph attribute
            assert tokens[i + 3] == ";"
            i += 4
        elif tokens[i + 1] == "[":
            end = tokens.index("]", i)
            attrs, body = {}, tokens[i + 2:end]
            for k in range(0, len(body), 4):
                attrs[body[k]] = body[k + 2]
                assert body[k + 1] == "=" and (k + 3 >= len(body) or body[k + 3] == ",")
            assert tokens[end + 1] == ";"
            if t not in ("node", "edge", "graph"):
                assert t not in nodes, f"{t} defined twice"
                nodes[t] = attrs
            i = end + 2
        else:
            raise AssertionError(f"unexpected DOT token {t!r}")
    assert depth == 1
    return nodes, edges, clusters


@pytest.mark.parametrize("case", networks(), ids=lambda c: c[0])
def test_dot_parses_with_one_node_per_layer(case):
    _, a, expected = case
    nodes, edges, clusters = parse_dot(to_dot(diagram(a)))
    names = {k: v["label"].strip('"').split("\\n")[0] for k, v in nodes.items()}
    assert sorted(names.values()) == sorted(["input", *(r.name for r in a.layers)])
    assert len(edges) == len(expected) and named(edges, names) == expected
    assert len(clusters) == len({r.name.split(".")[0] for r in a.layers if "." in r.name})


_MERMAID_NODE = re.compile(r'^\s*(\w+)(?:\["|\(\[")(.*?)(?:"\]|"\]\))$')


@pytest.mark.parametrize("case", networks(), ids=lambda c: c[0])
def test_mermaid_has_one_node_line_per_layer(case):
    _, a, expected = case
    lines = to_mermaid(diagram(a)).splitlines()
    assert lines[1] == "flowchart TD"
    nodes = {}
    for line in lines:
        m = _MERMAID_NODE.match(line)
        if m:
            assert m.group(1) not in nodes
            nodes[m.group(1)] = m.group(2).split("<br/>")[0]
    assert sorted(nodes.values()) == sorted(["input", *(r.name for r in a.layers)])
    edges = [tuple(line.split(" --> ")) for line in lines if " --> " in line]
    assert named([(u.strip(), v) for u, v in edges], nodes) == expected
    assert len(edges) == len(expected)
    opened = sum(line.strip().startswith("subgraph ") for line in lines)
    assert opened == sum(line.strip() == "end" for line in lines)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(5, 3)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def test_several_inputs_name_no_single_shape():
    a = from_torch(TwoInputs(), ["4", "5"])
    d = diagram(a)
    assert d.nodes[0].output_shape == () and "see --input" in to_mermaid(d).splitlines()[2]
    assert named(d.edges, {n.id: n.name for n in d.nodes}) == {
        ("input", "a"), ("input", "b"), ("a", "add"), ("b", "add")}


class WithBilinear(nn.Module):
    """nn.Bilinear has no rule: its row is kept, its MACs not counted."""

    def __init__(self):
        super().__init__()
        self.conv, self.mix = nn.Conv2d(3, 4, 3), nn.Bilinear(6, 6, 2)

    def forward(self, x):
        y = self.conv(x)
        return self.mix(y, y)


@pytest.mark.parametrize("collapse", [False, True])
def test_what_a_trace_could_not_cost_says_so(collapse):
    d = diagram(from_torch(WithBilinear(), "3x8x8"), collapse=collapse)
    lines = {n.name: label_lines(n) for n in d.nodes}
    assert lines["mix"][2].startswith("MACs not costed")
    assert "not costed" not in lines["conv"][2]


def test_labels_are_escaped():
    a = analyze("conv(4,k=3)", input="3x8x8", name='say "hi" & <go>')
    assert '"hi"' not in to_mermaid(diagram(a)).split("\n")[0]
    assert parse_dot(to_dot(diagram(a)))  # the quotes are escaped
    ET.fromstring(to_svg(diagram(a)))  # well-formed XML


def test_symbolic_network_draws_formulas():
    a = analyze("conv(K,k=3,p=1), relu", input="CxHxW")
    _, nodes, edges = _svg(a)
    assert len(nodes) == 3 and len(edges) == 2
    text = " ".join(t.text for t in nodes[1].iter(f"{SVG}text"))
    macs = re.search(r"(\S+) MACs", text).group(1)
    C, H, K, W = sp.symbols("C H K W")
    assert sp.sympify(macs.replace("·", "*")) - 9 * C * K * H * W == 0


# -- collapsing -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet50():
    return analyze(model="resnet50")


def test_collapse_resnet50_into_its_stages(resnet50):
    """ResNet-50 has 3, 4, 6 and 3 bottlenecks a stage; the first of each projects its
    shortcut, the others are identical, so each stage is a box and a box ×(n-1)."""
    a = resnet50
    d = diagram(a, collapse=True)
    blocks = [n for n in d.nodes if n.block]
    assert [n.count for n in blocks] == [1, 2, 1, 3, 1, 5, 1, 2]
    assert [n.name for n in d.nodes if not n.block] == [
        "input", "conv1", "bn1", "relu1", "maxpool1", "gap1", "flatten1", "fc1"]
    assert sum(n.macs for n in d.nodes) == a.total["macs"]
    assert sum(n.params for n in d.nodes) == 25_557_032  # torchvision's ResNet-50
    assert sorted(i for n in d.nodes for i in n.rows) == list(range(len(a.layers)))
    # a chain of boxes: each feeds the next
    order = [n.id for n in d.nodes]
    assert list(d.edges) == list(zip(order, order[1:]))
    _, nodes, edges = (lambda r: (r, r.findall(f"{SVG}g[@class='node']"),
                                  r.findall(f"{SVG}path[@class='edge']")))(
        ET.fromstring(to_svg(d)))
    assert len(nodes) == len(d.nodes) and len(edges) == len(d.edges)


class Twins(nn.Module):
    """Two identical convs side by side, then two identical ones in a row."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
        self.c, self.d = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)

    def forward(self, x):
        return self.d(self.c(torch.cat([self.a(x), self.b(x)], 1)))


def test_collapse_merges_layers_in_a_row_not_side_by_side():
    d = diagram(from_torch(Twins(), "3x5x5"), collapse=True)
    assert [(n.name, n.count) for n in d.nodes] == [
        ("input", 1), ("a", 1), ("b", 1), ("cat", 1), ("c", 2)]
    run = d.nodes[-1]
    assert run.last == "d" and run.macs == 2 * 8 * 8 * 5 * 5 and run.params == 2 * (64 + 8)
    assert label_lines(run) == ["c … d (×2)", "conv2d · 8×5×5", "3,200 MACs · 144 params in all"]


def test_collapse_keeps_branches_between_blocks():
    d = diagram(inception(), collapse=True)
    names = {n.id: n.name for n in d.nodes}
    assert named(d.edges, names) == {("input", "b1"), ("input", "b2"), ("input", "b3"),
                                     ("b1", "cat"), ("b2", "cat"), ("b3", "cat"),
                                     ("cat", "head")}


# -- the command ----------------------------------------------------------------------------

def test_graph_command_formats(tmp_path, capsys):
    args = ["graph", "--input", "8x16x16", "--layers", RESIDUAL]
    assert run_ok(args, capsys).splitlines()[1] == "flowchart TD"
    assert run_ok([*args, "--format", "dot"], capsys).startswith("digraph")
    out = tmp_path / "net.svg"
    code, stdout, err = run_any([*args, "--output", str(out)], capsys)
    assert code == 0 and stdout == "" and "wrote" in err
    assert len(ET.parse(out).getroot().findall(f"{SVG}g[@class='node']")) == 8
    assert [p.name for p in tmp_path.iterdir()] == ["net.svg"]


def test_graph_of_a_torch_model_from_the_cli(tmp_path, capsys, monkeypatch):
    (tmp_path / "incnet.py").write_text(
        "import torch\nfrom torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 3, padding=1)\n"
        "    def forward(self, x):\n"
        "        return torch.cat([self.a(x), self.b(x)], 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    nodes, edges, _ = parse_dot(run_ok(["graph", "--torch", "incnet:Net", "--input", "3x6x6",
                                        "-o", "dot"], capsys))
    assert len(nodes) == 4 and len(edges) == 4


@pytest.mark.parametrize("args, message", [
    (["--model", "lenet5", "--output", "x.png"], "should end in .mmd, .dot, .gv or .svg"),
    (["--model", "lenet5", "--output", "no/such/x.svg"], "does not exist"),
    (["--input", "3x8x8", "--layers", "conv(4,k=9)"], "conv"),
    (["--layers", "conv(4,k=3)"], "--input is required"),
])
def test_graph_errors_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_any(["graph", *args], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert out == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["graph", "params", "compare"])
def test_help_of_the_commands_imports_neither_sympy_nor_rich(command):
    code = ("import sys; from cnncalc.cli import main\n"
            f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'sympy' not in sys.modules and 'rich' not in sys.modules, 'eager import'\n"
            "assert 'matplotlib' not in sys.modules, 'eager import'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


FIGURES = Path(__file__).resolve().parents[1] / "examples" / "figures"


def test_the_docs_diagrams_are_up_to_date(resnet50):
    """docs/charts.md shows these; refresh them with the commands it gives."""
    bottleneck = analyze("bottleneck(64), bottleneck(128, s=2)", input="256x56x56")
    for name, d in (("bottleneck-graph.svg", diagram(bottleneck)),
                    ("resnet50-graph.svg", diagram(resnet50, collapse=True))):
        assert (FIGURES / name).read_text(encoding="utf-8") == to_svg(d), (
            f"examples/figures/{name} is stale: see docs/charts.md")
