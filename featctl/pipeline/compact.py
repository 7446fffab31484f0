"""Compaction: rewrite a set as the latest row per id, dropping superseded rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from featctl.stores.store import open_store, part_schema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompactResult:
    set: str
    rows_before: int
    rows_after: int
    parts_before: int
    parts_after: int
    bytes_before: int
    bytes_after: int


def compact(name: str, store: str | None = None, part_rows: int = 10_000,
            lock_timeout: float = 60.0) -> CompactResult:
    """Merge a set's parts into as few as ``part_rows`` allows, keeping failed rows' reasons."""
    opened = open_store(store)
    with opened.writer(lock_timeout) as writer:
        fs = opened.feature_set(name)
        before = fs.entry
        table = fs.to_arrow(include_failed=True)
        stored = sum(p["rows"] for p in before["parts"])
        if stored == table.num_rows and len(before["parts"]) <= max(1, -(-stored // part_rows)):
            log.info("set '%s' is already compact", name)
            size = sum(p["bytes"] for p in before["parts"])
            n = len(before["parts"])
            return CompactResult(name, stored, stored, n, n, size, size)
        schema = part_schema(fs.id_type, fs.dim, fs.dtype)
        table = table.select(schema.names).cast(schema)
        tables = [table.slice(i, part_rows) for i in range(0, table.num_rows, part_rows)] or [table]
        written = writer.commit(name, before, tables, drop_old=True)
    return CompactResult(
        set=name,
        rows_before=sum(p["rows"] for p in before["parts"]),
        rows_after=table.num_rows,
        parts_before=len(before["parts"]),
        parts_after=len(written),
        bytes_before=sum(p["bytes"] for p in before["parts"]),
        bytes_after=sum(p["bytes"] for p in written),
    )
