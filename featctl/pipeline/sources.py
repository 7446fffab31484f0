"""Sources: TSV, CSV, Parquet and JSONL files, or a DuckDB SQL query, streamed as Arrow batches.

Delimited files are read with every column as a string, so ids such as ``012`` keep their
leading zero and numbers render exactly as written; :func:`normalize_ids` then turns an id
column of canonical integers into int64, the same way for every reader of the store.
"""

from __future__ import annotations

import codecs
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from featctl.errors import SourceEncodingError, SourceFormatError, SourceNotFoundError, first_line

log = logging.getLogger(__name__)

FORMATS = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
BATCH_ROWS = 8192


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
        try:
            text_codec = getattr(codecs.lookup(self.encoding), "_is_text_encoding", True)
        except LookupError:
            text_codec = False
        if not text_codec:
            raise SourceFormatError(f"unknown text --encoding '{self.encoding}'; use e.g. utf-8, latin-1, cp1252")
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
        if codecs.lookup(self.encoding).name != "utf-8":
            out["encoding"] = self.encoding
        return out


class Source:
    """An opened source: its schema up front, then a fresh stream of batches on every call."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.format = spec.resolved_format()
        if spec.path is not None and not os.path.isfile(spec.path):
            raise SourceNotFoundError(spec.path)
        self._path = spec.path
        if spec.sql is not None:
            # Run the query once into a temporary Parquet file: every later pass reads the same
            # rows in the same order (GROUP BY output order is not stable), and pays for it once.
            folder = tempfile.mkdtemp(prefix="featctl-sql-")
            weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
            self._path = _run_sql(spec.sql, os.path.join(folder, "result.parquet"))
        reader = self._open()
        self.schema: pa.Schema = reader.schema
        reader.close()
        repeated = sorted({n for n in self.schema.names if self.schema.names.count(n) > 1})
        if repeated:
            raise SourceFormatError(
                f"{spec.label}: column name(s) {', '.join(repr(n) for n in repeated)} appear more than once; "
                "rename them so each column has its own name"
            )

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """A fresh stream of batches, of only ``columns`` when given (delimited and Parquet files
        then skip parsing the others)."""
        reader = self._open(columns)
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowInvalid, UnicodeError) as exc:
                    raise self._explain(exc) from None
                if self.format == "jsonl":
                    try:
                        batch.validate(full=True)  # the JSON reader lets invalid UTF-8 through
                    except pa.ArrowInvalid as exc:
                        raise self._explain(exc) from None
                if columns is not None and self.format == "jsonl":
                    batch = batch.select(columns)
                if batch.num_rows:
                    yield batch
        finally:
            reader.close()

    def _open(self, columns: list[str] | None = None) -> pa.RecordBatchReader:
        try:
            return _OPENERS[self.format](self._path, self.spec, columns)
        except (pa.ArrowInvalid, UnicodeError) as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: Exception) -> Exception:
        text = str(exc)
        if self.spec.path and (isinstance(exc, UnicodeDecodeError) or "utf8" in text.lower().replace("-", "")):
            found = find_undecodable_line(self.spec.path, self.spec.encoding)
            if found is not None:
                hint = ("JSON Lines must be UTF-8: convert the file, e.g. iconv -f latin1 -t utf-8"
                        if self.format == "jsonl" else None)
                return SourceEncodingError(self.spec.path, found[0], self.spec.encoding, found[1], hint)
        return SourceFormatError(f"{self.spec.label}: cannot read as {self.format}: {first_line(exc)}")


def _open_delimited(path: str, spec: SourceSpec, columns: list[str] | None) -> pa.RecordBatchReader:
    import pyarrow.csv as pacsv

    tsv = spec.resolved_format() == "tsv"
    read = pacsv.ReadOptions(encoding=spec.encoding, block_size=1 << 22)
    # TSV has no quoting (IANA text/tab-separated-values): a quote is an ordinary character.
    parse = pacsv.ParseOptions(delimiter="\t" if tsv else ",", quote_char=False if tsv else '"',
                               newlines_in_values=not tsv)
    header = pacsv.open_csv(path, read_options=read, parse_options=parse)
    names = header.schema.names
    header.close()
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        include_columns=columns,
    )
    return pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)


def _open_parquet(path: str, spec: SourceSpec, columns: list[str] | None) -> pa.RecordBatchReader:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow if columns is None else pa.schema([pf.schema_arrow.field(c) for c in columns])
    return pa.RecordBatchReader.from_batches(schema, pf.iter_batches(batch_size=BATCH_ROWS, columns=columns))


def _open_jsonl(path: str, spec: SourceSpec, columns: list[str] | None) -> pa.RecordBatchReader:
    import pyarrow.json as pajson

    if codecs.lookup(spec.encoding).name != "utf-8":
        raise SourceFormatError(f"{path}: JSON Lines must be UTF-8 (got --encoding {spec.encoding})")
    return pajson.open_json(path, read_options=pajson.ReadOptions(block_size=1 << 22))


def _run_sql(sql: str, out: str) -> str:
    import duckdb

    query = sql.strip().rstrip(";")
    try:
        with duckdb.connect() as con:
            names = con.sql(query).columns
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise SourceFormatError(
                    f"--sql query: column name(s) {', '.join(repr(n) for n in repeated)} appear more than once; "
                    "give each column its own name with AS"
                )
            # The newline keeps a trailing -- comment from swallowing the closing parenthesis.
            con.execute(f"COPY ({query}\n) TO '{out}' (FORMAT parquet)")
    except duckdb.Error as exc:
        raise SourceFormatError(f"--sql query failed in DuckDB: {first_line(exc)}") from None
    return out


_OPENERS = {"tsv": _open_delimited, "csv": _open_delimited, "parquet": _open_parquet,
            "jsonl": _open_jsonl, "sql": _open_parquet}


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
