"""The documents: every command that README.md and docs/*.md show runs, and prints what
they show; every file they name exists; none leans on anything outside the repository.

A document shows a command's output in three ways, all checked here:

- a paragraph ending in "Run `cnncalc ...`:" (or "... (excerpt):") followed by a code
  block or a Markdown table: the block is what the command prints; an excerpt is a
  selection of its lines, in order;
- a code block of ``$ cnncalc ...`` lines, each followed by what it prints
  (``# exits N`` after a command that fails on purpose);
- ``python`` blocks, run in order in one namespace per document, and ``pycon`` blocks,
  run as doctests.

The README's commands run as a newcomer meets them, on a terminal 80 columns wide. In a
shown output, a line ``...`` stands for any number of lines, and ``...`` inside a
line for any text. Every other command (``python examples/lenet.py``, ``python -m kernels
warmup``, ...) must have an entry in ``SHELL``, which says how it is checked: run with
small settings, or, where it needs hours or a GPU, its arguments parsed by its own parser.
"""

from __future__ import annotations

import argparse
import doctest
import functools
import re
import runpy
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import run_any

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Every Markdown file a reader meets: links and named paths are checked in all of them.
READABLE = [*DOCS, ROOT / "ARCHITECTURE.md", *sorted((ROOT / "examples").rglob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------------------ parsing

@dataclass(frozen=True)
class Shown:
    doc: str
    command: str  # as written, without the "$ "
    output: tuple[str, ...]  # what the document shows it printing
    excerpt: bool
    exit_code: int = 0


FENCE = re.compile(r"^```(\w*)\s*$")
SPAN = re.compile(r"`([^`\n]+)`")


def paragraphs_and_blocks(text: str):
    """Yield ("para", lines) and ("code", lang, lines) in document order."""
    lines = text.split("\n")
    i, para = 0, []
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            if para:
                yield ("para", para)
                para = []
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            yield ("code", m.group(1), lines[i + 1:j])
            i = j + 1
            continue
        if lines[i].strip():
            para.append(lines[i])
        elif para:
            yield ("para", para)
            para = []
        i += 1
    if para:
        yield ("para", para)


def run_target(paragraph: list[str]) -> tuple[str, bool] | None:
    """The command a paragraph announces ("Run `cnncalc ...`" ending in a colon)."""
    text = " ".join(paragraph)
    if not text.rstrip().endswith(":"):
        return None
    runs = re.findall(r"[Rr]un `(cnncalc [^`]+)`", text)
    return (runs[-1], "(excerpt" in text) if runs else None


def shown_outputs(doc: Path) -> list[Shown]:
    shown, pending = [], None
    for part in paragraphs_and_blocks(doc.read_text(encoding="utf-8")):
        if part[0] == "para":
            lines = part[1]
            if pending and all(line.startswith("|") for line in lines):  # a Markdown table
                shown.append(Shown(rel(doc), pending[0], tuple(lines), pending[1]))
                pending = None
                continue
            pending = run_target(lines)
            continue
        _, lang, lines = part
        if lines and lines[0].startswith("$ "):
            shown.extend(dollar_blocks(doc, lines))
        elif pending and lang == "":
            shown.append(Shown(rel(doc), pending[0], tuple(lines), pending[1]))
        pending = None
    return shown


def dollar_blocks(doc: Path, lines: list[str]) -> list[Shown]:
    out, command, output, code = [], None, [], 0
    for line in [*lines, "$ END"]:
        if line.startswith("$ "):
            if command is not None:
                out.append(Shown(rel(doc), command, tuple(output), False, code))
            command, output = line[2:], []
            m = re.search(r"\s+# exits (\d+)$", command)
            code = int(m.group(1)) if m else 0
            command = command[:m.start()] if m else command
        else:
            output.append(line)
    return out


def code_blocks(doc: Path, langs: tuple[str, ...]) -> list[str]:
    return ["\n".join(p[2]) for p in paragraphs_and_blocks(doc.read_text(encoding="utf-8"))
            if p[0] == "code" and p[1] in langs]


def shell_commands(doc: Path) -> set[str]:
    """Commands other than cnncalc's: lines of plain code blocks, and inline spans."""
    found = set()
    for part in paragraphs_and_blocks(doc.read_text(encoding="utf-8")):
        if part[0] == "code" and part[1] == "" and not (part[2] and part[2][0].startswith("$")):
            found.update(strip_comment(line) for line in part[2]
                         if re.match(r"(python|pip|ruff|[A-Z_]+=)", line))
        elif part[0] == "para":
            found.update(strip_comment(s) for s in SPAN.findall(" ".join(part[1]))
                         if re.match(r"(python3? |pip |ruff |[A-Z_]+=\S+ python)", s))
    return found


def strip_comment(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


def inline_cnncalc(doc: Path) -> set[str]:
    text = " ".join(" ".join(p[1]) for p in paragraphs_and_blocks(
        doc.read_text(encoding="utf-8")) if p[0] == "para")
    return {s for s in SPAN.findall(text) if s.startswith("cnncalc ")}


# ----------------------------------------------------------------------------- matching

def line_matches(pattern: str, line: str) -> bool:
    if "..." not in pattern:
        return pattern == line
    return re.fullmatch(".*".join(map(re.escape, pattern.split("..."))), line) is not None


def shows(pattern: list[str], output: list[str], excerpt: bool) -> bool:
    """Whether ``output`` is what ``pattern`` shows (see the module docstring)."""
    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return excerpt or j == len(output)
        if pattern[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(output) + 1))
        if excerpt:
            return any(line_matches(pattern[i], output[k]) and match(i + 1, k + 1)
                       for k in range(j, len(output)))
        return j < len(output) and line_matches(pattern[i], output[j]) and match(i + 1, j + 1)
    return match(0, 0)


def test_the_matcher():
    out = ["a", "b 12 c", "d", "e"]
    assert shows(["a", "b 12 c", "d", "e"], out, False)
    assert not shows(["a", "b 12 c", "d"], out, False)  # a full block shows every line
    assert shows(["a", "...", "e"], out, False) and shows(["a", "b ... c", "..."], out, False)
    assert shows(["b 12 c", "e"], out, True) and not shows(["e", "a"], out, True)
    assert not shows(["a", "b 13 c", "..."], out, False)


def lines_of(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


# ------------------------------------------------------------------- cnncalc, as shown

SHOWN = [s for doc in DOCS for s in shown_outputs(doc)]


def test_the_documents_show_outputs():
    assert len(SHOWN) >= 15  # the parser finds them (README alone shows three)
    assert {s.doc for s in SHOWN} >= {"README.md", "docs/calculator.md", "docs/conventions.md"}


@pytest.mark.parametrize("shown", SHOWN, ids=lambda s: f"{s.doc}: {s.command[:60]}")
def test_shown_output_is_what_the_command_prints(shown, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # --torch examples.tinynet:... imports from the current folder
    monkeypatch.syspath_prepend(str(ROOT))
    args = shlex.split(shown.command)
    assert args[0] == "cnncalc", shown.command
    if shown.doc == "README.md":  # as a newcomer meets it: a terminal 80 columns wide
        monkeypatch.setenv("COLUMNS", "80")
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run_any(args[1:], capsys)
    assert code == shown.exit_code, err
    printed = lines_of(re.sub(r"\x1b\[[0-9;]*m", "", out + err))  # without the colours
    ok = shows(list(shown.output), printed, shown.excerpt)
    assert ok, (
        f"{shown.doc} shows for `{shown.command}`:\n" + "\n".join(shown.output)
        + "\n\nbut it prints:\n" + "\n".join(printed))


INLINE = sorted({(rel(doc), c) for doc in DOCS for c in inline_cnncalc(doc)})


@pytest.mark.parametrize("doc, command", INLINE, ids=[c[:70] for _, c in INLINE])
def test_every_inline_cnncalc_command_runs(doc, command, capsys, monkeypatch, tmp_path):
    """A command named in the text runs; `cnncalc NAME` alone names a subcommand. It runs
    in a folder of its own (a `--plot` writes there), with the repository importable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    args = shlex.split(command)[1:]
    if len(args) == 1:
        args.append("--help")
    code, _, err = run_any(args, capsys)
    assert code == 0, f"{doc}: `{command}` exits {code}: {err}"


# ------------------------------------------------------------------------ Python blocks

@pytest.mark.parametrize("doc", [d for d in DOCS if code_blocks(d, ("python",))], ids=rel)
def test_python_blocks_run(doc, monkeypatch):
    """Each document's python blocks, in order, in one namespace (a block may use the
    names an earlier one made). DistributedDataParallel runs as one gloo process."""
    blocks = code_blocks(doc, ("python",))
    namespace: dict = {"__name__": "__docs__"}
    uses_ddp = any("init_process_group" in b for b in blocks)
    if uses_ddp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        for key, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port)),
                           ("RANK", "0"), ("WORLD_SIZE", "1")):
            monkeypatch.setenv(key, value)
    try:
        for block in blocks:
            exec(compile(block, f"{rel(doc)} (python block)", "exec"), namespace)
    finally:
        if uses_ddp:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()


@pytest.mark.parametrize("doc", [d for d in DOCS if code_blocks(d, ("pycon",))], ids=rel)
def test_pycon_blocks_are_doctests(doc):
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    globs: dict = {}
    for i, block in enumerate(code_blocks(doc, ("pycon",))):
        runner.run(parser.get_doctest(block, globs, f"{rel(doc)}[{i}]", rel(doc), 0))
    assert runner.summarize(verbose=False).failed == 0


# ----------------------------------------------------------------------- other commands

class Parsed(Exception):
    """Raised once an entry point has parsed its arguments (see ``parse_only``)."""


def parse_only(module: str, argv: list[str], monkeypatch) -> argparse.Namespace:
    """Run ``python -m module argv`` (or a script path) up to its argument parsing: the
    command and every option it shows must be accepted, without the hours it would run."""
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        raise Parsed(original(self, argv if args is None else args, namespace))
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(Parsed) as info:
        if module.endswith(".py"):
            runpy.run_path(str(ROOT / module), run_name="__main__")
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    return info.value.args[0]


def example(name: str):
    return runpy.run_path(str(ROOT / "examples" / f"{name}.py"), run_name=f"docs_{name}")


def run_example(name: str, argv: list[str], small: list[str], tmp_path, capsys) -> str:
    code = example(name)["main"]([*argv, *small, "--out", str(tmp_path / name)])
    assert code in (0, None) or isinstance(code, dict), code
    return capsys.readouterr().out


LENET_SMALL = ["--limit", "64", "--epochs", "1"]


def check_lenet(argv):
    def check(tmp_path, capsys, monkeypatch):
        if "--data-dir" in argv:  # four small MNIST files where the command reads DIR
            from test_datasets import write_mnist
            write_mnist(tmp_path / "DIR", n_train=40, n_test=16)
            argv_here = [str(tmp_path / "DIR") if a == "DIR" else a for a in argv]
        else:
            argv_here = list(argv)
        small = ["--benchmark-images", "128"] if "--benchmark" in argv else LENET_SMALL
        if "--resume" in argv:  # a checkpoint to resume from, one epoch in
            run_example("lenet", [], LENET_SMALL, tmp_path, capsys)
            small = ["--limit", "64", "--epochs", "2"]
        monkeypatch.chdir(tmp_path)
        run_example("lenet", argv_here, small, tmp_path, capsys)
    return check


def check_ci(tmp_path, capsys, monkeypatch):
    """The README's install and test lines are the ones .ci/run reads and runs."""
    script = (ROOT / ".ci" / "run").read_text()
    body = script[script.index("readme_command() {"):script.index("install=")]
    for name, line in (("install", 'pip install "torch==2.13.0" -e ".[dev,torch,examples,cuda]" '
                                   "&& cnncalc params --model lenet5 --input 3x32x32"),
                       ("test", "ruff check . && python -m pytest -q")):
        got = subprocess.run(["bash", "-c", f"{body}\nreadme_command {name}"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        assert got == line


def check_gpu_tests(tmp_path, capsys, monkeypatch):
    """No GPU here: the switch that sends the CUDA tests to the device is the one shown."""
    assert "KERNELS_TEST_GPU" in (ROOT / "tests" / "conftest.py").read_text()
    assert any("cuda" in p.name for p in (ROOT / "tests").glob("test_*.py"))


def check_zoo_tool(tmp_path, capsys, monkeypatch):
    """torchvision is not installed for the tests: the tool knows every zoo network it
    names, and each name is a torchvision builder's (checked by hand where it is)."""
    tool = runpy.run_path(str(ROOT / "tools" / "zoo_vs_torchvision.py"))
    from cnncalc.zoo import MODELS
    assert set(tool["TORCHVISION"]) <= set(MODELS)
    assert set(MODELS) - set(tool["TORCHVISION"]) == {
        "lenet5", "unet", "two_conv_block", "standard_block", "bottleneck_block"}


def parse(module, argv):
    return lambda tmp_path, capsys, monkeypatch: parse_only(module, argv, monkeypatch)


def run_small(name, small):
    return lambda tmp_path, capsys, monkeypatch: run_example(name, [], small, tmp_path, capsys)


def check_ptx(tmp_path, capsys, monkeypatch):
    """The command's entry point, with the compiling stubbed: test_cuda_ptx.py compiles every
    kernel to PTX already (half a minute), through the same ``check``."""
    from kernels.cuda import ptx
    checked = []
    monkeypatch.setattr(ptx, "check", lambda: checked.append(True) or [])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("kernels.cuda.ptx", run_name="__main__")
    assert info.value.code == 0 and checked == [True]
    assert "compiled to PTX for sm_80: all clean" in capsys.readouterr().out


def check_make_pages(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["make_pages.py", "--check"])
    assert runpy.run_path(str(ROOT / "examples" / "homework" / "make_pages.py"),
                          run_name="docs_make_pages")["main"]() == 0


def check_venv(tmp_path, capsys, monkeypatch):
    """The fresh environment the README asks for: .ci/run makes one the same way."""
    assert 'python3 -m venv "$venv"' in (ROOT / ".ci" / "run").read_text()


# Each command the documents show, and how the tests check it.
SHELL = {
    'pip install "torch==2.13.0" -e ".[dev,torch,examples,cuda]" && cnncalc params --model '
    "lenet5 --input 3x32x32": check_ci,
    "ruff check . && python -m pytest -q": check_ci,
    "pip install -e .": check_ci,
    "python3 -m venv .venv && . .venv/bin/activate": check_venv,
    "python examples/lenet.py": check_lenet([]),
    "python examples/lenet.py --engine torch": check_lenet(["--engine", "torch"]),
    "python examples/lenet.py --dataset mnist --data-dir DIR --epochs 5":
        check_lenet(["--dataset", "mnist", "--data-dir", "DIR", "--epochs", "5"]),
    "python examples/lenet.py --epochs 15 --resume": check_lenet(["--epochs", "15", "--resume"]),
    "python examples/lenet.py --benchmark": check_lenet(["--benchmark"]),
    "python examples/correlation.py":
        run_small("correlation", ["--cases", "2", "--max-size", "30", "--downsample", "8"]),
    "python examples/norm_zoo.py": run_small("norm_zoo", ["--shape", "2x4x3x3", "--groups", "2"]),
    "python examples/optimizers.py":
        run_small("optimizers", ["--epochs", "1", "--limit", "200", "--hidden", "16"]),
    "python examples/homework/make_pages.py": check_make_pages,
    "python -m kernels warmup": parse("kernels", ["warmup", "--families", "conv2d,pooling",
                                                  "--dtype", "float32", "--quiet"]),
    "python -m benchmarks": parse("benchmarks", ["--quick", "--only", "conv"]),
    "python -m benchmarks.cuda": parse("benchmarks.cuda", ["--quick"]),
    "python -m kernels.cuda.ptx": check_ptx,
    "KERNELS_TEST_GPU=1 python -m pytest tests -k cuda": check_gpu_tests,
    "python tools/zoo_vs_torchvision.py": check_zoo_tool,
}

COMMANDS = sorted({c for doc in DOCS for c in shell_commands(doc)})


def test_every_command_shown_has_a_check():
    assert set(COMMANDS) <= set(SHELL), set(COMMANDS) - set(SHELL)
    assert set(SHELL) <= set(COMMANDS), set(SHELL) - set(COMMANDS)  # none left over


@pytest.mark.parametrize("command", COMMANDS)
def test_shown_command_runs(command, tmp_path, capsys, monkeypatch):
    if command.startswith("python examples/"):
        pytest.importorskip("torch")
    SHELL[command](tmp_path, capsys, monkeypatch)


# --------------------------------------------------------------------- self-containment

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
PATHLIKE = re.compile(r"^[\w.-]+(/[\w.<>*-]+)*/?$")
TOP = {p.name for p in ROOT.iterdir()} - {".git"}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in path.read_text(encoding="utf-8").split("\n")
            if line.startswith("#")}


@pytest.mark.parametrize("doc", READABLE, ids=rel)
def test_every_link_and_named_path_exists(doc):
    text = doc.read_text(encoding="utf-8")
    missing = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, mailto:
            continue
        path, _, anchor = target.partition("#")
        where = (doc.parent / path).resolve() if path else doc
        if not where.exists():
            missing.append(target)
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            missing.append(target)
    for span in SPAN.findall(text):
        first = span.split("/")[0]
        if PATHLIKE.match(span) and "/" in span and first in TOP and "<" not in span:
            if not (ROOT / span).exists() and not any(ROOT.glob(span)):
                missing.append(span)
    assert not missing, f"{rel(doc)} names what the repository lacks: {missing}"


@pytest.mark.parametrize("doc", READABLE, ids=rel)
def test_no_document_leans_on_what_is_outside_the_repository(doc):
    text = doc.read_text(encoding="utf-8")
    assert "CONTRACT" not in text and "shared/" not in text
    assert not re.search(r"\b[Ss]eeds?\b", text.replace("--seed", "")), (
        "homework problems are named by topic and number")


def test_readme_fits_a_few_screens():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").split("\n")) <= 250


def test_user_facing_text_names_no_seed():
    """CLI help, derivation notes and the examples say which homework, not "seed 002"."""
    sources = [*ROOT.glob("cnncalc/**/*.py"), *ROOT.glob("kernels/**/*.py"),
               *ROOT.glob("examples/**/*.py")]
    bad = [f"{rel(p)}:{n}" for p in sources
           for n, line in enumerate(p.read_text(encoding="utf-8").split("\n"), 1)
           if re.search(r"(?<!-)\b[Ss]eed \d|[Ss]eeds'|the seeds|seed's", line)]
    assert not bad, bad

