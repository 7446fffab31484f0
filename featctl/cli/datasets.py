"""``featctl datasets``: turn a public dataset into featctl-ready TSV files (items, users, interactions)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from featctl.cli import app
from featctl.cli.common import JsonOption, console, err_console, print_json
from featctl.pipeline.datasets import list_datasets, prepare_dataset

datasets_app = typer.Typer(help="Prepare public datasets as TSV files for featctl embed and coverage.",
                           no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command(epilog="Example: featctl datasets prepare movielens-100k --from data/ml-100k --out ml100k  "
                             "(with --tmdb DIR for overviews and posters; without --from it downloads the zip)")
def prepare(
    name: str = typer.Argument(..., metavar="NAME", help="Dataset, e.g. movielens-100k (see featctl datasets list)."),
    source: Optional[Path] = typer.Option(None, "--from", help="Unpacked dataset folder (default: download it)."),
    out: Path = typer.Option(..., "--out", help="Folder to write items.tsv, users.tsv, interactions.tsv into."),
    tmdb: Optional[Path] = typer.Option(None, "--tmdb", help="Side data folder (default: a sibling "
                                        "movielens-100k-tmdb next to --from, when there is one)."),
    url: Optional[str] = typer.Option(None, "--url", help="Download from this URL instead (a mirror)."),
    json: bool = JsonOption,
) -> None:
    """Write a dataset as items.tsv, users.tsv and interactions.tsv, with side data when there is some."""
    busy = err_console.status(f"preparing {name}…") if err_console.is_terminal else nullcontext()
    with busy:
        result = prepare_dataset(name, str(out), source=None if source is None else str(source),
                                 tmdb=None if tmdb is None else str(tmdb), url=url)
    if json:
        print_json(result.to_dict())
        return
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", markup=False)
    console.print(f"{result.name} → {result.out} (from {result.source})", markup=False)
    for file, rows in result.files.items():
        console.print(f"  {file}: {rows:,} rows", markup=False)
    console.print(f"side data: {result.tmdb} (overview, poster)" if result.side_data else
                  "side data: none (pass --tmdb DIR for overviews and posters)", markup=False)


@datasets_app.command("list", epilog="Example: featctl datasets list --json")
def list_(json: bool = JsonOption) -> None:
    """List the datasets that featctl datasets prepare knows."""
    adapters = list_datasets()
    if json:
        print_json([{"name": a.name, "description": a.description} for a in adapters])
        return
    table = Table("dataset", "description")
    for adapter in adapters:
        table.add_row(adapter.name, adapter.description)
    console.print(table)
