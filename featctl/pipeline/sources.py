"""Sources: TSV, CSV, Parquet and JSONL files, or a DuckDB SQL query, streamed as Arrow batches.

Delimited files are read with every column as a string, so ids such as ``012`` keep their
leading zero and numbers render exactly as written; :func:`normalize_ids` then turns an id
column of canonical integers into int64, the same way for every reader of the store.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from featctl.errors import SourceEncodingError, SourceFormatError, SourceNotFoundError

log = logging.getLogger(__name__)

FORMATS = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
BATCH_ROWS = 8192
_CANONICAL_INT = re.compile(r"^-?(0|[1-9][0-9]{0,17})$")


@dataclass(frozen=True)
class SourceSpec:
    """Where rows come from: a file (format by extension unless given) or a DuckDB query."""

    path: str | None = None
    sql: str | None = None
    format: str | None = None
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.sql is None):
            raise SourceFormatError("give exactly one of --source FILE or --sql QUERY")
        if self.format is not None and self.format not in set(FORMATS.values()):
            raise SourceFormatError(
                f"unknown --format '{self.format}'; use one of tsv, csv, parquet, jsonl"
            )

    @property
    def label(self) -> str:
        return self.path if self.path is not None else "--sql query"

    def resolved_format(self) -> str:
        if self.sql is not None:
            return "sql"
        if self.format:
            return self.format
        ext = os.path.splitext(self.path or "")[1].lower()
        if ext not in FORMATS:
            raise SourceFormatError(
                f"{self.path}: cannot tell the format from extension '{ext or '(none)'}'; "
                "pass --format tsv|csv|parquet|jsonl"
            )
        return FORMATS[ext]

    def describe(self) -> dict[str, str]:
        """What the manifest records about the source."""
        out = {"format": self.resolved_format()}
        if self.path is not None:
            out["path"] = os.path.abspath(self.path)
        else:
            out["sql"] = self.sql or ""
        return out


class Source:
    """An opened source: its schema up front, then a fresh stream of batches on every call."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.format = spec.resolved_format()
        if spec.path is not None and not os.path.isfile(spec.path):
            raise SourceNotFoundError(spec.path)
        reader = self._open()
        self.schema: pa.Schema = reader.schema
        reader.close()

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def batches(self) -> Iterator[pa.RecordBatch]:
        reader = self._open()
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                    raise self._explain(exc) from None
                if batch.num_rows:
                    yield batch
        finally:
            reader.close()

    def _open(self) -> pa.RecordBatchReader:
        try:
            return _OPENERS[self.format](self.spec)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: Exception) -> Exception:
        text = str(exc)
        if self.spec.path and ("UTF8" in text or "UTF-8" in text or isinstance(exc, UnicodeDecodeError)):
            found = find_undecodable_line(self.spec.path, self.spec.encoding)
            if found is not None:
                return SourceEncodingError(self.spec.path, found[0], self.spec.encoding, found[1])
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return SourceFormatError(f"{self.spec.label}: cannot read as {self.format}: {first}")


def _open_delimited(spec: SourceSpec) -> pa.RecordBatchReader:
    import pyarrow.csv as pacsv

    delimiter = "\t" if spec.resolved_format() == "tsv" else ","
    read = pacsv.ReadOptions(encoding=spec.encoding, block_size=1 << 22)
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    header = pacsv.open_csv(spec.path, read_options=read, parse_options=parse)
    names = header.schema.names
    header.close()
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return pacsv.open_csv(spec.path, read_options=read, parse_options=parse, convert_options=convert)


def _open_parquet(spec: SourceSpec) -> pa.RecordBatchReader:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(spec.path)
    return pa.RecordBatchReader.from_batches(pf.schema_arrow, pf.iter_batches(batch_size=BATCH_ROWS))


def _open_jsonl(spec: SourceSpec) -> pa.RecordBatchReader:
    import pyarrow.json as pajson

    if spec.encoding.lower().replace("-", "") not in ("utf8", "utf_8"):
        raise SourceFormatError(f"{spec.path}: JSON Lines must be UTF-8 (got --encoding {spec.encoding})")
    return pajson.open_json(spec.path, read_options=pajson.ReadOptions(block_size=1 << 22))


def _open_sql(spec: SourceSpec) -> pa.RecordBatchReader:
    import duckdb

    con = duckdb.connect()
    try:
        return con.sql(spec.sql).to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise SourceFormatError(f"--sql query failed in DuckDB: {first}") from None


_OPENERS = {"tsv": _open_delimited, "csv": _open_delimited, "parquet": _open_parquet,
            "jsonl": _open_jsonl, "sql": _open_sql}


def find_undecodable_line(path: str, encoding: str) -> tuple[int, str] | None:
    """The 1-based line number and a description of the first bytes ``encoding`` cannot decode."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as exc:
                bad = line[exc.start:exc.end].hex(" ")
                return number, f"byte(s) {bad} at column {exc.start + 1}"
    return None


def infer_id_type(values: pa.Array | pa.ChunkedArray) -> pa.DataType:
    """int64 when every id is a canonical integer, else string, decided over the whole column.

    ``"12"`` becomes 12, while ``"012"`` or ``"12.0"`` keep the column as strings, so two
    spellings of one number never collapse into one id.
    """
    if pa.types.is_integer(values.type):
        return pa.int64()
    if pa.types.is_floating(values.type):
        present = pc.drop_null(values)
        integral = len(present) and pc.all(pc.equal(pc.floor(present), present)).as_py()
        return pa.int64() if integral else pa.string()
    present = pc.drop_null(values.cast(pa.string()))
    if len(present) and pc.all(pc.match_substring_regex(present, _CANONICAL_INT.pattern)).as_py():
        return pa.int64()
    return pa.string()


def cast_ids(values: pa.Array | pa.ChunkedArray, id_type: pa.DataType) -> pa.Array:
    """Ids cast to the type :func:`infer_id_type` chose (floats go through int64 first)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_floating(values.type) and pa.types.is_integer(id_type):
        values = values.cast(pa.int64())
    return values.cast(id_type)
