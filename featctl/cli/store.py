"""``featctl ls``, ``featctl info`` and ``featctl compact``: looking at and tidying the store."""

from __future__ import annotations

import json as jsonlib
from typing import Optional

import typer
from rich.table import Table

from featctl.cli import app
from featctl.cli.common import JsonOption, LockTimeoutOption, StoreOption, console, human_bytes, print_json
from featctl.errors import StoreError
from featctl.pipeline.compact import compact as run_compact
from featctl.stores.store import Store, open_store


@app.command("ls", epilog="Example: featctl ls --json")
def ls(store: Optional[str] = StoreOption, json: bool = JsonOption) -> None:
    """List the feature sets in the store."""
    opened = open_store(store)
    rows = [_listing(opened, name) for name in opened.sets()]
    if json:
        return print_json(rows)
    if not rows:
        return console.print(f"no feature sets in {opened.root} (create one with featctl embed)")
    table = Table("set", "entity", "encoder", "ids", "vectors", "failed", "dim", "dtype", "parts", "size",
                  "updated")
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], *[""] * 9, f"[red]unreadable: {r['error']}[/]")
            continue
        table.add_row(r["name"], r["entity"], r["encoder"], f"{r['ids']:,}", f"{r['vectors']:,}",
                      f"{r['failed']:,}", str(r["dim"]), r["dtype"], str(r["parts"]),
                      human_bytes(r["bytes"]), r["updated_at"])
    console.print(table)


def _listing(opened: Store, name: str) -> dict[str, object]:
    """One set's line of ``ls``; a damaged set says so instead of failing the whole listing."""
    try:
        r = opened.feature_set(name).summary()
    except StoreError as exc:
        return {"name": name, "error": str(exc)}
    keys = ("name", "entity", "modality", "encoder", "ids", "vectors", "failed", "dim", "dtype", "bytes", "updated_at")
    return {k: r[k] for k in keys} | {"parts": len(r["parts"])}


@app.command(epilog="Example: featctl info item_text --verify")
def info(
    name: str = typer.Argument(..., help="Feature set name (see featctl ls)."),
    verify: bool = typer.Option(False, "--verify", help="Check every part against its checksum."),
    store: Optional[str] = StoreOption,
    json: bool = JsonOption,
) -> None:
    """Show a feature set: counts, recipe, parts, failures by reason, size on disk."""
    fs = open_store(store).feature_set(name)
    if verify and (problems := fs.verify()):
        raise StoreError(f"set '{name}' has damaged parts: {'; '.join(problems)}; rebuild it with "
                         f"featctl embed ... --name {name} --replace, or restore the files")
    summary = fs.summary()
    if verify:
        summary["problems"] = []
    if json:
        return print_json(summary)
    s = summary
    console.print(f"[bold]{s['name']}[/]  {s['entity']} {s['modality']} · {s['encoder']} · "
                  f"{s['dim']}-d {s['dtype']} · metric {s['metric']}")
    console.print(f"ids {s['ids']:,} · vectors {s['vectors']:,} · failed {s['failed']:,} · "
                  f"superseded rows {s['superseded_rows']:,} · {human_bytes(s['bytes'])} in "
                  f"{len(s['parts'])} part(s)")
    for reason, count in s["failures"].items():
        console.print(f"  failed: {reason}: {count:,}")
    recipe = jsonlib.dumps(s["recipe"], ensure_ascii=False)
    console.print(f"recipe {s['recipe_hash'][:12]}: {recipe}", soft_wrap=True, markup=False)
    console.print("source: " + ", ".join(f"{k}={v}" for k, v in s["source"].items()), soft_wrap=True, markup=False)
    table = Table("part", "rows", "failed", "size", "sha256", "created")
    for p in s["parts"]:
        table.add_row(p["file"], f"{p['rows']:,}", f"{p['failed']:,}", human_bytes(p["bytes"]),
                      p["sha256"][:12], p["created_at"])
    console.print(table)
    if verify:
        console.print("verify: all parts match their checksums")


@app.command(epilog="Example: featctl compact item_text")
def compact(
    name: str = typer.Argument(..., help="Feature set name."),
    part_rows: int = typer.Option(10_000, "--part-rows", help="Rows per part after compaction."),
    lock_timeout: float = LockTimeoutOption,
    store: Optional[str] = StoreOption,
    json: bool = JsonOption,
) -> None:
    """Merge a set's parts and drop rows superseded by newer versions."""
    result = run_compact(name, store, part_rows=part_rows, lock_timeout=lock_timeout)
    if json:
        return print_json(result.__dict__)
    console.print(f"{result.set}: {result.rows_before:,} rows in {result.parts_before} part(s) → "
                  f"{result.rows_after:,} rows in {result.parts_after} part(s); "
                  f"{human_bytes(result.bytes_before)} → {human_bytes(result.bytes_after)}")
