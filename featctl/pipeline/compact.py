"""Compaction: rewrite a set as the latest row per id, dropping superseded rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from featctl.errors import FeatctlError
from featctl.stores.feature_set import part_schema
from featctl.stores.store import open_store

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
    if part_rows < 1:
        raise FeatctlError(f"--part-rows must be at least 1, got {part_rows}")
    opened = open_store(store)
    with opened.writer(lock_timeout) as writer:
        fs = opened.feature_set(name)
        parts = fs.entry["parts"]
        stored, size = sum(p["rows"] for p in parts), sum(p["bytes"] for p in parts)
        table = fs.to_arrow(include_failed=True)
        if stored == table.num_rows and len(parts) <= max(1, -(-stored // part_rows)):
            log.info("set '%s' is already compact", name)
            return CompactResult(name, stored, stored, len(parts), len(parts), size, size)
        schema = part_schema(fs.id_type, fs.dim, fs.dtype)
        table = table.select(schema.names).cast(schema)
        tables = [table.slice(i, part_rows) for i in range(0, table.num_rows, part_rows)]
        written = writer.commit(name, fs.entry, tables, drop_old=True)
    return CompactResult(name, stored, table.num_rows, len(parts), len(written), size,
                         sum(p["bytes"] for p in written))
