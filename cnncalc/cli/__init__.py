"""The ``cnncalc`` command: a click group whose subcommands load on demand.

Only click is imported at start-up; sympy and rich load inside the command
that needs them, so ``cnncalc --help`` answers at once. User errors become one
line on stderr (plus the spec and a caret for spec errors) and exit status 2;
what the line echoes of the user's input is clipped to a readable length.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys

import click

from ..errors import CnnCalcError, SpecError

# name -> (module, one-line help); the module defines ``command``.
COMMANDS = {
    "params": ("cnncalc.cli.params", "Per-layer shapes, params, MACs and memory of a network."),
    "zoo": ("cnncalc.cli.zoo", "List the built-in networks with their params and MACs."),
    "graph": ("cnncalc.cli.graph", "The network as a diagram: Mermaid, Graphviz DOT or SVG."),
    "compare": ("cnncalc.cli.compare", "Two networks side by side: B − A and B / A per quantity."),
    "matrix": ("cnncalc.cli.matrix", "Convolution as a matrix: Ỹ = A X̃, B = Aᵀ, backward."),
    "correlate": ("cnncalc.cli.correlate", "Cross-correlation X ⋆ Y (full/valid/same), C_w, C_x."),
    "norm": ("cnncalc.cli.norm", "Batch/layer/instance/group norm step by step, and shapes."),
    "backprop": ("cnncalc.cli.backprop", "Forward and backward pass of a small dense net."),
    "derive": ("cnncalc.cli.derive", "Symbolic derivatives and gradients, simplified."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name][0]).command

    def resolve_command(self, ctx, args):
        name = args[0]
        if name not in COMMANDS and not name.startswith("-"):
            close = difflib.get_close_matches(name, COMMANDS, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else (
                f" The commands are: {', '.join(COMMANDS)}.")
            raise click.UsageError(f"No such command {name!r}.{hint}", ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cnncalc")
def cli():
    """cnncalc: what a convolutional network costs, exactly and symbolically.

    \b
    Examples:
      cnncalc params --model resnet50 --input 3x224x224
      cnncalc params --input CxHxW --layers "conv(K,k=F,s=S,p=P)" --format latex
      cnncalc zoo
    """


def fail(message: str) -> None:
    """Print one error line to stderr and exit 2."""
    click.echo(f"Error: {clip(message)}", err=True)
    sys.exit(2)


def report(exc: CnnCalcError) -> None:
    click.echo(f"Error: {clip(str(exc))}", err=True)
    if isinstance(exc, SpecError):
        line, caret = exc.excerpt()
        click.echo(f"  {line}\n  {caret}", err=True)


# Echoed input longer than this is clipped: a pasted file must not flood the terminal.
CLIP = 80
# a quoted value, or a run without spaces, longer than CLIP
_LONG = re.compile(rf"'[^'\n]{{{CLIP - 1},}}'|\"[^\"\n]{{{CLIP - 1},}}\"|\S{{{CLIP + 1},}}")


def clip(message: str) -> str:
    """``message`` with each long value in it cut to ~80 characters: its start, an
    ellipsis and its last few characters (a closing quote stays)."""
    return _LONG.sub(lambda m: m.group()[:CLIP - 16] + "…" + m.group()[-12:], message)


def short_usage() -> str:
    """What bare ``cnncalc`` prints: the usage line and the subcommands, not the whole help."""
    return (f"Usage: cnncalc [OPTIONS] COMMAND [ARGS]...\n"
            f"Commands: {', '.join(COMMANDS)}\n"
            "Try 'cnncalc --help' for help, or 'cnncalc COMMAND --help' for one command's.")


def main(argv: list[str] | None = None) -> None:
    if not (sys.argv[1:] if argv is None else argv):
        # a group without a command is a usage error (status 2 since click 8.2): say
        # what to type, not the whole help
        click.echo(short_usage(), err=True)
        sys.exit(2)
    try:
        cli.main(args=argv, prog_name="cnncalc", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # One line, like every other user error (click would add usage lines).
        click.echo(f"Error: {clip(exc.format_message())}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except CnnCalcError as exc:
        report(exc)
        sys.exit(2)
    except RecursionError:
        fail("the input is nested too deeply to analyse")
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # a bug in cnncalc, not the user's fault
        if os.environ.get("CNNCALC_DEBUG"):
            raise
        click.echo(f"Internal error: {type(exc).__name__}: {clip(str(exc))} "
                   "(set CNNCALC_DEBUG=1 for a traceback, and please report it)", err=True)
        sys.exit(1)
