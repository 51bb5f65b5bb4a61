"""Options and output shared by the derivation commands."""

from __future__ import annotations

import sys

import click

DERIVATION_FORMATS = ("table", "json", "markdown", "latex")

format_option = click.option("-o", "--format", "fmt", type=click.Choice(DERIVATION_FORMATS),
                             default="table", show_default=True)
show_work_option = click.option("--show-work", is_flag=True,
                                help="Print the worked solution step by step.")


def emit_derivation(derivation, fmt: str, show_work: bool) -> None:
    """Print a derivation; exit 1 if one of its own checks failed (a bug, not user error)."""
    from ..render.derivation import RENDERERS
    sys.stdout.write(RENDERERS[fmt](derivation, show_work))
    failed = [c.claim for c in derivation.checks if not c.holds]
    if failed:
        click.echo(f"Internal error: a self-check failed: {failed[0]}", err=True)
        sys.exit(1)
