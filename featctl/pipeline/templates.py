"""Text templates: turn a row into the text an encoder sees.

``{column}`` placeholders are filled with the row's values; nulls and NaN become empty, HTML
entities are unescaped and integral floats lose their ``.0`` (a year read as 1995.0 reads 1995).
A line of the template whose placeholders are all empty is left out (so the default
``column: value`` lines skip empty columns), and a row whose placeholders are all empty has no
text at all, whatever literal text the template holds.
"""

from __future__ import annotations

import html
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from featctl.errors import TemplateError, UnknownColumnError

_NUMERIC = ("int", "uint", "float", "double", "decimal", "halffloat", "bool")


Piece = tuple[str, "str | None"]  # literal text, then the column whose value follows it (or None)


@dataclass(frozen=True)
class Template:
    """A parsed template: its text (as recorded in the recipe), and per line, literals and columns.

    Rendering joins literals and values itself rather than calling ``str.format``, so column names
    with dots, brackets or digits (``user.name``, ``tags[0]``, ``0``) are plain names.
    """

    text: str
    lines: tuple[tuple[Piece, ...], ...]

    def keys(self, rendered: list[str]) -> list[str]:
        """What each row's content hash covers: its text."""
        return rendered

    @property
    def fields(self) -> tuple[str, ...]:
        seen = dict.fromkeys(f for line in self.lines for _, f in line if f is not None)
        return tuple(seen)

    @classmethod
    def parse(cls, text: str, columns: Sequence[str]) -> Template:
        if not text.strip():
            raise TemplateError("--text is empty; give a template such as '{name}. {summary}'")
        lines = []
        for line in text.split("\n"):
            try:
                parsed = list(string.Formatter().parse(line))
            except ValueError as exc:
                raise TemplateError(
                    f"cannot parse --text template {text!r}: {exc} (write {{{{ or }}}} for a literal brace)"
                ) from None
            pieces: list[Piece] = []
            for literal, field, spec, conversion in parsed:
                name = None
                if field is not None:
                    # A column named "rating:avg" parses as field "rating" with format spec "avg".
                    name = field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                    if name not in columns:
                        where = f"--text template {text!r}"
                        raise UnknownColumnError(name if name else "{}", where, columns)
                pieces.append((literal, name))
            lines.append(tuple(pieces))
        template = cls(text, tuple(lines))
        if not template.fields:
            raise TemplateError(f"--text template {text!r} names no column; use {{column}} placeholders")
        return template

    @classmethod
    def pairs(cls, columns: Sequence[str]) -> Template:
        """One ``column: value`` line per column (the default template), whatever the names hold."""
        escaped = [c.replace("{", "{{").replace("}", "}}") for c in columns]
        text = "\n".join(f"{e}: {{{e}}}" for e in escaped)
        return cls(text, tuple(((f"{c}: ", c),) for c in columns))

    def render(self, batch: pa.RecordBatch) -> list[str]:
        """The text of every row; rows whose fields are all empty give ``""``.

        Works column by column (each line rendered for all rows at once), which is several times
        faster than building every row from a dict: coverage renders millions of rows to hash them.
        """
        fields = self.fields
        values = {name: clean_column(batch.column(name)) for name in fields}
        filled = {name: [bool(v.strip()) for v in column] for name, column in values.items()}
        rows = batch.num_rows
        always = [True] * rows
        line_texts, line_kept = [], []
        for line in self.lines:
            used = list(dict.fromkeys(f for _, f in line if f is not None))
            parts = [[lit] * rows if f is None else [lit + v for v in values[f]] for lit, f in line]
            line_texts.append([""] * rows if not parts else parts[0] if len(parts) == 1
                              else ["".join(p) for p in zip(*parts)])
            line_kept.append(always if not used else filled[used[0]] if len(used) == 1
                             else [any(p) for p in zip(*(filled[f] for f in used))])
        anything = [any(p) for p in zip(*filled.values())]
        out = []
        for row in range(rows):
            if not anything[row]:
                out.append("")
                continue
            out.append("\n".join(t[row] for t, k in zip(line_texts, line_kept) if k[row]).strip())
        return out


def default_template(schema: pa.Schema, id_column: str, sample: pa.RecordBatch | None) -> Template:
    """Every text column except the id, one ``column: value`` line each.

    A column is text when its type is a string (or a list or dictionary of strings) and, for files
    read as strings (CSV, TSV), when some value in the first batch is not a number.
    """
    columns = [f.name for f in schema if f.name != id_column and _is_text(f, sample)]
    if not columns:
        raise TemplateError(
            f"the source has no text column besides the id '{id_column}'; pass --text '{{column}} ...'"
        )
    return Template.pairs(columns)


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_text(field: pa.Field, sample: pa.RecordBatch | None) -> bool:
    if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
        return _is_string(field.type.value_type)  # tags as a list: ["space", "western"]
    if pa.types.is_dictionary(field.type):
        return _is_string(field.type.value_type)  # a Parquet category column
    if not _is_string(field.type):
        return False
    if sample is None:
        return True
    values = [v for v in sample.column(field.name).to_pylist() if v not in (None, "")]
    return not values or not all(_looks_numeric(v) for v in values)


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _clean(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        if "&" in value:
            return html.unescape(value)
        return "" if value in ("NaN", "nan") else value
    if isinstance(value, (list, tuple)):
        return ", ".join(_clean(v) for v in value if v is not None)
    return str(value)


def clean_column(column: pa.Array | pa.ChunkedArray) -> list[str]:
    """A column's values as cleaned strings; plain string columns skip the per-value type checks."""
    if not _is_string(column.type):
        return [_clean(v) for v in column.to_pylist()]
    return [("" if v is None or v in ("NaN", "nan") else html.unescape(v) if "&" in v else v)
            for v in column.to_pylist()]
