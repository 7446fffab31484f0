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


@dataclass(frozen=True)
class Template:
    """A parsed template: its literal text and the columns it reads, in order."""

    text: str
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, columns: Sequence[str]) -> Template:
        fields: list[str] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise TemplateError(
                f"cannot parse --text template {text!r}: {exc} (write {{{{ or }}}} for a literal brace)"
            ) from None
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field == "" or spec or conversion:
                raise TemplateError(
                    f"--text template {text!r}: placeholders must be plain {{column}} names, got {{{field}"
                    f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
                )
            if field not in columns:
                raise UnknownColumnError(field, f"--text template {text!r}", columns)
            if field not in fields:
                fields.append(field)
        if not fields:
            raise TemplateError(f"--text template {text!r} names no column; use {{column}} placeholders")
        return cls(text, tuple(fields))

    def render(self, batch: pa.RecordBatch) -> list[str]:
        """The text of every row; rows whose fields are all empty give ``""``."""
        columns = [[_clean(v) for v in batch.column(name).to_pylist()] for name in self.fields]
        lines = [(line, _fields_of(line)) for line in self.text.split("\n")]
        single = len(lines) == 1
        out = []
        for row in zip(*columns):
            present = {name for name, value in zip(self.fields, row) if value.strip()}
            if not present:
                out.append("")
                continue
            values = dict(zip(self.fields, row))
            if single:
                out.append(self.text.format_map(values).strip())
                continue
            kept = [line.format_map(values) for line, fields in lines if not fields or present.intersection(fields)]
            out.append("\n".join(kept).strip())
        return out


def _fields_of(line: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(line) if field]


def default_template(schema: pa.Schema, id_column: str, sample: pa.RecordBatch | None) -> str:
    """Every text column except the id, one ``column: value`` line each.

    A column is text when its type is a string (or a list of strings) and, for files read as
    strings (CSV, TSV), when some value in the first batch is not a number.
    """
    lines = []
    for field in schema:
        if field.name == id_column or not _is_text(field, sample):
            continue
        lines.append(f"{field.name}: {{{field.name}}}")
    if not lines:
        raise TemplateError(
            f"the source has no text column besides the id '{id_column}'; pass --text '{{column}} ...'"
        )
    return "\n".join(lines)


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_text(field: pa.Field, sample: pa.RecordBatch | None) -> bool:
    if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
        return _is_string(field.type.value_type)  # tags as a list: ["space", "western"]
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
