"""Helpers of ``neighbors``: display columns read from a set's source, and text queries encoded with
the set's own recipe.

Ids alone say little ("is 4512 close to 87?"), so each neighbour is shown with a few columns of the
catalogue the set was embedded from: the ones ``--show`` names, else the template's columns whose values
are short (a name, tags, a type; not a summary).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featctl.encoders.registry import create_encoder, encoder_class, parse_spec
from featctl.errors import (
    EncoderLoadError,
    EncoderOptionError,
    FeatctlError,
    NeighborsInputError,
    QueryEncoderError,
    UnknownColumnError,
    UnknownEncoderError,
    first_line,
)
from featctl.pipeline.sources import Source, SourceSpec
from featctl.pipeline.templates import Template, clean_column
from featctl.stores.feature_set import FeatureSet
from featctl.stores.ids import cast_ids

SHORT_CHARS = 60  # a column whose median value is longer is a description, not a label
MAX_COLUMNS = 3
_NOT_RECIPE = ("template", "dtype")  # recipe keys that do not change how a query text is encoded


@dataclass
class Display:
    """The chosen columns and, per id found in the source, their values."""

    columns: list[str] = field(default_factory=list)
    values: dict[Any, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def of(self, row_id: Any) -> dict[str, str]:
        found = self.values.get(row_id, {})
        return {c: found.get(c, "") for c in self.columns}


def source_spec(fs: FeatureSet) -> SourceSpec | None:
    """The source the manifest records for a set (a file or a DuckDB query), if any."""
    described = fs.entry.get("source") or {}
    if described.get("path"):
        return SourceSpec(path=described["path"], format=described.get("format"),
                          encoding=described.get("encoding", "utf-8"))
    if described.get("sql"):
        return SourceSpec(sql=described["sql"])
    return None


def lookup_display(fs: FeatureSet, ids: Iterable[Any], show: tuple[str, ...] = ()) -> Display:
    """Display columns for ``ids`` of ``fs``; a source that is gone gives none, with a warning."""
    try:
        spec = source_spec(fs)
        source = Source(spec) if spec is not None else None
    except FeatctlError as exc:
        return Display(warnings=[f"no display columns: the source of set '{fs.name}' cannot be read "
                                 f"({first_line(exc)}); pass a readable catalogue or ignore this"])
    if source is None:
        if show:
            return Display(warnings=[f"--show ignored: set '{fs.name}' records no source to read columns from"])
        return Display()
    id_column = fs.entry.get("id_column") or source.columns[0]
    if id_column not in source.columns:
        return Display(warnings=[f"no display columns: {source.spec.label} has no id column '{id_column}' any more"])
    for column in show:
        if column not in source.columns:
            raise UnknownColumnError(column, f"--show (columns of {source.spec.label})", source.columns)
    candidates = list(show) if show else _template_columns(fs, source, id_column)
    if not candidates:
        return Display()
    try:
        values, lengths = _read(source, id_column, candidates, fs.id_type, list(dict.fromkeys(ids)))
    except FeatctlError as exc:
        return Display(warnings=[f"no display columns: cannot read {source.spec.label} ({first_line(exc)})"])
    columns = list(show) if show else [
        c for c in candidates if lengths[c] and statistics.median(lengths[c]) <= SHORT_CHARS][:MAX_COLUMNS]
    return Display(columns, {k: {c: v[c] for c in columns} for k, v in values.items()})


def _template_columns(fs: FeatureSet, source: Source, id_column: str) -> list[str]:
    text = fs.recipe.get("template")
    if not text:  # a set with a catalogue but no template (trained embeddings): its short columns
        return [c for c in source.columns if c != id_column]
    try:
        template = Template.parse(text, source.columns)
    except FeatctlError:  # the catalogue lost a column since the embed: show what is left
        return []
    return [c for c in template.fields if c != id_column]


def _read(source: Source, id_column: str, columns: list[str], id_type: pa.DataType,
          ids: list[Any]) -> tuple[dict[Any, dict[str, str]], dict[str, list[int]]]:
    """Values of ``columns`` for ``ids`` (first row of each id), and value lengths of the first batch."""
    values: dict[Any, dict[str, str]] = {}
    lengths: dict[str, list[int]] = {c: [] for c in columns}
    by_text = {str(i): i for i in ids}
    wanted_text = pa.array(list(by_text), pa.string())
    wanted = pa.array(ids, id_type) if ids else pa.array([], id_type)
    first = True
    for batch in source.batches(list(dict.fromkeys([id_column, *columns]))):
        if first:
            for c in columns:
                lengths[c] = [len(v) for v in clean_column(batch.column(c)) if v.strip()]
            first = False
        if not ids:
            break
        key = batch.column(id_column)
        textual = pa.types.is_string(key.type) or pa.types.is_large_string(key.type)
        try:
            key = key.cast(pa.string()) if textual else cast_ids(key, id_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        hit = pc.is_in(key, value_set=wanted_text if textual else wanted)
        picked = batch.filter(hit)
        if not picked.num_rows:
            continue
        keys = key.filter(hit).to_pylist()
        cleaned = {c: clean_column(picked.column(c)) for c in columns}
        for row, k in enumerate(keys):
            row_id = by_text.get(k) if textual else k
            if row_id is not None and row_id not in values:
                values[row_id] = {c: cleaned[c][row] for c in columns}
        if len(values) == len(ids) and not first:
            break
    return values, lengths


def encode_text(fs: FeatureSet, text: str) -> np.ndarray:
    """``text`` as a (1, dim) query vector, encoded with the set's own recipe and its query prompt."""
    spec = str(fs.entry.get("encoder", ""))
    recipe = fs.recipe
    query_prompt = fs.entry.get("query_prompt") or ""
    try:
        cls = encoder_class(parse_spec(spec)[0])
        options = {k: v for k, v in recipe.items()
                   if k in cls.options and k not in ("revision", "batch_size", "device") and v is not None}
        if "prompt" in cls.options:
            options["prompt"] = query_prompt or recipe.get("prompt") or ""
        encoder = create_encoder(spec, **options)
    except (UnknownEncoderError, EncoderLoadError, EncoderOptionError) as exc:
        raise QueryEncoderError(fs.name, spec, first_line(exc)) from None
    except ImportError as exc:
        raise QueryEncoderError(fs.name, spec, f"a package it needs is not installed ({exc.name})") from None
    expected = {k: v for k, v in recipe.items() if k not in _NOT_RECIPE}
    if query_prompt and "prompt" in cls.options:
        expected["prompt"] = query_prompt
    got = {k: v for k, v in encoder.recipe.items() if k not in _NOT_RECIPE}
    changes = [f"{k}: {expected.get(k)!r} → {got.get(k)!r}" for k in sorted(set(expected) | set(got))
               if expected.get(k) != got.get(k)]
    if changes:
        raise QueryEncoderError(fs.name, spec, "the encoder available here differs from the one that built the set ("
                                + "; ".join(changes) + "); install the same model or re-embed the set")
    try:
        vector = np.asarray(encoder.encode_query([text]), dtype=np.float32)
    except ImportError as exc:
        raise QueryEncoderError(fs.name, spec, f"a package it needs is not installed ({exc.name})") from None
    except Exception as exc:  # a model that fails to load or to encode: say why, in one line
        raise QueryEncoderError(fs.name, spec, first_line(exc)) from None
    if vector.ndim != 2 or vector.shape != (1, fs.dim):
        width = vector.shape[-1] if vector.ndim else 0
        raise NeighborsInputError(f"--text was encoded into {width} dimensions but set '{fs.name}' holds "
                                  f"{fs.dim}-dimensional vectors; re-embed the set with its encoder")
    if not np.isfinite(vector).all():
        raise NeighborsInputError(f"the encoder of set '{fs.name}' gave a non-finite vector for --text")
    return vector
