"""Reading a feature set: the latest row per id, vectors aligned to ids the caller chooses."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featctl.errors import IdTypeError, StoreError
from featctl.stores import fs
from featctl.stores.ids import is_canonical_int

log = logging.getLogger(__name__)


_KEYS = ("id", "content_hash", "error")


def part_schema(id_type: pa.DataType, dim: int, dtype: str) -> pa.Schema:
    """The columns of every part: explicit ids, content hashes, vectors (null when failed), reasons."""
    value = pa.float16() if dtype == "float16" else pa.float32()
    return pa.schema([
        pa.field("id", id_type, nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("vector", pa.list_(value, dim)),
        pa.field("error", pa.string()),
    ])


class FeatureSet:
    """One kind of vector for one kind of entity, as the manifest describes it."""

    def __init__(self, root: str, name: str, entry: dict[str, Any]) -> None:
        self.root = root
        self.name = name
        self.entry = entry

    @property
    def dim(self) -> int:
        return int(self.entry["dim"])

    @property
    def dtype(self) -> str:
        return str(self.entry["dtype"])

    @property
    def recipe(self) -> dict[str, Any]:
        return dict(self.entry["recipe"])

    @property
    def id_type(self) -> pa.DataType:
        return pa.int64() if self.entry["id_type"] == "int64" else pa.string()

    @property
    def folder(self) -> str:
        return fs.join(self.root, "features", self.name)

    def part_paths(self) -> list[str]:
        return [fs.join(self.folder, p["file"]) for p in self.entry["parts"]]

    def _read(self, path: str, columns: list[str]) -> pa.Table:
        try:
            return fs.read_table(path, columns=columns)
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(
                f"cannot read part {fs.display(path)} of set '{self.name}' ({exc}); run featctl info "
                f"{self.name} --verify"
            ) from None

    def latest(self) -> pa.Table:
        """``id``, ``content_hash``, ``error``, ``part``, ``row`` of the newest row of every id."""
        tables = [self._read(path, list(_KEYS)) for path in self.part_paths()] or [self._empty(list(_KEYS))]
        table = pa.concat_tables([
            t.append_column("part", pa.array(np.full(t.num_rows, number, np.int32)))
             .append_column("row", pa.array(np.arange(t.num_rows, dtype=np.int64)))
            for number, t in enumerate(tables)
        ])
        ids = table["id"].to_numpy()
        _, first_in_reversed = np.unique(ids[::-1], return_index=True)
        return table.take(pa.array(np.sort(len(ids) - 1 - first_in_reversed)))

    def to_arrow(self, include_failed: bool = False) -> pa.Table:
        """The latest vector per id (float32), in commit order; failed rows only if asked."""
        latest = self.latest()
        if not include_failed:
            latest = latest.filter(pc.is_null(latest["error"]))
        columns = ["id", "content_hash", "vector"] + (["error"] if include_failed else [])
        pieces = [self._empty(columns)]
        for number, path in enumerate(self.part_paths()):
            picked = latest.filter(pc.equal(latest["part"], number))
            if picked.num_rows:
                vectors = self._read(path, ["vector"])["vector"].take(picked["row"])
                pieces.append(picked.append_column("vector", self._float32(vectors)).select(columns))
        return pa.concat_tables(pieces)

    def _empty(self, columns: list[str]) -> pa.Table:
        return part_schema(self.id_type, self.dim, "float32").empty_table().select(columns)

    def _float32(self, vectors: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        return vectors.cast(pa.list_(pa.float32(), self.dim))

    def vectors(self, ids: Iterable[Any] | pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """A float32 matrix aligned to ``ids`` and a boolean mask of the ids that have a vector.

        Rows for ids without a vector are zero, and the mask says which they are: never guess.
        """
        query = self._as_ids(ids)
        table = self.to_arrow()
        positions = pc.index_in(query, value_set=table["id"])
        mask = positions.is_valid().to_numpy(zero_copy_only=False)
        matrix = np.zeros((len(query), self.dim), dtype=np.float32)
        if mask.any():
            found = positions.filter(positions.is_valid()).to_numpy()
            matrix[mask] = vector_matrix(table["vector"], self.dim)[found]
        return matrix, mask

    def _as_ids(self, ids: Iterable[Any] | pa.Array) -> pa.Array:
        try:
            array = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(ids))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise IdTypeError(f"ids passed to set '{self.name}' mix types; pass all ints or all strings") from None
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if array.type == self.id_type:
            return array
        try:
            if pa.types.is_integer(self.id_type) and not pa.types.is_integer(array.type):
                if not is_canonical_int(pc.drop_null(array)):
                    raise pa.ArrowInvalid("not canonical integers")
            return array.cast(self.id_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = next((v for v in array.to_pylist() if not _matches(v, self.id_type)), array[0].as_py())
            raise IdTypeError(
                f"set '{self.name}' stores {self.entry['id_type']} ids but got {array.type} ids such as "
                f"{bad!r} that are not; pass ids of the stored type"
            ) from None

    def vectors_by_hash(self, hashes: set[str]) -> dict[str, np.ndarray]:
        """Stored vectors for content hashes (a text already encoded under another id)."""
        if not hashes:
            return {}
        wanted = pa.array(sorted(hashes), pa.string())
        found: dict[str, np.ndarray] = {}
        for path in self.part_paths():
            table = self._read(path, ["content_hash", "vector"])
            table = table.filter(pc.and_(pc.is_in(table["content_hash"], wanted), pc.is_valid(table["vector"])))
            if table.num_rows:
                matrix = vector_matrix(self._float32(table["vector"]), self.dim)
                found.update(zip(table["content_hash"].to_pylist(), matrix))
        return found

    def summary(self) -> dict[str, Any]:
        """What ``featctl info`` shows: counts, recipe, parts, failures by reason, bytes."""
        latest = self.latest()
        errors = Counter(e for e in latest["error"].to_pylist() if e is not None)
        stored = sum(p["rows"] for p in self.entry["parts"])
        return {
            "name": self.name,
            "entity": self.entry["entity"],
            "modality": self.entry["modality"],
            "encoder": self.entry["encoder"],
            "ids": latest.num_rows,
            "vectors": latest.num_rows - sum(errors.values()),
            "failed": sum(errors.values()),
            "failures": dict(errors.most_common()),
            "stored_rows": stored,
            "superseded_rows": stored - latest.num_rows,
            "dim": self.dim,
            "dtype": self.dtype,
            "id_type": self.entry["id_type"],
            "metric": self.entry["metric"],
            "recipe": self.recipe,
            "recipe_hash": self.entry["recipe_hash"],
            "source": self.entry["source"],
            "parts": self.entry["parts"],
            "bytes": sum(p["bytes"] for p in self.entry["parts"]),
            "created_at": self.entry["created_at"],
            "updated_at": self.entry["updated_at"],
        }

    def verify(self) -> list[str]:
        """Problems found by checking every part against its recorded checksum and row count."""
        problems = []
        for part, path in zip(self.entry["parts"], self.part_paths()):
            if not fs.isfile(path):
                problems.append(f"{part['file']}: missing")
            elif fs.sha256(path) != part["sha256"]:
                problems.append(f"{part['file']}: checksum mismatch")
            elif fs.parquet_rows(path) != part["rows"]:
                problems.append(f"{part['file']}: row count differs from the manifest")
        return problems


def _matches(value: Any, id_type: pa.DataType) -> bool:
    if pa.types.is_string(id_type):
        return isinstance(value, str)
    return isinstance(value, int) or (isinstance(value, str) and is_canonical_int(pa.array([value])))


def vector_matrix(column: pa.Array | pa.ChunkedArray, dim: int) -> np.ndarray:
    """A fixed-size-list column without nulls as an (n, dim) float32 matrix."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return column.flatten().to_numpy().astype(np.float32, copy=False).reshape(-1, dim)
