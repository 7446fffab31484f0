"""Building a coverage report: load the inputs into DuckDB once, then measure every set against them.

``coverage(config)`` returns the report (its JSON schema is documented in the README).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from featctl.errors import (
    CoverageInputError,
    EmptyStoreError,
    FeatctlError,
    SourceNotFoundError,
    UnknownColumnError,
    UnknownSetError,
    first_line,
)
from featctl.pipeline.coverage import figures
from featctl.pipeline.coverage.inputs import (
    TextRecipe,
    check_columns,
    columns_of,
    current_hashes,
    current_hashes_in_child,
    id_text,
    load_columns,
)
from featctl.pipeline.coverage.save import save_report
from featctl.pipeline.coverage.set_report import Catalog, SetInputs, set_report
from featctl.pipeline.coverage.vectors import vector_health
from featctl.pipeline.sources import SourceSpec
from featctl.stores import fs as fsio
from featctl.stores.feature_set import FeatureSet
from featctl.stores.files import write_text_atomic
from featctl.stores.store import open_store

log = logging.getLogger(__name__)

SCHEMA = 1
CHILD_BYTES = 16 << 20  # catalogues bigger than this are re-hashed in a child process


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
        for column, spec, option, needs in ((self.catalog_id, self.catalog, "--id", "--catalog"),
                                            (self.users_id, self.users, "--user-id", "--users")):
            if column is not None and spec is None:
                raise CoverageInputError(f"{option} names the id column of {needs} FILE; pass {needs} too")
        for spec, option in ((self.interactions, "--interactions"), (self.catalog, "--catalog"),
                             (self.users, "--users")):
            if spec is not None and spec.path is not None and not os.path.isfile(spec.path):
                raise SourceNotFoundError(spec.path, option)
        object.__setattr__(self, "sets", tuple(dict.fromkeys(self.sets)))


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


def coverage(config: CoverageConfig) -> CoverageReport:
    """Measure the chosen sets; fails on bad input before anything is written to the store.

    Re-hashing catalogue rows (Python-bound) runs beside the rest, while DuckDB and numpy load
    the inputs and check the vectors.
    """
    import duckdb

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
    with ThreadPoolExecutor(1, thread_name_prefix="featctl-rehash") as pool, duckdb.connect() as con:
        hashing = pool.submit(_current_hashes, config, sets, catalogs)
        figures.setup(con)
        interactions, texts = None, {}
        if config.interactions is not None:
            rows, texts = load_columns(con, config.interactions, options, "inter")
            interactions = {"path": config.interactions.label, "rows": rows}
        pops = {e: figures.popularity(con, "inter", e if e in texts else None, texts.get(e, ""), f"pop_{e}")
                for e in ("item", "user")}
        summaries = {}
        for catalog in {c.table: c for c in catalogs.values()}.values():
            _, text = load_columns(con, catalog.spec, {"id": (catalog.id_column, catalog.option)}, catalog.table)
            summaries[catalog.table] = figures.catalog_summary(con, catalog.table, text["id"], catalog.distinct,
                                                               config.list_missing)
        latest = {fs.name: fs.latest() for fs in sets}
        health = {fs.name: vector_health(fs, latest[fs.name], config.list_missing) for fs in sets}
        fresh, notes = hashing.result()
        reports = []
        for index, fs in enumerate(sets):
            table = None
            if fs.name in fresh:
                table = f"fresh_{index}"
                con.register("_featctl_hashes", fresh[fs.name])
                text = id_text(con, "_featctl_hashes", "id", f"{catalogs[fs.name].spec.label}: its id column")
                con.execute(f"CREATE TABLE {table} AS SELECT DISTINCT {text} AS id, hash FROM _featctl_hashes")
                con.unregister("_featctl_hashes")
            catalog = catalogs.get(fs.name)
            entity = fs.entry["entity"]
            given = SetInputs(index, fs, latest[fs.name], health[fs.name], catalog,
                              summaries[catalog.table] if catalog else {}, options.get(entity, (None,))[0],
                              pops[entity], table, notes.get(fs.name))
            reports.append(set_report(con, given, config.list_missing))
    data = {"schema": SCHEMA, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "store": fsio.absolute(store.root), "interactions": interactions, "sets": reports}
    report = CoverageReport(data)
    if config.save:
        report = CoverageReport(data, save_report(report, store.root))
    return report


def _resolve_catalogs(config: CoverageConfig, sets: list[FeatureSet]) -> dict[str, Catalog]:
    """Each set's catalogue (explicit, else the file it was embedded from), columns checked."""
    tables: dict[tuple[str, str, str], int] = {}
    out: dict[str, Catalog] = {}
    for fs in sets:
        entity, source = fs.entry["entity"], fs.entry.get("source", {})
        spec, id_column, origin, option = ((config.catalog, config.catalog_id, "--catalog", "--id") if entity == "item"
                                           else (config.users, config.users_id, "--users", "--user-id"))
        if spec is None and source.get("path") and os.path.isfile(source["path"]):
            spec, origin = SourceSpec(path=source["path"], format=source.get("format"),
                                      encoding=source.get("encoding", "utf-8")), "set source"
        if spec is None:
            continue
        if id_column is None:
            id_column = str(fs.entry.get("id_column"))
            available = columns_of(spec)
            if id_column not in available:
                raise UnknownColumnError(id_column, f"{spec.label} (set '{fs.name}' keeps its ids in it; "
                                                    f"pass {option} to name the catalogue's id column)", available)
        check_columns(spec, {"id": (id_column, option)})
        number = tables.setdefault((spec.label, id_column, origin), len(tables))
        out[fs.name] = Catalog(spec, id_column, origin, option, f"cat_{number}", f"catd_{number}")
    return out


def _current_hashes(config: CoverageConfig, sets: list[FeatureSet],
                    catalogs: dict[str, Catalog]) -> tuple[dict[str, pa.Table], dict[str, str | None]]:
    """Per text set, the catalogue's (id, hash) pairs as they would be embedded today, or why not.

    Catalogues over ``CHILD_BYTES`` are re-hashed in a child process, the rest on this thread.
    """
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
        big = catalog.spec.path is not None and os.path.getsize(catalog.spec.path) > CHILD_BYTES
        try:
            hashes, skipped = (current_hashes_in_child if big else current_hashes)(
                catalog.spec, catalog.id_column, recipes)
        except FeatctlError as exc:
            notes.update({fs.name: f"not checked: {first_line(exc)}" for fs in members})
            continue
        for fs in members:
            notes[fs.name] = skipped.get(fs.name)
            if fs.name not in skipped:
                fresh[fs.name] = pa.table({"id": hashes["id"], "hash": hashes[fs.name]})
    return fresh, notes
