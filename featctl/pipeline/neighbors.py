"""Nearest neighbours of ids, texts or samples in a feature set: through its FAISS index when one was
built, else exactly on the fly for sets small enough; side by side with another set; or for every id.
"""

from __future__ import annotations

import difflib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featctl.errors import IndexRequiredError, NeighborsInputError, UnknownIdError
from featctl.pipeline.neighbor_display import encode_text, lookup_display
from featctl.stores.feature_set import FeatureSet, vector_matrix
from featctl.stores.files import check_writable_file, commit_file
from featctl.stores.indexes import load_index
from featctl.stores.store import open_store

log = logging.getLogger(__name__)

EXACT_LIMIT = 100_000  # sets up to this many vectors are searched exactly without an index
BATCH_QUERIES = 4096  # queries per FAISS call for --all


@dataclass(frozen=True)
class NeighborsConfig:
    """What to look up: ``ids``, a ``text`` or ``sample`` random ids (exactly one), or ``all`` ids into ``out``."""

    set: str
    store: str | None = None
    ids: tuple[Any, ...] = ()
    text: str | None = None
    sample: int = 0
    k: int = 10
    exclude_self: bool = False
    show: tuple[str, ...] = ()
    compare: str | None = None
    all: bool = False
    out: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(self.ids))
        object.__setattr__(self, "show", tuple(self.show))
        if self.k < 1:
            raise NeighborsInputError(f"-k must be at least 1, got {self.k}")
        if self.sample < 0:
            raise NeighborsInputError(f"--sample must be at least 1, got {self.sample}")
        given = [flag for flag, on in (("--id", bool(self.ids)), ("--text", self.text is not None),
                                       ("--sample", self.sample > 0)) if on]
        if self.all:
            if given or self.compare:
                raise NeighborsInputError(f"--all takes no {', '.join(given) or '--compare'}: it queries every id")
            if not self.out:
                raise NeighborsInputError("--all needs --out FILE.parquet to write the neighbours to")
        elif len(given) != 1:
            raise NeighborsInputError(
                f"give exactly one of --id ID, --text QUERY, --sample N or --all (got {', '.join(given) or 'none'})")
        elif self.out:
            raise NeighborsInputError("--out writes the neighbours of --all; pass --all too, or drop --out")
        if self.text is not None and not self.text.strip():
            raise NeighborsInputError("--text is empty; give a query such as 'giant robots in space'")


@dataclass
class Query:
    """One query's neighbours: (id, score) pairs best first, and the other set's when comparing."""

    query: Any
    kind: str  # "id" | "text"
    neighbors: list[tuple[Any, float]]
    other: list[tuple[Any, float]] | None = None

    @property
    def overlap(self) -> float | None:
        if self.other is None:
            return None
        mine, theirs = {i for i, _ in self.neighbors}, {i for i, _ in self.other}
        return len(mine & theirs) / max(len(mine), len(theirs), 1)


@dataclass
class NeighborsResult:
    set: str
    metric: str
    k: int
    search: str
    queries: list[Query] = field(default_factory=list)
    display_columns: list[str] = field(default_factory=list)
    display: dict[Any, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    excluded_nonfinite: int = 0
    compare: str | None = None
    compare_search: str | None = None
    compare_excluded_nonfinite: int = 0
    out: str | None = None
    queried: int = 0
    rows_written: int = 0
    seconds: float = 0.0

    @property
    def mean_overlap(self) -> float | None:
        values = [q.overlap for q in self.queries if q.overlap is not None]
        return sum(values) / len(values) if values else None

    def shown(self, row_id: Any) -> dict[str, str]:
        found = self.display.get(row_id, {})
        return {c: found.get(c, "") for c in self.display_columns}

    def _list(self, pairs: list[tuple[Any, float]]) -> list[dict[str, Any]]:
        return [{"rank": r, "id": i, "score": s, **self.shown(i)} for r, (i, s) in enumerate(pairs, 1)]

    def rows(self) -> list[dict[str, Any]]:
        """One object per neighbour (what ``--json`` prints as NDJSON)."""
        out = []
        for q in self.queries:
            for name, pairs in ((self.set, q.neighbors), (self.compare, q.other or [])):
                out.extend({"query": q.query, "set": name, **row} for row in self._list(pairs))
        return out

    def to_dict(self) -> dict[str, Any]:
        queries = []
        for q in self.queries:
            item: dict[str, Any] = {"query": q.query, "kind": q.kind, "neighbors": self._list(q.neighbors)}
            if q.kind == "id":
                item["display"] = self.shown(q.query)
            if q.other is not None:
                item["compare"] = self._list(q.other)
                item["overlap"] = q.overlap
            queries.append(item)
        return {"set": self.set, "metric": self.metric, "k": self.k, "search": self.search,
                "display_columns": self.display_columns, "excluded_nonfinite": self.excluded_nonfinite,
                "compare": self.compare, "compare_search": self.compare_search,
                "compare_excluded_nonfinite": self.compare_excluded_nonfinite, "mean_overlap": self.mean_overlap,
                "out": self.out, "queried": self.queried, "rows_written": self.rows_written,
                "warnings": self.warnings, "seconds": round(self.seconds, 3), "queries": queries}


class Searcher:
    """A set's index, or an exact flat index over its finite vectors, with scores as users read them
    (inner product for ``ip`` sets, Euclidean distance for ``l2`` sets)."""

    def __init__(self, fs: FeatureSet, root: str, warnings: list[str]) -> None:
        self.fs = fs
        self.metric = str(fs.entry.get("metric", "ip"))
        self._vectors: tuple[pa.Array, np.ndarray, np.ndarray] | None = None
        loaded = load_index(root, fs.name)
        if loaded is not None:
            if loaded.stale(fs):
                warnings.append(f"index of {fs.name} is stale: the set changed since it was built; "
                                f"run featctl index {fs.name}")
            self.index, self.ids = loaded.index, _combined(loaded.ids)
            self.metric = str(loaded.info.get("metric", self.metric))
            self.excluded = int(loaded.info.get("excluded_nonfinite", 0))
            self.kind = f"index ({loaded.info.get('kind', '?')})"
            return
        latest = fs.latest()
        count = latest["error"].null_count  # ids with a vector
        if count > EXACT_LIMIT:
            raise IndexRequiredError(fs.name, count, EXACT_LIMIT)
        ids, matrix, finite = self.vectors()
        self.excluded = int((~finite).sum())
        self.ids = ids.filter(pa.array(finite))
        import faiss

        self.index = faiss.IndexFlatIP(fs.dim) if self.metric == "ip" else faiss.IndexFlatL2(fs.dim)
        self.index.add(np.ascontiguousarray(matrix[finite]))
        self.kind = "exact"

    def vectors(self) -> tuple[pa.Array, np.ndarray, np.ndarray]:
        """Every id with a vector, the (n, dim) matrix, and which rows are finite."""
        if self._vectors is None:
            table = self.fs.to_arrow()
            matrix = vector_matrix(table["vector"], self.fs.dim)
            self._vectors = _combined(table["id"]), matrix, np.isfinite(matrix).all(axis=1)
        return self._vectors

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and index rows (-1 where fewer than ``k`` exist) of the ``k`` nearest of each query."""
        if self.index.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        if self.metric == "l2":
            scores = np.sqrt(np.maximum(scores, 0))
        return scores, rows

    def neighbors(self, queries: np.ndarray, k: int, selves: list[Any] | None) -> list[list[tuple[Any, float]]]:
        scores, rows = self.search(queries, k + (1 if selves is not None else 0))
        out = []
        for i in range(len(queries)):
            keep = rows[i] >= 0
            found = self.ids.take(pa.array(rows[i][keep])).to_pylist()
            pairs = [(n, float(s)) for n, s in zip(found, scores[i][keep])
                     if selves is None or n != selves[i]]
            out.append(pairs[:k])
        return out


def _combined(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def neighbors(config: NeighborsConfig) -> NeighborsResult:
    """The ``k`` nearest neighbours of each query of ``config`` (see :class:`NeighborsConfig`)."""
    started = time.perf_counter()
    store = open_store(config.store)
    fs = store.feature_set(config.set)
    warnings: list[str] = []
    searcher = Searcher(fs, store.root, warnings)
    result = NeighborsResult(set=fs.name, metric=searcher.metric, k=config.k, search=searcher.kind,
                             warnings=warnings, excluded_nonfinite=searcher.excluded)
    if config.all:
        result.out = config.out
        result.queried, result.rows_written = write_all(searcher, str(config.out), config.k)
    else:
        other = store.feature_set(config.compare) if config.compare else None
        other_searcher = Searcher(other, store.root, warnings) if other is not None else None
        if other_searcher is not None:
            result.compare, result.compare_search = other_searcher.fs.name, other_searcher.kind
            result.compare_excluded_nonfinite = other_searcher.excluded
        if config.text is not None:
            labels: list[Any] = [config.text]
            selves = None
            lists = searcher.neighbors(encode_text(fs, config.text), config.k, None)
            others = (other_searcher.neighbors(encode_text(other_searcher.fs, config.text), config.k, None)
                      if other_searcher else None)
        else:
            labels = list(config.ids) if config.ids else _sample(searcher, other_searcher, config.sample, config.seed)
            labels, vectors = id_vectors(fs, labels)
            selves = labels if config.exclude_self else None
            lists = searcher.neighbors(vectors, config.k, selves)
            others = (other_searcher.neighbors(id_vectors(other_searcher.fs, labels)[1], config.k, selves)
                      if other_searcher else None)
        kind = "text" if config.text is not None else "id"
        result.queries = [Query(q, kind, lists[i], others[i] if others else None) for i, q in enumerate(labels)]
        result.queried = len(labels)
        wanted = [*(labels if kind == "id" else []), *(i for q in result.queries
                                                        for i, _ in [*q.neighbors, *(q.other or [])])]
        display = lookup_display(fs, wanted, config.show)
        result.display_columns, result.display = display.columns, display.values
        warnings.extend(display.warnings)
    for name, count in ((fs.name, result.excluded_nonfinite), (result.compare, result.compare_excluded_nonfinite)):
        if count:
            warnings.append(f"excluded {count} ids with non-finite vectors (NaN or inf) of set '{name}'")
    result.seconds = time.perf_counter() - started
    return result


def id_vectors(fs: FeatureSet, ids: list[Any]) -> tuple[list[Any], np.ndarray]:
    """Ids as the set stores them, and their vectors; unknown ids and non-finite vectors are errors."""
    matrix, mask = fs.vectors(ids)  # raises IdTypeError for ids of the wrong type
    typed = pa.array(list(ids)).cast(fs.id_type).to_pylist()
    if not mask.all():
        missing = typed[int(np.argmin(mask))]
        latest = fs.latest()
        failed = latest.filter(pc.equal(latest["id"], pa.scalar(missing, fs.id_type)))
        if failed.num_rows:
            raise NeighborsInputError(f"id {missing} of set '{fs.name}' has no vector (its row failed: "
                                      f"{failed['error'][0].as_py()}); query another id")
        raise UnknownIdError(missing, fs.name, close_ids(missing, _combined(latest["id"])))
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise NeighborsInputError(f"id {typed[int(np.argmax(bad))]} of set '{fs.name}' has a non-finite vector "
                                  "(NaN or inf), so it cannot be a query; fix the tool that wrote the set")
    return typed, matrix


def close_ids(value: Any, ids: pa.Array, limit: int = 5) -> list[Any]:
    """Stored ids close to ``value``: numerically nearest for int sets, most similar strings otherwise."""
    if not len(ids):
        return []
    if pa.types.is_integer(ids.type):
        stored = ids.to_numpy()
        distance = np.abs(stored.astype(np.float64) - float(value))
        return sorted(stored[np.argsort(distance, kind="stable")[:limit]].tolist())
    return difflib.get_close_matches(str(value), ids.to_pylist(), n=limit, cutoff=0.5)


def _sample(searcher: Searcher, other: Searcher | None, count: int, seed: int) -> list[Any]:
    ids, _, finite = searcher.vectors()
    candidates = ids.filter(pa.array(finite))
    if other is not None:
        theirs, _, their_finite = other.vectors()
        candidates = candidates.filter(pc.is_in(candidates, value_set=theirs.filter(pa.array(their_finite))))
    if not len(candidates):
        raise NeighborsInputError(f"set '{searcher.fs.name}' has no ids with vectors to sample"
                                  + (f" that set '{other.fs.name}' also holds" if other else ""))
    picked = np.random.default_rng(seed).choice(len(candidates), size=min(count, len(candidates)), replace=False)
    return candidates.take(pa.array(np.sort(picked))).to_pylist()


def write_all(searcher: Searcher, out: str, k: int) -> tuple[int, int]:
    """Top-``k`` neighbours (self excluded) of every id with a finite vector, to Parquet ``out``
    (columns id, rank, neighbor, score), searched in batches; returns (queries, rows)."""
    check_writable_file(out)
    ids, matrix, finite = searcher.vectors()
    queries, vectors = ids.filter(pa.array(finite)), matrix[finite]
    selves = pc.fill_null(pc.index_in(queries, value_set=searcher.ids), -1).to_numpy()
    id_type = searcher.fs.id_type
    schema = pa.schema([("id", id_type), ("rank", pa.int32()), ("neighbor", id_type), ("score", pa.float32())])
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.tmp-{os.getpid()}")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for lo in range(0, len(vectors), BATCH_QUERIES):
                hi = min(lo + BATCH_QUERIES, len(vectors))
                scores, found = searcher.search(vectors[lo:hi], k + 1)
                valid = (found >= 0) & (found != selves[lo:hi, None])
                order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
                found, scores = np.take_along_axis(found, order, 1), np.take_along_axis(scores, order, 1)
                r, c = np.nonzero(np.take_along_axis(valid, order, 1))
                writer.write_table(pa.table({
                    "id": queries.slice(lo, hi - lo).take(pa.array(r)),
                    "rank": pa.array((c + 1).astype(np.int32)),
                    "neighbor": searcher.ids.take(pa.array(found[r, c])),
                    "score": pa.array(scores[r, c].astype(np.float32)),
                }, schema=schema))
                rows += len(r)
        commit_file(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return len(vectors), rows
