"""The command line: thin Typer commands over the library. Errors are caught here, once."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
import typer
from typer.core import TyperGroup

from featctl.errors import FeatctlError


class _Group(TyperGroup):
    """Turns a FeatctlError (or an OSError) from any command into one ``error: ...`` line and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FeatctlError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except OSError as exc:  # the machine said no (disk full, permission denied): still one line
            where = f": {exc.filename}" if exc.filename else ""
            typer.echo(f"error: {exc.strerror or exc}{where}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    help="Precompute recommender features (text embeddings) once into a versioned store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what featctl does.")) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # a run's log file may lower featctl's level: stderr keeps this one
        handler.setLevel(level)


def _register() -> None:
    from featctl.cli import coverage, datasets, embed, index, neighbors, store, train  # noqa: F401  (commands register themselves on import)


_register()


def main() -> None:
    app()
