"""``featctl coverage``: what each feature set covers, before a trainer zero-fills the rest."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer

from featctl.cli import app
from featctl.cli.common import JsonOption, StoreOption, err_console, print_json
from featctl.cli.coverage_view import render
from featctl.errors import CoverageInputError
from featctl.pipeline.coverage import CoverageConfig, check_coverage
from featctl.pipeline.coverage import coverage as run_coverage
from featctl.pipeline.sources import SourceSpec
from featctl.stores.files import check_writable_file


@app.command(epilog="Example: featctl coverage --interactions data/interactions.tsv --min 0.95 --html report.html")
def coverage(
    sets: Optional[list[str]] = typer.Option(None, "--set", help="Set to report on (repeat; default: all)."),
    interactions: Optional[Path] = typer.Option(None, "--interactions", "-i", help="Interaction log file."),
    item_col: str = typer.Option("item_id", "--item-col", help="Item id column of the interactions."),
    user_col: str = typer.Option("user_id", "--user-col", help="User id column of the interactions."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Item catalogue (default: each set's source)."),
    id_column: Optional[str] = typer.Option(None, "--id", help="Id column of --catalog (default: the set's)."),
    users: Optional[Path] = typer.Option(None, "--users", help="User table for user sets (default: their source)."),
    user_id: Optional[str] = typer.Option(None, "--user-id", help="Id column of --users."),
    interactions_format: Optional[str] = typer.Option(None, "--interactions-format",
                                                      help="tsv|csv|parquet|jsonl (default: by extension)."),
    catalog_format: Optional[str] = typer.Option(None, "--catalog-format", help="Format of --catalog."),
    users_format: Optional[str] = typer.Option(None, "--users-format", help="Format of --users."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of TSV/CSV inputs."),
    list_missing: Optional[int] = typer.Option(None, "--list-missing", help="Show up to N missing ids per reason."),
    min_ratio: Optional[str] = typer.Option(None, "--min", help="Fail when coverage is below this (0.95 or 95%)."),
    min_weighted: Optional[str] = typer.Option(None, "--min-weighted", help="Fail when weighted coverage is below."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the report as one HTML page here."),
    stale: bool = typer.Option(True, "--stale/--no-stale", help="Re-hash catalogue rows to find stale vectors."),
    save: bool = typer.Option(True, "--save/--no-save", help="Save JSON and HTML under the store's reports/."),
    store: Optional[str] = StoreOption,
    json: bool = JsonOption,
) -> None:
    """Report catalogue and interaction coverage, missing ids by reason, vector health and id-space problems."""
    gates = (parse_ratio(min_ratio, "--min"), parse_ratio(min_weighted, "--min-weighted"))
    if html is not None:
        check_writable_file(str(html))

    def spec(path: Optional[Path], kind: Optional[str]) -> Optional[SourceSpec]:
        return None if path is None else SourceSpec(path=str(path), format=kind, encoding=encoding)

    config = CoverageConfig(
        store=store, sets=tuple(sets or ()), interactions=spec(interactions, interactions_format), item_col=item_col,
        user_col=user_col, catalog=spec(catalog, catalog_format), catalog_id=id_column,
        users=spec(users, users_format), users_id=user_id,
        list_missing=5 if list_missing is None else list_missing, stale=stale, save=save,
    )
    with err_console.status("measuring coverage…") if err_console.is_terminal else nullcontext():
        report = run_coverage(config)
    if html is not None:
        report.write_html(str(html))
    if json:
        print_json(report.to_dict())
    else:
        render(report, examples=list_missing is not None, html=str(html) if html else None)
    check_coverage(report, *gates)


def parse_ratio(value: Optional[str], option: str) -> Optional[float]:
    """``0.95`` or ``95%`` as a fraction in [0, 1]."""
    if value is None:
        return None
    text = value.strip()
    try:
        ratio = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise CoverageInputError(f"{option} {value!r} is not a ratio; write e.g. 0.95 or 95%")
    return ratio
