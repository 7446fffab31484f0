"""Building a coverage report: load the inputs into DuckDB once, then measure every set against them.

``coverage(config)`` returns the report (its JSON schema is documented in the README).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from featctl.errors import CoverageInputError, EmptyStoreError, FeatctlError, UnknownSetError, first_line
from featctl.pipeline.coverage import figures
from featctl.pipeline.coverage.advice import set_warnings
from featctl.pipeline.coverage.inputs import (
    TextRecipe,
    check_columns,
    columns_of,
    current_hashes,
    load_columns,
    quote,
)
from featctl.pipeline.coverage.save import save_report
from featctl.pipeline.coverage.vectors import vector_health
from featctl.pipeline.sources import SourceSpec
from featctl.stores.feature_set import FeatureSet
from featctl.stores.files import write_text_atomic
from featctl.stores.store import open_store

log = logging.getLogger(__name__)

SCHEMA = 1
PROCESS_BYTES = 16 << 20  # catalogues bigger than this are re-hashed in a second process


@dataclass(frozen=True)
class CoverageConfig:
    """What to measure: sets (default all), against a catalogue, a user table and an interaction log.

    A set without an explicit catalogue is measured against the file it was embedded from, when
    that file is still there.
    """

    store: str | None = None
    sets: tuple[str, ...] = ()
    interactions: SourceSpec | None = None
    item_col: str = "item_id"
    user_col: str = "user_id"
    catalog: SourceSpec | None = None
    catalog_id: str | None = None
    users: SourceSpec | None = None
    users_id: str | None = None
    list_missing: int = 5
    stale: bool = True
    save: bool = True

    def __post_init__(self) -> None:
        if self.list_missing < 0:
            raise CoverageInputError(f"--list-missing must be 0 or more, not {self.list_missing}")
        object.__setattr__(self, "sets", tuple(self.sets))


@dataclass(frozen=True)
class CoverageReport:
    data: dict[str, Any]
    saved: tuple[str, ...] = field(default=())

    @property
    def sets(self) -> list[dict[str, Any]]:
        return list(self.data["sets"])

    def set(self, name: str) -> dict[str, Any]:
        for entry in self.data["sets"]:
            if entry["name"] == name:
                return dict(entry)
        raise UnknownSetError(name, [s["name"] for s in self.data["sets"]])

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def write_html(self, path: str) -> None:
        """The report as one self-contained HTML page (plots inline, nothing fetched)."""
        from featctl.pipeline.coverage.html import render_html

        write_text_atomic(path, render_html(self.data))


@dataclass(frozen=True)
class _Catalog:
    spec: SourceSpec
    id_column: str
    origin: str
    table: str  # the catalogue's ids, loaded once however many sets use it
    distinct: str


def coverage(config: CoverageConfig) -> CoverageReport:
    """Measure the chosen sets; fails on bad input before anything is written to the store.

    Re-hashing catalogue rows (Python-bound) runs beside the rest, while DuckDB and numpy load
    the inputs and check the vectors.
    """
    store = open_store(config.store)
    known = store.sets()
    if not known:
        raise EmptyStoreError(store.root)
    for name in config.sets:
        if name not in known:
            raise UnknownSetError(name, known)
    sets = [store.feature_set(n) for n in (config.sets or known)]
    options = {}
    if config.interactions is not None:
        entities = sorted({fs.entry["entity"] for fs in sets})
        options = {e: (config.item_col if e == "item" else config.user_col, f"--{e}-col") for e in entities}
        check_columns(config.interactions, options)
    catalogs = _resolve_catalogs(config, sets)
    if config.save:  # importing matplotlib takes a second: let it overlap DuckDB's work
        threading.Thread(target=importlib.import_module, args=("featctl.pipeline.coverage.html",), daemon=True).start()
    with _hashing_pool(catalogs) as pool, duckdb.connect() as con:
        hashing = pool.submit(_current_hashes, config, sets, catalogs)
        figures.setup(con)
        interactions = None
        if config.interactions is not None:
            rows = load_columns(con, config.interactions, options, "inter")
            interactions = {"path": config.interactions.label, "rows": rows}
        columns = {e: options[e][0] if e in options else None for e in ("item", "user")}
        pops = {e: figures.popularity(con, "inter", e if columns[e] else None, f"pop_{e}") for e in columns}
        summaries = {}
        for catalog in {c.table: c for c in catalogs.values()}.values():
            load_columns(con, catalog.spec, {"id": (catalog.id_column, _id_option(catalog))}, catalog.table)
            summaries[catalog.table] = figures.catalog_summary(con, catalog.table, catalog.distinct,
                                                               config.list_missing)
        latest = {fs.name: fs.latest() for fs in sets}
        health = {fs.name: vector_health(fs, latest[fs.name], config.list_missing) for fs in sets}
        fresh, notes = hashing.result()
        reports = []
        for index, fs in enumerate(sets):
            if fs.name in fresh:
                con.register("_featctl_hashes", fresh[fs.name])
                con.execute(f"CREATE TABLE {_fresh(fs)} AS SELECT DISTINCT CAST(id AS VARCHAR) AS id, hash "
                            "FROM _featctl_hashes")
                con.unregister("_featctl_hashes")
            catalog = catalogs.get(fs.name)
            reports.append(_set_report(con, index, fs, latest[fs.name], health[fs.name], catalog,
                                       summaries[catalog.table] if catalog else {}, pops[fs.entry["entity"]],
                                       columns[fs.entry["entity"]], notes.get(fs.name), config.list_missing))
    data = {"schema": SCHEMA, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "store": os.path.abspath(store.root), "interactions": interactions, "sets": reports}
    report = CoverageReport(data)
    if config.save:
        report = CoverageReport(data, save_report(report, store.root))
    return report


def _hashing_pool(catalogs: dict[str, _Catalog]) -> Executor:
    """Where catalogue rows are re-hashed: a second process for big catalogues (Python-bound work
    that would otherwise hold the GIL the rest needs), a thread for small ones (no start-up cost)."""
    paths = {c.spec.path for c in catalogs.values() if c.spec.path}
    if sum(os.path.getsize(p) for p in paths) > PROCESS_BYTES:
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(1, thread_name_prefix="featctl-hash")


def _resolve_catalogs(config: CoverageConfig, sets: list[FeatureSet]) -> dict[str, _Catalog]:
    """Each set's catalogue (explicit, else the file it was embedded from), columns checked."""
    tables: dict[tuple[str, str, str], tuple[str, str]] = {}
    out: dict[str, _Catalog] = {}
    for fs in sets:
        entity, source = fs.entry["entity"], fs.entry.get("source", {})
        spec, id_column, origin = ((config.catalog, config.catalog_id, "--catalog") if entity == "item"
                                   else (config.users, config.users_id, "--users"))
        if spec is None and source.get("path") and os.path.isfile(source["path"]):
            spec, id_column, origin = SourceSpec(path=source["path"], format=source.get("format")), None, "set source"
        if spec is None:
            continue
        if id_column is None:
            available = columns_of(spec)
            id_column = fs.entry.get("id_column") if fs.entry.get("id_column") in available else available[0]
        catalog = _Catalog(spec, id_column, origin, "", "")
        check_columns(spec, {"id": (id_column, _id_option(catalog))})
        number = len(tables)
        table, distinct = tables.setdefault((spec.label, id_column, origin), (f"cat_{number}", f"catd_{number}"))
        out[fs.name] = _Catalog(spec, id_column, origin, table, distinct)
    return out


def _id_option(catalog: _Catalog) -> str:
    return "--user-id" if catalog.origin == "--users" else "--id"


def _current_hashes(config: CoverageConfig, sets: list[FeatureSet],
                    catalogs: dict[str, _Catalog]) -> tuple[dict[str, pa.Table], dict[str, str | None]]:
    """Per text set, the catalogue's (id, hash) pairs as they would be embedded today, or why not."""
    notes: dict[str, str | None] = {}
    groups: dict[str, list[FeatureSet]] = {}
    for fs in sets:
        catalog = catalogs.get(fs.name)
        if catalog is None:
            notes[fs.name] = "not checked: no catalogue to compare with"
        elif not config.stale:
            notes[fs.name] = "not checked (--no-stale)"
        elif fs.entry.get("modality") != "text" or "template" not in fs.recipe:
            notes[fs.name] = ("not checked: only text sets can be re-hashed from the catalogue "
                              f"({fs.entry.get('modality')})")
        else:
            groups.setdefault(catalog.table, []).append(fs)
    fresh: dict[str, pa.Table] = {}
    for members in groups.values():
        catalog = catalogs[members[0].name]
        recipes = [TextRecipe(fs.name, fs.recipe["template"], fs.entry["recipe_hash"]) for fs in members]
        try:
            hashes, skipped = current_hashes(catalog.spec, catalog.id_column, recipes)
        except FeatctlError as exc:
            notes.update({fs.name: f"not checked: {first_line(exc)}" for fs in members})
            continue
        for fs in members:
            notes[fs.name] = skipped.get(fs.name)
            if fs.name not in skipped:
                fresh[fs.name] = pa.table({"id": hashes["id"], "hash": hashes[fs.name]})
    return fresh, notes


def _fresh(fs: FeatureSet) -> str:
    return quote(f"fresh_{fs.name}")


def _set_report(con: duckdb.DuckDBPyConnection, index: int, fs: FeatureSet, latest: pa.Table,
                health: dict[str, Any], catalog: _Catalog | None, summary: dict[str, Any], pop: dict[str, int],
                column: str | None, stale_note: str | None, examples: int) -> dict[str, Any]:
    stored, status = f"stored_{index}", f"status_{index}"
    con.register("_featctl_latest", latest.select(["id", "content_hash", "error"]))
    con.execute(f"CREATE TABLE {stored} AS SELECT CAST(id AS VARCHAR) AS id, content_hash AS hash, error "
                "FROM _featctl_latest")
    con.unregister("_featctl_latest")
    checked = stale_note is None
    figures.build_status(con, status, stored, f"pop_{fs.entry['entity']}", catalog.distinct if catalog else None,
                         _fresh(fs) if checked else None)
    int_ids = fs.id_type == pa.int64()
    f = figures.set_figures(con, status, stored, examples, int_ids)
    cat_ids, cat_cov, cat_fresh, int_n, int_cov, int_rows, int_cov_rows, nic_ids, nic_rows = f["totals"]
    as_id = _id_caster(int_ids)
    failures = latest["error"].drop_null().value_counts().to_pylist()
    report: dict[str, Any] = {
        "name": fs.name, "entity": fs.entry["entity"], "modality": fs.entry["modality"],
        "encoder": fs.entry["encoder"], "dim": fs.dim, "dtype": fs.dtype, "id_type": fs.entry["id_type"],
        "stored": {"ids": latest.num_rows, "vectors": latest.num_rows - sum(v["counts"] for v in failures),
                   "failed": sum(v["counts"] for v in failures)},
        "catalog": None, "interactions": None, "buckets": [],
    }
    if catalog is not None:
        report["catalog"] = {
            "path": catalog.spec.label, "id_column": catalog.id_column, "origin": catalog.origin,
            "rows": summary["rows"], "ids": cat_ids, "covered": cat_cov, "ratio": _ratio(cat_cov, cat_ids),
            "fresh": cat_fresh if checked else None, "fresh_ratio": _ratio(cat_fresh, cat_ids) if checked else None,
            "empty_ids": summary["empty_ids"], "duplicate_ids": summary["duplicate_ids"],
            "duplicate_examples": [as_id(i) for i in summary["duplicate_examples"]],
        }
    if column is not None:
        report["interactions"] = {
            "column": column, "rows": int_rows, "empty_ids": pop["empty_ids"], "ids": int_n, "covered": int_cov,
            "ratio": _ratio(int_cov, int_n), "covered_rows": int_cov_rows,
            "weighted_ratio": _ratio(int_cov_rows, int_rows),
        }
    for name in figures.BUCKETS:
        if name in f["buckets"]:
            ids, covered, rows, covered_rows = (int(v or 0) for v in f["buckets"][name])
            report["buckets"].append({
                "name": name, "ids": ids, "covered": covered, "ratio": _ratio(covered, ids), "interactions": rows,
                "covered_interactions": covered_rows, "weighted_ratio": _ratio(covered_rows, rows),
            })
    report["missing"] = _missing(f, checked, stale_note, as_id)
    report["vectors"] = health
    max_id, known = figures.id_range(con, status, stored) if int_ids else (None, 0)
    report["id_space"] = {
        "id_type": fs.entry["id_type"], "ids": known if int_ids else None, "max_id": max_id,
        "gap": None if max_id is None else max_id + 1 - known,
        "not_in_catalog": ({"ids": nic_ids, "rows": nic_rows, "examples": [as_id(i) for i in f["not_in_catalog"]]}
                           if catalog is not None and column is not None else None),
        "forms": {"interactions": figures.forms(con, f"pop_{fs.entry['entity']}") if column else {},
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


def _missing(f: dict[str, Any], checked: bool, note: str | None, as_id: Any) -> dict[str, Any]:
    failed: dict[str, int] = {}
    counts = {"never encoded": 0, "stale": 0}
    for state, reason, count in f["missing"]:
        if state == "failed":
            failed[reason] = int(count)
        else:
            counts[state] = int(count)
    examples: dict[str, Any] = {"never_encoded": [], "failed": {}, "stale": []}
    for state, reason, ids in f["missing_examples"]:
        values = [as_id(i) for i in ids]
        if state == "failed":
            examples["failed"][reason] = values
        else:
            examples[state.replace(" ", "_")] = values
    return {
        "total": counts["never encoded"] + sum(failed.values()) + counts["stale"],
        "never_encoded": counts["never encoded"], "failed": failed,
        "stale": counts["stale"] if checked else None, "stale_note": note, "examples": examples,
    }


def _id_caster(int_ids: bool) -> Any:
    def cast(value: str) -> int | str:
        return int(value) if int_ids and value.lstrip("-").isdigit() and value == str(int(value)) else value
    return cast


def _ratio(part: int, whole: int) -> float | None:
    return None if not whole else part / whole
