"""One set's report: its status table in DuckDB, turned into the documented JSON figures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featctl.pipeline.coverage import figures
from featctl.pipeline.coverage.advice import set_warnings
from featctl.pipeline.sources import SourceSpec
from featctl.stores.feature_set import FeatureSet

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalog:
    """A set's catalogue: where it is, which column holds ids, who chose it, its DuckDB tables."""

    spec: SourceSpec
    id_column: str
    origin: str   # --catalog, --users or "set source"
    option: str   # the flag that chooses its id column
    table: str    # loaded once however many sets use it
    distinct: str


@dataclass(frozen=True)
class SetInputs:
    """Everything measured before a set's figures: its rows, vector health and the inputs it meets."""

    index: int
    fs: FeatureSet
    latest: pa.Table
    health: dict[str, Any]
    catalog: Catalog | None
    catalog_summary: dict[str, Any]
    column: str | None       # the interactions column of the set's entity
    pop: dict[str, int]      # rows and empty ids of that column
    fresh: str | None        # table of today's (id, hash) pairs, when staleness was checked
    stale_note: str | None


def set_report(con: duckdb.DuckDBPyConnection, given: SetInputs, examples: int) -> dict[str, Any]:
    fs, latest, catalog, column = given.fs, given.latest, given.catalog, given.column
    stored, status, pop = f"stored_{given.index}", f"status_{given.index}", f"pop_{fs.entry['entity']}"
    con.register("_featctl_latest", latest.select(["id", "content_hash", "error"]))
    con.execute(f"CREATE TABLE {stored} AS SELECT CAST(id AS VARCHAR) AS id, content_hash AS hash, error "
                "FROM _featctl_latest")
    con.unregister("_featctl_latest")
    figures.build_status(con, status, stored, pop, catalog.distinct if catalog else None, given.fresh)
    int_ids = fs.id_type == pa.int64()
    f = figures.set_figures(con, status, stored, examples, int_ids)
    cat_ids, cat_cov, cat_fresh, int_n, int_cov, int_rows, int_cov_rows, nic_ids, nic_rows = f["totals"]
    as_id = _id_caster(int_ids)
    checked = given.fresh is not None
    failed = sum(latest["error"].is_valid().to_numpy(zero_copy_only=False))
    report: dict[str, Any] = {
        "name": fs.name, "entity": fs.entry["entity"], "modality": fs.entry["modality"],
        "encoder": fs.entry["encoder"], "dim": fs.dim, "dtype": fs.dtype, "id_type": fs.entry["id_type"],
        "stored": {"ids": latest.num_rows, "vectors": latest.num_rows - int(failed), "failed": int(failed)},
        "catalog": None, "interactions": None, "buckets": [],
    }
    if catalog is not None:
        summary = given.catalog_summary
        report["catalog"] = {
            "path": catalog.spec.label, "id_column": catalog.id_column, "origin": catalog.origin,
            "rows": summary["rows"], "ids": cat_ids, "covered": cat_cov, "ratio": _ratio(cat_cov, cat_ids),
            "fresh": cat_fresh if checked else None, "fresh_ratio": _ratio(cat_fresh, cat_ids) if checked else None,
            "missing": _counts(f["missing"], checked, lambda in_catalog, seen: in_catalog),
            "empty_ids": summary["empty_ids"], "duplicate_ids": summary["duplicate_ids"],
            "duplicate_examples": [as_id(i) for i in summary["duplicate_examples"]],
        }
    if column is not None:
        report["interactions"] = {
            "column": column, "rows": int_rows, "empty_ids": given.pop["empty_ids"], "ids": int_n,
            "covered": int_cov, "ratio": _ratio(int_cov, int_n), "covered_rows": int_cov_rows,
            "weighted_ratio": _ratio(int_cov_rows, int_rows),
            "missing": _counts(f["missing"], checked, lambda in_catalog, seen: seen),
        }
        for name in figures.BUCKETS:
            ids, covered, rows, covered_rows = (int(v or 0) for v in f["buckets"].get(name, (0, 0, 0, 0)))
            report["buckets"].append({
                "name": name, "ids": ids, "covered": covered, "ratio": _ratio(covered, ids), "interactions": rows,
                "covered_interactions": covered_rows, "weighted_ratio": _ratio(covered_rows, rows),
            })
    report["missing"] = {**_counts(f["missing"], checked, lambda in_catalog, seen: True),
                         "stale_note": given.stale_note, "examples": _examples(f["missing_examples"], as_id)}
    report["vectors"] = given.health
    max_id, known = figures.id_range(con, status, stored) if int_ids else (None, 0)
    report["id_space"] = {
        "id_type": fs.entry["id_type"], "ids": known if int_ids else None, "max_id": max_id,
        "gap": None if max_id is None else max_id + 1 - known,
        "not_in_catalog": ({"ids": nic_ids, "rows": nic_rows, "examples": [as_id(i) for i in f["not_in_catalog"]]}
                           if catalog is not None and column is not None else None),
        "forms": {"interactions": figures.forms(con, pop) if column else {},
                  "catalog": figures.forms(con, catalog.distinct) if catalog else {},
                  "stored": {k: int(v) for k, v in f["stored_forms"].items()}},
        "mismatches": [
            {"source": source, "kind": kind, "ids": int(ids), "rows": int(rows or 0),
             "examples": [[pair[0], as_id(pair[1])] for pair in pairs], "fix": figures.FIXES.get(kind, "")}
            for source, kind, ids, rows, pairs in f["mismatches"]
        ],
    }
    report["warnings"] = set_warnings(report)
    return report


def _counts(rows: list[tuple[Any, ...]], checked: bool,
            scope: Callable[[bool, bool], bool]) -> dict[str, Any]:
    """Missing ids by reason, over the ids ``scope(in_catalog, seen_in_interactions)`` keeps."""
    never, stale, failed = 0, 0, {}
    for state, reason, in_catalog, seen, count in rows:
        if not scope(in_catalog, seen):
            continue
        if state == "failed":
            failed[reason] = failed.get(reason, 0) + int(count)
        elif state == "stale":
            stale += int(count)
        else:
            never += int(count)
    return {"total": never + sum(failed.values()) + stale, "never_encoded": never, "failed": failed,
            "stale": stale if checked else None}


def _examples(rows: list[tuple[Any, ...]], as_id: Callable[[str], int | str]) -> dict[str, Any]:
    examples: dict[str, Any] = {"never_encoded": [], "failed": {}, "stale": []}
    for state, reason, ids in rows:
        values = [as_id(i) for i in ids]
        if state == "failed":
            examples["failed"][reason] = values
        else:
            examples[state.replace(" ", "_")] = values
    return examples


def _id_caster(int_ids: bool) -> Callable[[str], int | str]:
    def cast(value: str) -> int | str:
        return int(value) if int_ids and value.lstrip("-").isdigit() and value == str(int(value)) else value
    return cast


def _ratio(part: int, whole: int) -> float | None:
    return None if not whole else part / whole
