"""Running the ``cnncalc`` CLI in-process, as the tests do everywhere."""

from __future__ import annotations

from cnncalc.cli import main


def run_any(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``cnncalc ARGS``; return (exit status, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def run_ok(args: list[str], capsys) -> str:
    """Run ``cnncalc ARGS``, assert it succeeded, return stdout."""
    code, out, err = run_any(args, capsys)
    assert code == 0, err
    return out
