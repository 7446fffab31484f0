"""Ids: one rule, used by every reader and writer, for when an id column is int64 or string."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from featctl.errors import SourceFormatError

_CANONICAL_INT = re.compile(r"^(0|-?[1-9][0-9]{0,17})$")


def infer_id_type(values: pa.Array | pa.ChunkedArray, prefer: pa.DataType | None = None) -> pa.DataType:
    """int64 when every id is a canonical integer, else string, decided over the whole column.

    ``"12"`` becomes 12, while ``"012"`` or ``"12.0"`` keep the column as strings, so two
    spellings of one number never collapse into one id. ``prefer=string`` (an existing set's type)
    keeps integer-looking ids as strings.
    """
    kind = values.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_string(kind)
            or pa.types.is_large_string(kind)):
        raise SourceFormatError(f"ids must be integers or strings, but the id column holds {kind} values")
    if prefer is not None and pa.types.is_string(prefer):
        return pa.string()
    if pa.types.is_integer(kind):
        big = pa.types.is_uint64(kind) and (pc.max(values).as_py() or 0) > 2**63 - 1
        return pa.string() if big else pa.int64()
    if pa.types.is_floating(kind):
        present = pc.drop_null(values)
        integral = len(present) and pc.all(pc.equal(pc.floor(present), present)).as_py()
        return pa.int64() if integral else pa.string()
    present = pc.drop_null(values.cast(pa.string()))
    if len(present) and pc.all(pc.match_substring_regex(present, _CANONICAL_INT.pattern)).as_py():
        return pa.int64()
    return pa.string()


def is_canonical_int(values: pa.Array) -> bool:
    """Whether every (string) value spells an integer exactly as featctl stores it."""
    return bool(pc.all(pc.match_substring_regex(values.cast(pa.string()), _CANONICAL_INT.pattern)).as_py())


def cast_ids(values: pa.Array | pa.ChunkedArray, id_type: pa.DataType) -> pa.Array:
    """Ids cast to the type :func:`infer_id_type` chose (floats go through int64 first)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_floating(values.type) and pa.types.is_integer(id_type):
        values = values.cast(pa.int64())
    return values.cast(id_type)
