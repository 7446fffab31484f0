"""The embed runner: diff → batch → encode → write, one committed part at a time.

Rows to encode are gathered in parts of ``part_rows``; each part's distinct texts are sorted by
length (so batches pad little), encoded, and committed atomically before the next part starts.
A crash loses at most the part in flight; the next run's diff skips everything committed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from featctl.encoders.base import Encoder
from featctl.encoders.registry import create_encoder
from featctl.errors import RecipeMismatchError, SourceFormatError, UnknownColumnError
from featctl.pipeline.config import EmbedConfig, EmbedResult
from featctl.pipeline.plan import Plan, content_hash, make_plan, recipe_hash, scan_source
from featctl.pipeline.sources import Source, cast_ids
from featctl.pipeline.templates import Template, default_template
from featctl.stores.feature_set import FeatureSet
from featctl.stores.store import StoreWriter, check_set_name, open_store, part_schema

log = logging.getLogger(__name__)

EMPTY_TEXT = "empty text"


class Progress(Protocol):
    """What the runner reports while encoding; the CLI draws it as a bar."""

    def start(self, total: int) -> None: ...
    def advance(self, rows: int) -> None: ...


class _Silent:
    def start(self, total: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass


@dataclass
class _Tally:
    encoded: int = 0
    reused: int = 0
    texts: int = 0
    parts: int = 0
    failures: Counter[str] = field(default_factory=Counter)


def embed(config: EmbedConfig, *, progress: Progress | None = None, encoder: Encoder | None = None) -> EmbedResult:
    """Embed a source into a feature set, encoding only rows whose content is not stored yet."""
    started = time.perf_counter()
    progress = progress or _Silent()
    store = open_store(config.store)
    name = check_set_name(config.set_name)
    source = Source(config.source)
    id_column = config.id_column or source.columns[0]
    if id_column not in source.columns:
        raise UnknownColumnError(id_column, "--id", source.columns)
    template = Template.parse(config.text or default_template(source.schema, id_column, _first(source)),
                              source.columns)
    encoder = encoder or create_encoder(config.encoder, **config.encoder_options)
    recipe = {**encoder.recipe, "template": template.text, "dtype": config.dtype}
    digest = recipe_hash(recipe)
    scan = scan_source(source, id_column, template, digest, config.on_duplicate)

    with store.writer(config.lock_timeout) as writer:
        entry = writer.entry(name)
        existing = None
        if entry is not None and not config.replace:
            _check_recipe(name, entry["recipe"], recipe)
            existing = FeatureSet(store.root, name, entry)
        plan = make_plan(scan, existing, source.spec.label)
        tally = _Tally()
        if len(plan.todo):
            new_entry = {
                **(entry or {}),
                "entity": config.entity, "modality": encoder.modality, "encoder": config.encoder,
                "recipe": recipe, "recipe_hash": digest, "dtype": config.dtype,
                "id_type": str(plan.id_type), "id_column": id_column,
                "metric": "ip" if recipe.get("normalize") else "l2",
                "source": config.source.describe(),
                "query_prompt": getattr(encoder, "query_prompt", ""),
            }
            progress.start(len(plan.todo))
            _encode_all(source, id_column, template, digest, plan, encoder, writer, name, new_entry,
                        config, progress, tally, replace=config.replace and entry is not None)
    failed = sum(tally.failures.values())
    return EmbedResult(
        set=name, rows=plan.rows, encoded=tally.encoded + tally.reused, skipped=plan.skipped,
        failed=failed, seconds=time.perf_counter() - started, reused=tally.reused,
        texts_encoded=tally.texts, parts_written=tally.parts, store=store.root,
        failures=dict(tally.failures),
    )


def _first(source: Source) -> pa.RecordBatch | None:
    return next(iter(source.batches()), None)


def _check_recipe(name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    changes = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
    if changes:
        raise RecipeMismatchError(name, changes)


def _todo_rows(source: Source, id_column: str, template: Template, digest: str,
               plan: Plan) -> Iterator[tuple[Any, str, str]]:
    """(id, content hash, text) of every row the plan selected, in source order."""
    offset = 0
    for batch in source.batches():
        lo, hi = np.searchsorted(plan.todo, [offset, offset + batch.num_rows])
        if hi > lo:
            picked = batch.take(pa.array(plan.todo[lo:hi] - offset))
            ids = cast_ids(picked.column(id_column), plan.id_type).to_pylist()
            for i, (row_id, text) in enumerate(zip(ids, template.render(picked))):
                digest_now = content_hash(digest, text)
                if digest_now.encode() != plan.todo_hashes[lo + i]:
                    raise SourceFormatError(
                        f"{source.spec.label} changed while featctl was reading it (id {row_id}); run again"
                    )
                yield row_id, digest_now, text
        offset += batch.num_rows


def _encode_all(source: Source, id_column: str, template: Template, digest: str, plan: Plan,
                encoder: Encoder, writer: StoreWriter, name: str, entry: dict[str, Any],
                config: EmbedConfig, progress: Progress, tally: _Tally, *, replace: bool) -> None:
    cache: dict[str, np.ndarray] = {}
    existing_entry = writer.entry(name)
    if plan.stored and existing_entry is not None and not replace:
        cache.update(FeatureSet(writer.store.root, name, existing_entry).vectors_by_hash(set(plan.stored)))
    if not replace and entry.get("dim") not in (None, encoder.dim):
        raise RecipeMismatchError(name, {"dim": (entry["dim"], encoder.dim)})
    entry = {**entry, "dim": encoder.dim}
    buffer: list[tuple[Any, str, str]] = []
    first = True

    def flush() -> None:
        nonlocal first
        table = _encode_part(buffer, encoder, cache, plan.repeated, entry, progress, tally)
        writer.commit(name, entry, [table], drop_old=replace and first)
        tally.parts += 1
        first = False
        buffer.clear()

    for row in _todo_rows(source, id_column, template, digest, plan):
        buffer.append(row)
        if len(buffer) >= config.part_rows:
            flush()
    if buffer:
        flush()


def _encode_part(rows: list[tuple[Any, str, str]], encoder: Encoder, cache: dict[str, np.ndarray],
                 repeated: frozenset[str], entry: dict[str, Any], progress: Progress,
                 tally: _Tally) -> pa.Table:
    """Vectors (or failure reasons) for one part's rows, as a table in the part schema."""
    errors: list[str | None] = [None] * len(rows)
    pending: dict[str, list[int]] = {}
    for i, (_, digest, text) in enumerate(rows):
        if not text.strip():
            errors[i] = EMPTY_TEXT
        elif digest not in cache:
            pending.setdefault(digest, []).append(i)
    progress.advance(len(rows) - sum(len(v) for v in pending.values()))
    reused = sum(1 for i, (_, d, _) in enumerate(rows) if errors[i] is None and d in cache)

    vectors: dict[str, np.ndarray] = {}
    order = sorted(pending, key=lambda d: len(rows[pending[d][0]][2]), reverse=True)
    for lo in range(0, len(order), encoder.batch_size):
        batch = order[lo:lo + encoder.batch_size]
        for digest, vector, error in _encode_batch(encoder, [rows[pending[d][0]][2] for d in batch], batch):
            if error is None:
                vectors[digest] = vector
            else:
                for i in pending[digest]:
                    errors[i] = error
        tally.texts += len(batch)
        progress.advance(sum(len(pending[d]) for d in batch))

    dim = encoder.dim
    matrix = np.zeros((len(rows), dim), dtype=np.float32)
    for i, (_, digest, _) in enumerate(rows):
        if errors[i] is None:
            matrix[i] = vectors[digest] if digest in vectors else cache[digest]
    for digest in repeated & vectors.keys():
        cache[digest] = vectors[digest]

    valid = np.array([e is None for e in errors])
    tally.reused += reused
    tally.encoded += int(valid.sum()) - reused
    tally.failures.update(e for e in errors if e is not None)
    dtype = np.float16 if entry["dtype"] == "float16" else np.float32
    value_type = pa.float16() if entry["dtype"] == "float16" else pa.float32()
    flat = pa.array(matrix.astype(dtype).reshape(-1), type=value_type)
    vector_column = pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(~valid))
    id_type = pa.int64() if entry["id_type"] == "int64" else pa.string()
    return pa.Table.from_arrays(
        [pa.array([r[0] for r in rows], id_type), pa.array([r[1] for r in rows], pa.string()),
         vector_column, pa.array(errors, pa.string())],
        schema=part_schema(id_type, dim, entry["dtype"]),
    )


def _encode_batch(encoder: Encoder, texts: list[str], digests: list[str]) -> list[tuple[str, Any, str | None]]:
    """Encode a batch; if the encoder raises, retry one text at a time so one bad input fails alone."""
    try:
        matrix = encoder.encode(texts)
        return [(d, v, None if np.isfinite(v).all() else "non-finite vector") for d, v in zip(digests, matrix)]
    except Exception as exc:  # an encoder's failure for one input must not lose the others
        if len(texts) == 1:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return [(digests[0], None, f"encoder error: {reason}")]
        log.warning("batch of %d failed (%s); retrying one at a time", len(texts), exc)
        out = []
        for text, digest in zip(texts, digests):
            out.extend(_encode_batch(encoder, [text], [digest]))
        return out
