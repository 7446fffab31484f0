"""``featctl index``: a FAISS index over a set, tuned to a measured recall."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import typer

from featctl.cli import app
from featctl.cli.common import JsonOption, LockTimeoutOption, StoreOption, console, err_console, human_bytes, print_json
from featctl.pipeline.index_build import IndexConfig, build_index
from featctl.stores.fs import display


@app.command(epilog="Example: featctl index item_text --kind auto --memory 4GB")
def index(
    name: str = typer.Argument(..., help="Feature set name (see featctl ls)."),
    kind: str = typer.Option("auto", "--kind", help="auto|flat|hnsw|ivf-pq (auto: by size and --memory)."),
    memory: str = typer.Option("4GB", "--memory", help="Memory budget for the index, e.g. 4GB."),
    recall: float = typer.Option(0.95, "--recall", help="Target recall@10 the search parameter is tuned to."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build from scratch even if the index is current."),
    lock_timeout: float = LockTimeoutOption,
    store: Optional[str] = StoreOption,
    json: bool = JsonOption,
) -> None:
    """Build or update the set's FAISS index; new rows are added to an existing index where possible."""
    config = IndexConfig(set=name, store=store, kind=kind, memory=memory, rebuild=rebuild, target_recall=recall,
                         lock_timeout=lock_timeout)
    with err_console.status("indexing…") if err_console.is_terminal else nullcontext() as status:
        result = build_index(config, progress=(lambda m: status.update(m)) if status else None)
    if json:
        return print_json(result.to_dict())
    i = result.info
    params = ", ".join(f"{k}={v}" for k, v in i["params"].items()) or "exact"
    measured = (f"recall@10 {i['recall_at_10']:.3f} on {i['recall_queries']} held-out vectors"
                if i["kind"] != "flat" else "exact search")
    console.print(f"{name}: index {result.action} — {i['kind']} ({params}) over {i['rows']:,} vectors, {measured}, "
                  f"{human_bytes(i['bytes'])}, built in {i['build_seconds']:.1f} s → {display(result.path)}",
                  soft_wrap=True)
    if i.get("added_rows"):
        console.print(f"  {i['added_rows']:,} rows added since the recall was measured (--rebuild re-tunes)")
    if i.get("excluded_nonfinite"):
        console.print(f"  {i['excluded_nonfinite']:,} ids left out: their vectors are not finite (NaN or inf)")
