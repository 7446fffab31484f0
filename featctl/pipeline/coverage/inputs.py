"""Coverage inputs loaded into DuckDB: id columns as text, and the catalogue's current content hashes.

Ids are compared as text, written the way the files write them (an int64 id as its digits, a float
id as ``12.0``), so spellings that only a lenient loader would merge are found and explained
instead of silently matched or silently missed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from featctl.errors import FeatctlError, SourceFormatError, UnknownColumnError, first_line
from featctl.pipeline.plan import content_hashes
from featctl.pipeline.sources import Source, SourceSpec
from featctl.pipeline.templates import Template

log = logging.getLogger(__name__)


def quote(name: str) -> str:
    """A DuckDB identifier, whatever characters the column name holds."""
    return '"' + name.replace('"', '""') + '"'


def columns_of(spec: SourceSpec) -> list[str]:
    """Column names of a source; JSON Lines are asked of DuckDB, which accepts ids of mixed JSON types."""
    if spec.resolved_format() != "jsonl":
        return Source(spec).columns
    if spec.path is None or not os.path.isfile(spec.path):
        return Source(spec).columns  # raises the usual not-found error
    try:
        rows = duckdb.sql(f"DESCRIBE SELECT * FROM read_json_auto({_literal(spec.path)})").fetchall()
    except duckdb.Error as exc:
        raise SourceFormatError(f"{spec.path}: cannot read as jsonl: {first_line(exc)}") from None
    return [row[0] for row in rows]


def check_columns(spec: SourceSpec, options: dict[str, tuple[str, str]]) -> None:
    """Fail, listing the columns there are, when a column chosen by an option is not in the source."""
    available = columns_of(spec)
    for column, option in options.values():
        if column not in available:
            raise UnknownColumnError(column, f"{option} of {spec.label}", available)


def load_columns(con: duckdb.DuckDBPyConnection, spec: SourceSpec, options: dict[str, tuple[str, str]],
                 table: str) -> int:
    """Make ``table`` hold the chosen source columns, under their aliases; returns its rows.

    ``options`` maps each alias to its column and the flag that chose it. Parquet stays a view
    DuckDB scans in parallel, in its own types (cast to text only after grouping); delimited files
    come through featctl's reader, as strings, so they read exactly as ``featctl embed`` reads them.
    """
    check_columns(spec, options)
    select = ", ".join(f"{quote(col)} AS {quote(alias)}" for alias, (col, _) in options.items())
    path = _literal(spec.path or "")
    try:
        if spec.resolved_format() == "parquet":
            con.execute(f"CREATE VIEW {table} AS SELECT {select} FROM read_parquet({path})")
        elif spec.resolved_format() == "jsonl":
            types = ", ".join(f"{_literal(col)}: 'VARCHAR'" for col, _ in dict.fromkeys(options.values()))
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
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
    except duckdb.Error as exc:
        raise SourceFormatError(f"{spec.label}: cannot read it: {first_line(exc)}") from None


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


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
