"""Bad input through the real CLI: exit status 2 and one line that points at the problem.

Every case runs ``cnncalc.cli.main`` in-process (the function the console script
calls), so the exit-code / message mapping is the one users see. For each case:

* the exit status is 2;
* stderr's first line starts with ``Error:``, and no traceback is printed;
* a spec error says ``column N`` (N computed here from the spec text) and the two
  lines after it show the spec and a caret under column N; nothing else is printed;
* a shape error names ``layer <index> (<name>)``; any other error is exactly one line.

A SIGALRM guard turns a hang into a failure (it is not a speed assertion).
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field

import pytest

from cnncalc import ShapeError, SpecError, analyze, parse_layers
from cnncalc.cli import main
from cnncalc.spec import MAX_DEPTH

HANG_GUARD_S = 10
IMG = "3x32x32"


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` swallows it."""


def _alarm(signum, frame):
    raise Hang(f"no answer within {HANG_GUARD_S} s")


def run_cli(args: list[str], capsys) -> tuple[int | None, str, str]:
    """``cnncalc <args>`` in-process: (exit status, stdout, stderr)."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_GUARD_S)
    try:
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    return code, out, err


# -- the table -----------------------------------------------------------------------

@dataclass
class Case:
    id: str
    args: list[str]
    contains: tuple[str, ...] = ()
    spec: str | None = None  # the layer-language text a spec error points into
    column: int | None = None  # 1-based column of the bad spot, for spec errors
    line: int | None = None  # for multi-line specs
    layer: tuple[int, str] | None = None  # (index, name) for shape errors
    marks: tuple = field(default=())


def spec_case(id_, text, at, *contains, input_=IMG, occurrence="first"):
    """A spec error at the substring ``at`` of ``text`` (or at an int 0-based offset)."""
    if isinstance(at, int):
        pos = at
    else:
        pos = text.index(at) if occurrence == "first" else text.rindex(at)
    return Case(id_, ["params", "--input", input_, "--layers", text], tuple(contains),
                spec=text, column=pos + 1)


def shape_case(id_, text, index, name, *contains, input_=IMG, extra=()):
    return Case(id_, ["params", "--input", input_, "--layers", text, *extra], tuple(contains),
                layer=(index, name))


def opt_case(id_, args, *contains):
    return Case(id_, ["params", *args], tuple(contains))


NESTED_PARENS = "(" * 500 + "relu" + ")" * 500
NESTED_RESIDUAL = "residual(" * 100 + "relu" + ")" * 100
LONG_CHAIN = "conv(6, k=" + "1+" * 1000 + "1)"
SIGN_CHAIN = "conv(6, k=" + "-" * 1000 + "3)"
TOO_LONG = "relu," * 50000

CASES = [
    # -- brackets ------------------------------------------------------------------
    spec_case("unclosed-paren", "conv(6, k=5", len("conv(6, k=5"), "never closed",
              "'(' at column 5"),
    spec_case("unclosed-paren-inner", "residual(conv(6, k=3, p=1), bn", len(
        "residual(conv(6, k=3, p=1), bn"), "never closed", "column 9"),
    spec_case("extra-close-paren", "conv(6, k=5)), relu", "), relu", "no matching '('"),
    spec_case("unclosed-square", "[conv(6), relu", len("[conv(6), relu"), "'['",
              "never closed"),
    spec_case("mismatched-brackets", "conv(6, k=5], relu", "]", "mismatched",
              "']' closes the '(' at column 5"),
    spec_case("stray-square-close", "relu], relu", "]", "no matching '['"),
    spec_case("only-open-parens", "(" * 500, 500, "never closed", "column 500"),
    spec_case("deeply-nested-parens", NESTED_PARENS, MAX_DEPTH, f"more than {MAX_DEPTH} levels"),
    spec_case("deeply-nested-residual", NESTED_RESIDUAL, len("residual(") * MAX_DEPTH
              + len("residual"), f"more than {MAX_DEPTH} levels"),
    spec_case("long-operator-chain", LONG_CHAIN, len("conv(6, k=") + 2 * (MAX_DEPTH - 1) + 1,
              "nested too deeply"),
    # conv( is the first level, so the 64th sign is one too many
    spec_case("long-sign-chain", SIGN_CHAIN, len("conv(6, k=") + MAX_DEPTH - 1,
              f"more than {MAX_DEPTH} levels"),
    # -- names and keys --------------------------------------------------------------
    spec_case("unknown-layer", "conv(6), relu, convv(16)", "convv", "unknown layer 'convv'",
              "did you mean conv?"),
    spec_case("unknown-layer-pool", "conv(6), maxpol(2)", "maxpol", "did you mean maxpool?"),
    spec_case("unknown-layer-no-hint", "conv(6), zzzqqq", "zzzqqq", "unknown layer 'zzzqqq'"),
    spec_case("unknown-key", "conv(6, kernal_size=3)", "kernal_size", "unknown key",
              "did you mean kernel_size?"),
    spec_case("key-twice", "conv(6, k=3, k=5)", "k=5", "k is given twice"),
    spec_case("key-twice-alias", "conv(6, k=3, kernel_size=5)", "kernel_size", "given twice"),
    spec_case("too-many-positional", "conv(6,3,1,0,1,1,true,9)", "9", "at most 7 positional"),
    spec_case("args-to-relu", "conv(6), relu(3)", "3)", "relu takes no arguments"),
    spec_case("missing-out", "conv(k=3)", "conv", "needs 'out'"),
    spec_case("missing-fc-out", "flatten, fc", "fc", "fc needs 'out'"),
    spec_case("missing-gn-groups", "conv(8), gn", "gn", "gn needs 'groups'"),
    spec_case("missing-pool-kernel", "maxpool()", "maxpool", "needs 'k'"),
    spec_case("missing-comma", "conv(6 k=3)", "k=3", "expected ',' or ')'"),
    spec_case("double-comma-in-args", "conv(6, k=3,, s=1)", "conv(6, k=3,,".index(",,") + 1,
              "expected a layer or a value, found ','"),
    # -- values ----------------------------------------------------------------------
    spec_case("zero-channels", "conv(0)", "0", "positive whole number, found 0"),
    spec_case("negative-channels", "conv(-3)", "-3", "positive whole number, found -3"),
    spec_case("fractional-kernel", "conv(6, k=2.5)", "2.5", "whole number, found 2.5"),
    spec_case("1e13", "conv(6), flatten, fc(1e13)", "1e13", "absurdly large"),
    spec_case("10**20", "conv(10**20)", "10**20", "absurdly large"),
    spec_case("2**64", "conv(6, k=2**64)", "2**64", "absurdly large"),
    spec_case("huge-exponent-literal", "conv(1e999999999)", "1e999999999", "absurdly large"),
    # 0e99999999 is zero: it must be refused for being 0, without computing 10**99999999.
    spec_case("zero-with-huge-exponent", "conv(0e99999999)", "0e99999999",
              "positive whole number"),
    spec_case("many-digits", "conv(" + "7" * 5000 + ")", "7", "absurdly large"),
    spec_case("exponent-out-of-range", "conv(6, k=3**100)", "100", "exponents"),
    spec_case("division-by-zero", "conv(6, k=3/0)", "3/0", "division by zero"),
    spec_case("stride-zero", "conv(6, k=3, s=0)", "0)", "positive whole number, found 0"),
    spec_case("dilation-zero", "conv(6, d=0)", "0)", "positive whole number"),
    spec_case("dropout-2", "conv(6), dropout(p=2)", "2)", "probability", occurrence="last"),
    spec_case("bad-padding-word", 'conv(6, p="full")', '"full"', "unknown padding 'full'"),
    spec_case("padding-typo", "conv(6, p=sme)", "sme", "did you mean same?"),
    spec_case("bad-bool", "conv(6, bias=maybe)", "maybe", "true or false"),
    spec_case("four-kernel-sizes", "conv(6, k=(3,3,3,3))", "(3,3,3,3)", "at most 3"),
    spec_case("pair-as-channels", "flatten, fc(3x4)", "3x4", "found a pair"),
    spec_case("repeat-explodes", "conv(3)*10**9", "conv", "more than 10,000 layers"),
    spec_case("repeat-explodes-nested", "(relu*1000)*1000", "relu", "more than 10,000 layers"),
    spec_case("repeat-zero", "relu*0", "0", "repeat count"),
    spec_case("repeat-fraction", "relu*1.5", "1.5", "repeat count"),
    spec_case("residual-empty", "residual()", "residual", "at least one layer"),
    spec_case("residual-bad-key", "residual(relu, foo=1)", "foo", "unknown key 'foo'"),
    spec_case("avgpool-dilation", "avgpool(2, d=2)", "avgpool", "no dilation"),
    # -- text and separators ---------------------------------------------------------
    spec_case("empty-spec", "", 0, "empty network"),
    spec_case("blank-spec", "   ", 0, "empty network"),
    spec_case("only-commas", ",,,", 0, "expected a layer, found ','"),
    spec_case("dollar", "conv(6) $ relu", "$", "unexpected character '$'"),
    spec_case("at-sign", "conv(6)@relu", "@", "unexpected character '@'"),
    spec_case("trailing-arrow", "conv(6) -> relu ->", "->", "'->' at the end",
              occurrence="last"),
    spec_case("double-arrow", "conv(6) -> -> relu", "->", "expected a layer after '->'",
              occurrence="last"),
    spec_case("two-layers-no-comma", "relu relu", "relu", "expected ',' or '->'",
              occurrence="last"),
    spec_case("unterminated-string", "conv(6, p='same)", "'", "unexpected character"),
    spec_case("non-ascii-name", "relu, 卷积(3)", "卷", "unexpected character '卷'"),
    spec_case("layer-plus-layer", "conv(6)+relu", 0, "expected a layer"),
    spec_case("spec-too-long", TOO_LONG, 200_000, "characters long", "limit"),
    # -- shapes ----------------------------------------------------------------------
    shape_case("kernel-larger-than-input", "conv(6, k=5), conv(16, k=30)", 1, "conv2",
               "larger than the padded input"),
    shape_case("kernel-larger-symbolic-subs", "conv(6, k=5)", 0, "conv1", "padded input",
               input_="3xHxW", extra=("--subs", "H=2")),
    shape_case("conv-groups-indivisible", "conv(6, groups=2)", 0, "conv1",
               "not divisible by groups=2"),
    shape_case("gn-groups-indivisible", "conv(6), relu, gn(4)", 2, "gn1",
               "not divisible by groups=4"),
    shape_case("same-padding-stride-2", "conv(8, p=same, s=2)", 0, "conv1", "stride 1"),
    shape_case("identity-shortcut-shape-change", "residual(conv(8, k=3), shortcut=identity)",
               1, "res1.add", "shortcut=identity", "3x32x32", "8x30x30"),
    shape_case("residual-rank-change", "residual(relu, flatten)", 2, "res1.shortcut",
               "3x32x32", "3072"),
    shape_case("pool-padding-over-half", "conv(6), maxpool(3, p=2)", 1, "maxpool1",
               "more than half the kernel"),
    shape_case("conv-on-flat", "flatten, conv(3)", 1, "conv1", "CxHxW", "3072"),
    shape_case("pool-on-flat", "flatten, maxpool(2)", 1, "maxpool1", "CxHxW"),
    shape_case("gap-on-flat", "flatten, gap", 1, "gap1", "spatial"),
    shape_case("conv1d-on-image", "conv1d(8, k=3)", 0, "conv1", "CxL", "3x32x32"),
    shape_case("conv3d-on-image", "relu, conv3d(8, k=3)", 1, "conv1", "CxDxHxW"),
    shape_case("kernel-rank-mismatch", "conv(6, k=(3,3,3))", 0, "conv1", "3 sizes", "2-D"),
    shape_case("deconv-output-padding", "deconv(6, k=3, s=2, output_padding=5)", 0, "deconv1",
               "output_padding"),
    shape_case("basic-block-on-1d", "basic(64)", 0, "basic1.conv1", "CxHxW", input_="3x32"),
    # -- --input ---------------------------------------------------------------------
    # BUG (cnncalc/analysis.py parse_shape): "3x" is read as the 1-D input (3,) and the
    # run succeeds; a trailing separator should be refused like any malformed shape.
    opt_case("input-trailing-x", ["--input", "3x", "--layers", "relu"], "--input", "3x"),
    opt_case("input-zero", ["--input", "0x32x32", "--layers", "relu"], "--input", "positive"),
    opt_case("input-negative", ["--input", "-3x32x32", "--layers", "relu"], "--input", "'-3'"),
    opt_case("input-five-dims", ["--input", "3x32x32x32x32", "--layers", "relu"], "--input",
             "1 to 4"),
    opt_case("input-junk", ["--input", "axb!", "--layers", "relu"], "--input", "b!"),
    opt_case("input-empty", ["--input", "", "--layers", "relu"], "--input"),
    opt_case("input-absurd", ["--input", "3x10000000000000x32", "--layers", "relu"], "--input",
             "absurdly large"),
    # BUG (cnncalc/analysis.py parse_size): int() of a 5000-digit size raises ValueError
    # (Python's int-string limit), which surfaces as "Internal error", exit 1.
    opt_case("input-5000-digits", ["--input", "3x" + "9" * 5000, "--layers", "relu"],
             "--input", "absurdly large"),
    # -- --batch / --subs ------------------------------------------------------------
    opt_case("batch-zero", ["--input", IMG, "--batch", "0", "--layers", "relu"], "--batch"),
    opt_case("batch-negative", ["--input", IMG, "--batch", "-1", "--layers", "relu"],
             "--batch"),
    opt_case("batch-fraction", ["--input", IMG, "--batch", "1.5", "--layers", "relu"],
             "--batch", "1.5"),
    opt_case("subs-no-equals", ["--input", "3xHxW", "--subs", "H64", "--layers", "relu"],
             "--subs", "H64"),
    # BUG (cnncalc/analysis.py parse_subs): int(parse_size("abc")) converts a sympy Symbol
    # with int(): TypeError "Cannot convert symbols to int" -> "Internal error", exit 1.
    opt_case("subs-not-a-number", ["--input", "3xHxW", "--subs", "H=abc", "--layers", "relu"],
             "--subs", "abc"),
    opt_case("subs-zero", ["--input", "3xHxW", "--subs", "H=0", "--layers", "relu"], "--subs",
             "positive"),
    # -- choosing the network / format ---------------------------------------------------
    # BUG (cnncalc/cli/__init__.py main): click.UsageError goes through exc.show(), which
    # prints "Usage: ..." and "Try ... --help" BEFORE the "Error:" line, so stderr is 4
    # lines and its first line is not the error. The contract wants one line.
    opt_case("layers-and-model", ["--input", IMG, "--layers", "relu", "--model", "lenet5"],
             "--layers", "--model"),
    opt_case("no-network", ["--input", IMG], "--layers", "--model"),
    opt_case("no-input", ["--layers", "relu"], "--input"),
    opt_case("bad-format", ["--input", IMG, "--layers", "relu", "--format", "yaml"],
             "--format", "yaml"),
    opt_case("bad-layout", ["--input", IMG, "--layers", "relu", "--layout", "xyz"],
             "--layout", "xyz"),
    opt_case("missing-file", ["--input", IMG, "--file", "/nonexistent/net.txt"], "--file",
             "net.txt"),
    Case("unknown-command", ["parms", "--input", IMG, "--layers", "relu"], ("parms",)),
    # (end of the UsageError group)
    opt_case("unknown-model", ["--input", IMG, "--model", "resnet51"], "unknown model",
             "did you mean resnet50?"),
    # -- --freeze / --optimizer / --dtype -------------------------------------------------
    opt_case("freeze-past-the-end", ["--model", "lenet5", "--freeze", "0-99"], "--freeze",
             "0-99", "last layer, 11"),
    opt_case("freeze-backwards", ["--model", "lenet5", "--freeze", "6-2"], "--freeze", "6-2",
             "backwards"),
    opt_case("freeze-unknown-kind", ["--model", "lenet5", "--freeze", "convv"], "--freeze",
             "'convv'", "did you mean conv?"),
    opt_case("freeze-empty-item", ["--model", "lenet5", "--freeze", "0-3,,5"], "--freeze",
             "empty item"),
    opt_case("freeze-nothing", ["--model", "lenet5", "--freeze", " "], "--freeze"),
    opt_case("freeze-three-part-range", ["--model", "lenet5", "--freeze", "1-2-3"], "--freeze",
             "'1-2-3'"),
    opt_case("optimizer-unknown", ["--model", "lenet5", "--optimizer", "rmsprop"],
             "--optimizer", "rmsprop"),
    opt_case("dtype-unknown", ["--model", "lenet5", "--dtype", "int8"], "--dtype", "int8"),
    # -- --torch MODULE:FACTORY (factories in tests/torch_factories.py) ------------------
    opt_case("torch-bad-target", ["--input", IMG, "--torch", "torch_factories.tiny"],
             "--torch", "package.module:factory"),
    opt_case("torch-no-module", ["--input", IMG, "--torch", "no_such_pkg_xyz.nets:f"],
             "--torch", "no module named 'no_such_pkg_xyz'"),
    opt_case("torch-import-fails", ["--input", IMG, "--torch", "torch_factory_broken:f"],
             "importing torch_factory_broken failed", "ImportError"),
    opt_case("torch-no-factory", ["--input", IMG, "--torch", "torch_factories:tiyn"],
             "has no 'tiyn'", "did you mean tiny?"),
    opt_case("torch-not-callable", ["--input", IMG, "--torch", "torch_factories:NOT_CALLABLE"],
             "not a function"),
    opt_case("torch-factory-raises", ["--input", IMG, "--torch", "torch_factories:raises"],
             "raised RuntimeError: no weights file"),
    opt_case("torch-not-a-module", ["--input", IMG, "--torch", "torch_factories:not_a_module"],
             "returned a list", "nn.Module"),
    opt_case("torch-forward-fails", ["--input", IMG, "--torch",
                                     "torch_factories:NeedsSixChannels"],
             "forward failed", "1x3x32x32"),
    opt_case("torch-symbolic-input", ["--input", "3xHxW", "--torch", "torch_factories:tiny"],
             "--input", "numbers"),
    opt_case("torch-and-layers", ["--input", IMG, "--torch", "torch_factories:tiny",
                                  "--layers", "relu"], "--layers", "--torch"),
    opt_case("torch-no-input", ["--torch", "torch_factories:tiny"], "--input"),
    opt_case("torch-no-bias", ["--input", IMG, "--torch", "torch_factories:tiny",
                               "--no-bias"], "--no-bias"),
    opt_case("torch-subs-unknown", ["--input", IMG, "--torch", "torch_factories:tiny",
                                    "--subs", "H=3"], "--subs", "H"),
    # -- compare -----------------------------------------------------------------------
    Case("compare-one-network", ["compare", "--model", "lenet5"], ("two networks", "got 1")),
    Case("compare-three-networks", ["compare", "relu", "relu", "--model", "lenet5"],
         ("two networks", "got 3")),
    Case("compare-three-inputs", ["compare", "relu", "relu", "--input", IMG, "--input", IMG,
                                  "--input", IMG], ("--input", "got 3")),
    Case("compare-spec-without-input", ["compare", "relu", "--model", "lenet5"],
         ("--input", "network A")),
    Case("compare-unknown-model", ["compare", "--model", "lenet5", "--model", "resnet51"],
         ("unknown model", "did you mean resnet50?")),
    Case("compare-bad-spec", ["compare", "relu", "conv(6,k=5), convv(16)", "--input", IMG],
         ("unknown layer 'convv'",), spec="conv(6,k=5), convv(16)", column=14),
    Case("compare-shape-error", ["compare", "relu", "conv(6,k=50)", "--input", IMG],
         ("larger than the padded input",), layer=(0, "conv1")),
    Case("compare-subs-unknown", ["compare", "relu", "relu", "--input", IMG, "--subs", "H=3"],
         ("--subs", "either network")),
]


def _ids(cases):
    return [c.id for c in cases]


def _check_error_output(case: Case, code, out: str, err: str) -> list[str]:
    assert code == 2, f"exit status {code}, stderr:\n{err}\nstdout:\n{out[:500]}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines, "nothing on stderr"
    first = lines[0]
    assert first.startswith("Error:"), f"first stderr line is not the error:\n{err}"
    for text in case.contains:
        assert text in first, f"{text!r} not in {first!r}"
    if case.spec is None:
        if case.layer is not None:
            index, name = case.layer
            assert f"layer {index} ({name}):" in first, first
        assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    return lines


def _check_caret(source: str, column: int, line_no: int, shown: str, caret: str) -> None:
    """The caret line's ``^`` stands under ``column`` of line ``line_no`` of ``source``."""
    assert shown.startswith("  ") and caret.startswith("  ")
    shown, caret = shown[2:], caret[2:]
    at = caret.index("^")
    assert set(caret[at:]) == {"^"} and caret[:at].strip() == "", caret
    src_line = source.split("\n")[line_no - 1]
    if not shown.startswith("…"):  # the whole line is shown: positions match exactly
        assert at == column - 1, f"caret at column {at + 1}, error says column {column}"
        assert shown.rstrip("…") == src_line[: len(shown.rstrip("…"))]
    else:  # a window of a long line: the text above the caret is the text at the column
        visible = shown.rstrip("…")[at:]
        expected = src_line[column - 1 : column - 1 + len(visible)]
        assert visible == expected[: len(visible)], (visible, expected)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_bad_input_gives_one_pointed_line(case: Case, capsys):
    code, out, err = run_cli(case.args, capsys)
    lines = _check_error_output(case, code, out, err)
    if case.spec is not None:
        m = re.search(r"\bcolumn (\d+)", lines[0])
        assert m, f"no column in {lines[0]!r}"
        assert int(m.group(1)) == case.column, (
            f"column {m.group(1)} reported, bad spot is at column {case.column}: {lines[0]}")
        assert len(lines) == 3, f"expected message, spec and caret lines, got:\n{err}"
        _check_caret(case.spec, case.column, case.line or 1, lines[1], lines[2])


def test_table_is_big_enough():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


# -- --file ---------------------------------------------------------------------------

def test_file_error_points_at_line_and_column(tmp_path, capsys):
    text = "conv(6, k=5),\n  relu,\n  convv(16)\n"
    path = tmp_path / "net.txt"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(["params", "--input", IMG, "--file", str(path)], capsys)
    case = Case("file", [], ("line 3, column 3", "did you mean conv?"), spec=text, column=3,
                line=3)
    lines = _check_error_output(case, code, out, err)
    assert len(lines) == 3
    _check_caret(text, 3, 3, lines[1], lines[2])


def test_file_with_tab_keeps_caret_aligned(tmp_path, capsys):
    text = "relu,\t$"
    path = tmp_path / "net.txt"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(["params", "--input", IMG, "--file", str(path)], capsys)
    case = Case("tab", [], ("column 7", "'$'"), spec=text, column=7)
    lines = _check_error_output(case, code, out, err)
    assert "\t" not in lines[1]  # a tab would push the spec right of the caret
    assert lines[2].index("^") - 2 == 6


def test_file_not_utf8(tmp_path, capsys):
    path = tmp_path / "net.txt"
    path.write_bytes(b"conv(6, k=5), \xff\xfe relu")
    code, out, err = run_cli(["params", "--input", IMG, "--file", str(path)], capsys)
    lines = _check_error_output(Case("utf8", [], ("--file", "UTF-8")), code, out, err)
    assert len(lines) == 1


def test_trailing_arrow_over_lines_and_trailing_comma_ok(tmp_path, capsys):
    """A file may end in ',' and put '->' at the start of a line; not end in '->'."""
    path = tmp_path / "ok.txt"
    path.write_text("conv(6, k=5),\n  relu\n  -> maxpool(2),\n", encoding="utf-8")
    code, out, err = run_cli(["params", "--input", IMG, "--file", str(path),
                              "--format", "json"], capsys)
    assert code == 0, err
    path.write_text("conv(6, k=5) ->\n\n", encoding="utf-8")
    code, out, err = run_cli(["params", "--input", IMG, "--file", str(path)], capsys)
    assert code == 2 and "'->' at the end" in err.splitlines()[0]


# -- the Python API raises the same errors -----------------------------------------

@pytest.mark.parametrize("case", [c for c in CASES if c.spec is not None],
                         ids=lambda c: c.id)
def test_parse_layers_raises_spec_error_with_column(case: Case):
    """Every spec error of the table is found by ``parse_layers`` alone, at the same column."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_GUARD_S)
    try:
        with pytest.raises(SpecError) as info:
            parse_layers(case.spec)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert info.value.column == case.column
    assert "\n" not in str(info.value)


def test_linear_on_empty_shape():
    """Only reachable from the API (the CLI refuses an empty --input first)."""
    with pytest.raises(ShapeError, match=r"layer 0 \(fc1\)"):
        analyze("fc(10)", input=())


def test_python_m_cnncalc_runs():
    import runpy
    import sys

    argv = sys.argv
    sys.argv = ["cnncalc", "params", "--input", IMG, "--layers", "convv(3)"]
    try:
        with pytest.raises(SystemExit) as info:
            runpy.run_module("cnncalc", run_name="__main__")
    finally:
        sys.argv = argv
    assert info.value.code == 2
