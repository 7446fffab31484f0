"""Coverage inputs loaded into DuckDB, and the catalogue's current content hashes.

Ids are compared as text, the way ``featctl embed`` stores them: integers (and integral floats,
which embed reads as integers) as their digits, strings as written. A string such as ``"12.0"``
or ``"012"`` therefore never silently matches or silently misses id 12: it is reported as a
re-spelling.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from featctl.errors import FeatctlError, SourceFormatError, UnknownColumnError, first_line
from featctl.pipeline.plan import content_hashes
from featctl.pipeline.sources import Source, SourceSpec
from featctl.pipeline.templates import Template

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_FLOAT = ("FLOAT", "DOUBLE")


def quote(name: str) -> str:
    """A DuckDB identifier, whatever characters the column name holds."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_types(path: str) -> dict[str, str]:
    """Column → DuckDB type of a JSON Lines file, over every row (a key may first appear late)."""
    import duckdb

    try:
        rows = duckdb.sql(f"DESCRIBE SELECT * FROM read_json_auto({_literal(path)}, sample_size = -1)").fetchall()
    except duckdb.Error as exc:
        raise SourceFormatError(f"{path}: cannot read as jsonl: {first_line(exc)}") from None
    return {row[0]: row[1] for row in rows}


def columns_of(spec: SourceSpec) -> list[str]:
    """Column names of a source; JSON Lines are asked of DuckDB, which accepts ids of mixed JSON types."""
    if spec.resolved_format() != "jsonl" or not os.path.isfile(spec.path or ""):
        return Source(spec).columns  # also raises the usual not-found error
    return list(_json_types(spec.path or ""))


def check_columns(spec: SourceSpec, options: dict[str, tuple[str, str]]) -> None:
    """Fail, listing the columns there are, when a column chosen by an option is not in the source."""
    available = columns_of(spec)
    for column, option in options.values():
        if column not in available:
            raise UnknownColumnError(column, f"{option} of {spec.label}", available)


def load_columns(con: duckdb.DuckDBPyConnection, spec: SourceSpec, options: dict[str, tuple[str, str]],
                 table: str) -> tuple[int, dict[str, str]]:
    """Make ``table`` hold the chosen columns under their aliases; returns its rows and, per alias,
    the SQL expression that writes its ids as text.

    ``options`` maps each alias to its column and the flag that chose it. Parquet stays a view
    DuckDB scans in parallel (ids are cast to text only after grouping); delimited files come
    through featctl's reader, so they read exactly as ``featctl embed`` reads them.
    """
    import duckdb

    check_columns(spec, options)
    select = ", ".join(f"{quote(col)} AS {quote(alias)}" for alias, (col, _) in options.items())
    path = _literal(spec.path or "")
    try:
        if spec.resolved_format() == "parquet":
            con.execute(f"CREATE VIEW {table} AS SELECT {select} FROM read_parquet({path})")
        elif spec.resolved_format() == "jsonl":
            found = _json_types(spec.path or "")
            # A key holding numbers and strings has type JSON: read it as text, to be reported.
            types = ", ".join(f"{_literal(col)}: '{'VARCHAR' if found[col] == 'JSON' else found[col]}'"
                              for col, _ in dict.fromkeys(options.values()))
            con.execute(f"CREATE TABLE {table} AS SELECT {select} FROM read_json({path}, "
                        f"format = 'newline_delimited', columns = {{{types}}})")
        else:
            source = Source(spec)
            names = list(dict.fromkeys(col for col, _ in options.values()))
            reader = pa.RecordBatchReader.from_batches(pa.schema([source.schema.field(n) for n in names]),
                                                       source.batches(names))
            con.register("_featctl_input", reader)
            try:
                con.execute(f"CREATE TABLE {table} AS SELECT {select} FROM _featctl_input")
            finally:
                con.unregister("_featctl_input")
        rows = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
    except duckdb.Error as exc:
        raise SourceFormatError(f"{spec.label}: cannot read it: {first_line(exc)}") from None
    return rows, {alias: id_text(con, table, alias, f"{spec.label}: column '{col}' ({option})")
                  for alias, (col, option) in options.items()}


def id_text(con: duckdb.DuckDBPyConnection, table: str, column: str, where: str) -> str:
    """SQL writing ``column``'s ids as featctl stores them; refuses types that cannot be ids."""
    kind = con.execute(f"SELECT {quote(column)} FROM {table} LIMIT 0").description[0][1]
    kind = str(kind).upper()
    name = quote(column)
    if kind == "VARCHAR":
        return name
    if kind in _INTEGER:
        return f"CAST({name} AS VARCHAR)"
    if kind in _FLOAT or kind.startswith("DECIMAL"):
        return (f"CASE WHEN {name} = trunc({name}) AND abs({name}) < 9e18 "
                f"THEN CAST(CAST({name} AS BIGINT) AS VARCHAR) ELSE CAST({name} AS VARCHAR) END")
    raise SourceFormatError(f"{where} holds {kind} values; ids must be integers or strings")


@dataclass(frozen=True)
class TextRecipe:
    """What is needed to recompute a text set's content hashes from catalogue rows."""

    name: str
    template: str
    digest: str


def current_hashes(spec: SourceSpec, id_column: str, recipes: list[TextRecipe]) -> tuple[pa.Table, dict[str, str]]:
    """Each catalogue row's id and, per set, the content hash its text has today (one pass).

    Sets whose template names a column the catalogue lacks are left out, with the reason.
    """
    source = Source(spec)
    checked: dict[str, Template] = {}
    skipped: dict[str, str] = {}
    for recipe in recipes:
        try:
            checked[recipe.name] = Template.parse(recipe.template, source.columns)
        except FeatctlError as exc:
            skipped[recipe.name] = f"not checked: the template does not fit {spec.label} ({first_line(exc)})"
    names = [id_column, *dict.fromkeys(f for t in checked.values() for f in t.fields)]
    digests = {r.name: r.digest for r in recipes if r.name in checked}
    ids: list[pa.Array] = []
    hashes: dict[str, list[str]] = {name: [] for name in checked}
    if checked:
        for batch in source.batches(list(dict.fromkeys(names))):
            ids.append(batch.column(id_column))
            rendered: dict[str, list[str]] = {}  # sets sharing a template render it once
            for name, template in checked.items():
                if template.text not in rendered:
                    rendered[template.text] = template.render(batch)
                hashes[name].extend(content_hashes(digests[name], rendered[template.text]))
    id_type = source.schema.field(id_column).type
    columns = {"id": pa.chunked_array(ids, id_type) if ids else pa.array([], id_type)}
    columns.update({name: pa.array(values, pa.string()) for name, values in hashes.items()})
    return pa.table(columns), skipped


def current_hashes_in_child(spec: SourceSpec, id_column: str,
                            recipes: list[TextRecipe]) -> tuple[pa.Table, dict[str, str]]:
    """:func:`current_hashes` in a fresh interpreter, so its Python-bound work does not hold the GIL
    the rest of the report needs. A plain subprocess, not multiprocessing: the caller's script is
    never re-imported."""
    with tempfile.TemporaryDirectory(prefix="featctl-rehash-") as folder:
        job = {"spec": asdict(spec), "id_column": id_column, "recipes": [asdict(r) for r in recipes],
               "folder": folder}
        done = subprocess.run([sys.executable, "-m", __name__], input=json.dumps(job), capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise SourceFormatError(lines[-1] if lines else f"re-hashing {spec.label} failed")
        with pa.OSFile(os.path.join(folder, "hashes.arrow"), "rb") as source:
            table = pa.ipc.open_file(source).read_all()
        with open(os.path.join(folder, "skipped.json"), encoding="utf-8") as fh:
            skipped = json.load(fh)
    return table, skipped


def _child() -> None:
    job = json.loads(sys.stdin.read())
    try:
        table, skipped = current_hashes(SourceSpec(**job["spec"]), job["id_column"],
                                        [TextRecipe(**r) for r in job["recipes"]])
    except FeatctlError as exc:
        sys.exit(first_line(exc))
    with pa.OSFile(os.path.join(job["folder"], "hashes.arrow"), "wb") as sink, \
            pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with open(os.path.join(job["folder"], "skipped.json"), "w", encoding="utf-8") as fh:
        json.dump(skipped, fh)


if __name__ == "__main__":
    _child()
