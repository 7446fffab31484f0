"""``featctl neighbors``: the nearest ids of an id, a text or a sample, shown with the catalogue's columns."""

from __future__ import annotations

import json as jsonlib
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from featctl.cli import app
from featctl.cli.common import StoreOption, console, err_console, print_json
from featctl.pipeline.neighbors import NeighborsConfig, NeighborsResult, Query
from featctl.pipeline.neighbors import neighbors as run_neighbors

_WIDTH = 48  # display values longer than this are cut in tables (never in --json)


@app.command(epilog="Example: featctl neighbors item_text --id 1 -k 5 --exclude-self --show name,tags  "
                    "(or --text 'giant robots in space', --sample 3 --compare item_bge, "
                    "--all --out neighbours.parquet)")
def neighbors(
    set_name: str = typer.Argument(..., metavar="SET", help="Feature set to search."),
    ids: Optional[list[str]] = typer.Option(None, "--id", help="Query id (repeat for several)."),
    text: Optional[str] = typer.Option(None, "--text", help="Query text, encoded with the set's own recipe."),
    sample: int = typer.Option(0, "--sample", help="Query N random ids."),
    k: int = typer.Option(10, "-k", help="Neighbours per query."),
    exclude_self: bool = typer.Option(False, "--exclude-self", help="Leave the query id out of its own list."),
    show: Optional[str] = typer.Option(None, "--show", help="Catalogue columns to show, e.g. name,tags "
                                       "(default: the template's short columns)."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Another set: both lists side by side, overlap@k."),
    all_ids: bool = typer.Option(False, "--all", help="Top-k of every id, written to --out (Parquet)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Parquet file for --all (id, rank, neighbor, score)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of --sample."),
    store: Optional[str] = StoreOption,
    json: bool = typer.Option(False, "--json", help="Print NDJSON: one object per neighbour (with --all: a summary)."),
) -> None:
    """Show the nearest neighbours of ids, a text query or a sample, through the set's index or exactly."""
    config = NeighborsConfig(
        set=set_name, store=store, ids=tuple(ids or ()), text=text, sample=sample, k=k, exclude_self=exclude_self,
        show=tuple(c.strip() for c in (show or "").split(",") if c.strip()), compare=compare, all=all_ids,
        out=str(out) if out is not None else None, seed=seed,
    )
    busy = err_console.status("searching…") if err_console.is_terminal else nullcontext()
    with busy:
        result = run_neighbors(config)
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", markup=False)
    if config.all:
        if json:
            print_json({k: v for k, v in result.to_dict().items() if k != "queries"})
        else:
            console.print(f"{result.set}: {result.rows_written:,} neighbours of {result.queried:,} ids "
                          f"(k={result.k}, {result.search}) in {result.seconds:.1f} s → {result.out}", markup=False)
        return
    if json:
        for row in result.rows():
            typer.echo(jsonlib.dumps(row, ensure_ascii=False, default=str))
        return
    for query in result.queries:
        console.print(f"{result.set} — neighbours of {_label(result, query)}", markup=False)
        console.print(_table(result, query))
    if result.compare is not None and len(result.queries) > 1:
        console.print(f"mean overlap@{result.k}: {result.mean_overlap:.2f} over {len(result.queries)} queries",
                      markup=False)


def _label(result: NeighborsResult, query: Query) -> str:
    if query.kind == "text":
        return f"text {query.query!r}"
    shown = " · ".join(v for v in result.shown(query.query).values() if v)
    return f"id {query.query}" + (f" · {shown}" if shown else "")


def _cut(value: Any) -> str:
    text = str(value).replace("\n", " ")
    return escape(text if len(text) <= _WIDTH else text[:_WIDTH - 1] + "…")


def _table(result: NeighborsResult, query: Query) -> Table:
    score = "similarity" if result.metric == "ip" else "distance"
    caption = f"{result.search}"
    if query.overlap is not None:
        caption += f" · {result.compare}: {result.compare_search} · overlap@{result.k} {query.overlap:.2f}"
    table = Table(caption=escape(caption), caption_justify="left")
    table.add_column("#", justify="right")
    sides = [(result.set, query.neighbors)] + ([(result.compare, query.other)] if query.other is not None else [])
    prefix = len(sides) > 1
    for name, _ in sides:
        head = f"{name} " if prefix else ""
        table.add_column(escape(f"{head}id"), justify="right")
        table.add_column(score, justify="right")
        for column in result.display_columns[:1] if prefix else result.display_columns:
            table.add_column(escape(column))
    for rank in range(max(len(pairs or []) for _, pairs in sides)):
        cells = [str(rank + 1)]
        for _, pairs in sides:
            pairs = pairs or []
            width = 2 + (min(1, len(result.display_columns)) if prefix else len(result.display_columns))
            if rank >= len(pairs):
                cells.extend([""] * width)
                continue
            row_id, value = pairs[rank]
            shown = list(result.shown(row_id).values())
            cells.extend([escape(str(row_id)), f"{value:.4f}", *(_cut(v) for v in shown[:width - 2])])
        table.add_row(*cells)
    return table
