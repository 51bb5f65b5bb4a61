"""The CLI as a user runs it: the contract's examples, every format, files, subs."""

from __future__ import annotations

import csv
import io
import json
import re
import sys

import pytest
from cli_helpers import run_ok as run

import cnncalc

LENET = ("conv(6,k=5), relu, maxpool(2), conv(16,k=5), relu, maxpool(2), flatten, "
         "fc(120), relu, fc(84), relu, fc(10)")

CONTRACT_EXAMPLES = [
    ["params", "--input", "64x64x128", "--layout", "hwc", "--no-bias", "--layers",
     "conv(256,k=3,s=2,p=1), conv(512,k=3,p=1)", "--show-work"],
    ["params", "--input", "3x32x32", "--layers", LENET],
    ["params", "--input", "32x56x56", "--layers",
     "residual(conv(32,k=3,p=1), bn, relu, conv(32,k=3,p=1), bn)"],
    ["params", "--input", "CxHxW", "--layers", "conv(K,k=F,s=S,p=P)", "--format", "latex"],
    ["params", "--model", "resnet50", "--input", "3x224x224", "--format", "json"],
    ["zoo"],
]


@pytest.mark.parametrize("args", CONTRACT_EXAMPLES, ids=lambda a: " ".join(a[:3]))
def test_contract_examples_run(args, capsys):
    assert run(args, capsys).strip()


def test_json_follows_the_contract_schema(capsys):
    doc = json.loads(run(["params", "--input", "3x32x32", "--layers", LENET, "--format",
                          "json"], capsys))
    assert doc["input_shape"] == [3, 32, 32] and doc["batch"] == 1
    first = doc["layers"][0]
    assert {k: first[k] for k in ("index", "name", "type", "output_shape", "params", "macs",
                                  "activations")} == {
        "index": 0, "name": "conv1", "type": "conv2d", "output_shape": [6, 28, 28],
        "params": 5 * 5 * 3 * 6 + 6, "macs": 5 * 5 * 3 * 6 * 28 * 28, "activations": 6 * 28 * 28}
    assert set(doc["total"]) >= {"params", "trainable_params", "non_trainable_params",
                                 "buffers", "macs", "activations"}
    assert all(isinstance(v, int) for k, v in doc["total"].items()
               if k not in ("output_shape", "memory_change", "receptive_field"))
    for key in ("params", "macs", "activations", "buffers"):
        assert doc["total"][key] == sum(r[key] for r in doc["layers"])


def test_symbolic_json_holds_strings(capsys):
    doc = json.loads(run(["params", "--input", "CxHxW", "--layers", "conv(K,k=3,p=1)",
                          "--format", "json", "--batch", "N"], capsys))
    assert doc["layers"][0]["output_shape"] == ["K", "H", "W"]
    assert doc["total"]["params"] == "9*C*K + K"
    assert doc["batch"] == "N"
    assert doc["symbols"] == ["C", "H", "K", "N", "W"]


def test_show_work_in_json_carries_the_steps(capsys):
    doc = json.loads(run(["params", "--input", "3x32x32", "--layers", "conv(6,k=5)",
                          "--format", "json", "--show-work"], capsys))
    work = {w["quantity"]: w for w in doc["layers"][0]["work"]}
    assert work["H_out"]["value"] == "28"
    assert work["params"]["substituted"] == "3*6*5*5 + 6"


def test_csv_rows_and_total(capsys):
    rows = list(csv.DictReader(io.StringIO(run(["params", "--input", "3x32x32", "--layers",
                                                LENET, "--format", "csv"], capsys))))
    assert len(rows) == 13 and rows[-1]["name"] == "total"
    assert sum(int(r["params"]) for r in rows[:-1]) == int(rows[-1]["params"])
    assert rows[0]["output_shape"] == "6x28x28"


def test_markdown_table(capsys):
    out = run(["params", "--model", "lenet5", "--format", "markdown", "--show-work"], capsys)
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 12 + 1  # header, rule, 12 layers, total
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "### Worked solution" in out


def test_latex_keeps_the_floor(capsys):
    out = run(["params", "--input", "CxHxW", "--layers", "conv(K,k=F,s=S,p=P)", "--format",
               "latex", "--show-work"], capsys)
    assert r"\begin{tabular}" in out and r"\end{tabular}" in out
    assert r"\left\lfloor" in out
    assert r"\begin{align*}" in out


def test_subs_and_file(tmp_path, capsys):
    spec = tmp_path / "net.cnn"
    spec.write_text("# a small net\nconv(16, k=3, p=1)\nrelu\nmaxpool(2)  # halves H, W\n"
                    "residual(\n  conv(16, k=3, p=1),\n  bn\n)\n", encoding="utf-8")
    doc = json.loads(run(["params", "--input", "3xHxW", "--file", str(spec), "--subs",
                          "H=64,W=48", "--format", "json"], capsys))
    assert doc["total"]["output_shape"] == [16, 32, 24]
    direct = cnncalc.analyze("conv(16,k=3,p=1), relu, maxpool(2), residual(conv(16,k=3,p=1), bn)",
                             input="3x64x48")
    assert doc["total"]["macs"] == int(direct.total["macs"])


def test_model_uses_its_default_input(capsys):
    doc = json.loads(run(["params", "--model", "mobilenet_v2", "--format", "json"], capsys))
    assert doc["input_shape"] == [3, 224, 224]
    assert doc["total"]["params"] == 3_504_872  # torchvision's published count


def test_zoo_lists_every_model(capsys):
    doc = json.loads(run(["zoo", "--format", "json"], capsys))
    names = {m["name"] for m in doc}
    assert {"lenet5", "alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v2"} <= names
    assert {m["name"]: m["params"] for m in doc}["resnet18"] == 11_689_512


def test_help_does_not_import_sympy():
    import subprocess
    import sys
    code = ("import sys; from cnncalc.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'sympy' not in sys.modules and 'rich' not in sys.modules, 'eager import'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_numbers_read_the_same_with_and_without_subs(capsys):
    """A coefficient left next to a symbol by --subs keeps its thousands separators,
    as a whole number does. conv(16,k=3) on 3x64x64: 16·3·3·3·64·64 MACs per image."""
    import re

    spec = ["params", "--input", "3xHxW", "--layers", "conv(16,k=3,p=1), relu, maxpool(2)"]
    macs = 16 * 3 * 3 * 3 * 64 * 64
    partial = run([*spec, "--batch", "N", "--subs", "H=64,W=64"], capsys)
    full = run([*spec, "--batch", "8", "--subs", "H=64,W=64"], capsys)
    assert f"{macs:,}·N" in partial and f"{8 * macs:,}" in full
    for out in (partial, full):
        assert not re.search(r"(?<![\w.])\d{4,}", out), out


def test_mistyped_command_gets_a_suggestion(capsys):
    from cli_helpers import run_any

    code, out, err = run_any(["parms", "--model", "lenet5"], capsys)
    assert code == 2 and err == "Error: No such command 'parms'. Did you mean 'params'?\n"
    code, _, err = run_any(["xyzzy"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert all(name in err for name in ("params", "zoo", "norm", "derive"))


def test_bare_cnncalc_prints_a_short_usage(capsys):
    """Like any click group without a command (status 2 since click 8.2), but a usage
    line and the commands, not the whole help."""
    from cli_helpers import run_any

    from cnncalc.cli import COMMANDS

    code, out, err = run_any([], capsys)
    assert code == 2 and out == ""
    assert err.startswith("Usage: cnncalc") and "Error" not in err and len(err.splitlines()) <= 4
    assert f"Commands: {', '.join(COMMANDS)}" in err and "cnncalc --help" in err


@pytest.mark.parametrize("args", [
    ["params", "--model", "y" * 5000],
    ["params", "--model", "lenet5", "--format", "y" * 5000],
    ["params", "--input", "3xHxW", "--layers", "relu", "--subs", "H=" + "9" * 5000],
    ["norm", "--kind", "bogus" * 1000, "--shape", "2x3"],
    ["y" * 5000],
])
def test_errors_clip_what_they_echo(args, capsys):
    from cli_helpers import run_any

    code, _, err = run_any(args, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "…" in err and len(err) < 300, err


def test_zoo_fits_80_columns_without_splitting_a_number(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    doc = json.loads(run(["zoo", "--format", "json"], capsys))
    out = run(["zoo"], capsys)
    assert max(len(line) for line in out.splitlines()) <= 80
    rows = {line.split("│")[1].strip(): line for line in out.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}
    for model in doc:  # name and exact params on one line, whole
        assert f" {model['params']:,} " in rows[model["name"]], model["name"]


def test_zoo_groups_the_families(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    doc = json.loads(run(["zoo", "--format", "json"], capsys))
    out = run(["zoo"], capsys).splitlines()
    cells = [line.split("│")[1].rstrip() for line in out if line.startswith("│")]
    family = None
    for cell in cells:  # "Family" rows, then "  name" rows under them
        if not cell.startswith("  "):
            family = cell.strip()
            continue
        entry = next(m for m in doc if m["name"] == cell.strip())
        assert entry["family"] == family
    assert {m["family"] for m in doc} == {c.strip() for c in cells if not c.startswith("  ")}
    assert len([c for c in cells if c.startswith("  ")]) == len(doc)


def test_zoo_name_shows_one_network(capsys):
    import cnncalc
    out = run(["zoo", "resnext50_32x4d"], capsys)
    assert "groups=32" in out and "25,028,904 params" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    text = out.split("\n\n")[1].replace("\n", " ")
    assert cnncalc.analyze(text, input="3x224x224").total["params"] == 25_028_904


# ------------------------------------------------------------- a terminal 80 columns wide

def _on_a_terminal(args, columns, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    return re.sub(r"\x1b\[[0-9;]*m", "", run(args, capsys))  # without the colours


def test_params_fits_80_columns_where_it_can(capsys, monkeypatch):
    out = _on_a_terminal(["params", "--model", "lenet5"], 80, capsys, monkeypatch)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "acts: activations" in out  # the abbreviated header has its legend
    for number in ("352,800", "48,120", "10,164", "62,006", "651,720", "15,002", "+53.12%"):
        assert number in out, number  # every number whole


def test_params_too_wide_for_the_terminal_cuts_no_number(capsys, monkeypatch):
    rows = list(csv.DictReader(io.StringIO(
        run(["params", "--model", "resnet18", "--format", "csv"], capsys))))
    out = _on_a_terminal(["params", "--model", "resnet18"], 80, capsys, monkeypatch)
    for row in rows:
        if row["index"].isdigit():
            assert f"{int(row['macs']):,}" in out, row["name"]


@pytest.mark.parametrize("model", ["resnet50", "googlenet", "efficientnet_v2_s"])
def test_deep_networks_fit_80_columns_with_every_number_whole(model, capsys, monkeypatch):
    """Too wide even compact: the type and memory-change columns give way and the layer
    names wrap; every number is still on one line, whole."""
    rows = list(csv.DictReader(io.StringIO(
        run(["params", "--model", model, "--format", "csv"], capsys))))
    out = _on_a_terminal(["params", "--model", model], 80, capsys, monkeypatch)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "type and memory change are in --format markdown" in " ".join(out.split())
    for row in rows:
        if row["index"].isdigit():
            for key in ("params", "macs", "activations"):
                assert f" {int(row[key]):,} " in out, (row["name"], key)


def test_zoo_latex_is_a_whole_tabular(capsys):
    doc = json.loads(run(["zoo", "--format", "json"], capsys))
    lines = run(["zoo", "--format", "latex"], capsys).strip().splitlines()
    assert lines[0].startswith(r"\begin{tabular}") and lines[-1] == r"\end{tabular}"
    rows = [line for line in lines if line.endswith(r" \\")]
    assert len(rows) == len(doc) + 1  # the header and one row a network
    assert all(line.count(" & ") == 5 for line in rows)


@pytest.mark.parametrize("model", ["lenet5", "resnet18", "googlenet"])
def test_table_width_measured_on_its_widest_rows_is_its_width(model):
    """The terminal fit measures a table built of its widest rows only: the same width as
    the whole table, in every view."""
    import cnncalc
    from cnncalc.render import table as T
    for spec in ({"model": model}, {"model": model, "input": "3xHxW"}):
        a = cnncalc.analyze(**spec)
        for training in (False, True):
            for compact in (0, 1, 2):
                fractions, bar = T._shares(a, training, True, 120, compact, None)
                whole = T.natural_width(T._table(a, training, True, fractions, bar, compact))
                assert T._width(a, training, True, fractions, bar, compact) == whole
