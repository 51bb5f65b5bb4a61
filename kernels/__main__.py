"""``python -m kernels``: the kernels' command line (``warmup``: compile everything ahead)."""

from __future__ import annotations

import argparse
import sys

EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    from .warmup import DTYPES, FAMILIES

    parser = _Parser(prog="python -m kernels",
                     description="The Numba kernels' command line.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    warm = commands.add_parser(
        "warmup", help="compile every CPU kernel ahead (or load it from Numba's cache)",
        description="Compile every CPU kernel ahead of its first use, in float32 and "
                    "float64, serial and parallel, through the public functions on small and "
                    "large arrays; Numba caches them on disk (NUMBA_CACHE_DIR, or beside the "
                    "sources), so later processes start fast.")
    warm.add_argument("--dtype", choices=[*DTYPES, "both"], default="both",
                      help="the dtypes to compile (default: both)")
    warm.add_argument("--families", metavar="LIST", default="all",
                      help=f"comma-separated families: {', '.join(FAMILIES)} "
                           f"(default: all)")
    warm.add_argument("--quiet", "-q", action="store_true",
                      help="no progress bar and no summary")
    return parser


def _warmup(args) -> int:
    import time

    from . import warmup

    try:
        families = warmup.parse_families(args.families)
    except ValueError as e:
        print(f"python -m kernels warmup: error: {e}", file=sys.stderr)
        return 2
    dtypes = list(warmup.DTYPES) if args.dtype == "both" else [args.dtype]
    start = time.perf_counter()
    if args.quiet:
        warmup.warm(families, dtypes)
        return 0
    import rich.progress as rp
    from rich.console import Console

    console = Console(stderr=True)
    with rp.Progress(rp.TextColumn("{task.description:<48}"), rp.BarColumn(),
                     rp.MofNCompleteColumn(), rp.TimeElapsedColumn(), console=console,
                     transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("loading the kernels", total=None)

        def on_case(case, index, total):
            text = "done" if case is None else f"{case.family} {case.dtype}: {case.name}"
            progress.update(task, description=text, completed=index, total=total)

        result = warmup.warm(families, dtypes, on_case)
    seconds = time.perf_counter() - start
    where = warmup.cache_dir()
    print(f"kernels warmup: {', '.join(families)} in {' and '.join(dtypes)}: {result.cases} "
          f"cases in {seconds:.1f} s; {result.compiled} kernels compiled, "
          f"{result.loaded} loaded from the cache" + (f" ({where})" if where else ""))
    return 0


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return _warmup(args)
    except KeyboardInterrupt:
        print("python -m kernels warmup: interrupted (what compiled so far stays cached)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        print(f"python -m kernels warmup: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
