"""The embed runner: scan → diff → read → encode → write, one committed part at a time.

Rows to encode are gathered in parts of ``part_rows``; reading, encoding and committing (Parquet
part, then manifest, each atomically) overlap. Memory is bounded by the part size; a crash loses
at most the parts in flight, and the next run's diff skips everything committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from featctl.encoders.base import Encoder, StreamingEncoder
from featctl.encoders.registry import create_encoder, encoder_class, parse_spec
from featctl.errors import (
    EncoderOptionError,
    IdTypeError,
    PendingBatchesError,
    RecipeMismatchError,
    SourceFormatError,
    StoreError,
    UnknownColumnError,
)
from featctl.pipeline.config import EmbedConfig, EmbedResult
from featctl.pipeline.encode import PartEncoder, Progress, Row, Silent, Tally
from featctl.pipeline.images import ImageColumn
from featctl.pipeline.plan import Plan, Scan, content_hash, make_plan, recipe_hash, scan_source
from featctl.pipeline.sources import Source
from featctl.pipeline.stream import stream_parts
from featctl.pipeline.templates import Template, default_template
from featctl.stores.batches import pending_batches
from featctl.stores.feature_set import FeatureSet
from featctl.stores.ids import cast_ids
from featctl.stores.store import Store, StoreWriter, check_set_name, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """An embed run's inputs, resolved and scanned before the store is locked."""

    config: EmbedConfig
    store: Store
    name: str
    source: Source
    id_column: str
    template: Template | ImageColumn
    encoder: Encoder
    recipe: dict[str, Any]
    digest: str
    scan: Scan

    def rows(self, plan: Plan) -> Iterator[Row]:
        return _todo_rows(self.source, self.id_column, self.template, self.digest, plan)


def prepare(config: EmbedConfig, encoder: Encoder | None = None) -> Job:
    """Resolve the source, template, encoder and recipe, and scan the source once."""
    store = open_store(config.store)
    name = check_set_name(config.set_name)
    source = Source(config.source)
    id_column = config.id_column or source.columns[0]
    if id_column not in source.columns:
        raise UnknownColumnError(id_column, "--id", source.columns)
    encoder = encoder or build_encoder(config)
    template: Template | ImageColumn
    if config.image is not None:
        root = config.image_root or os.path.dirname(os.path.abspath(config.source.path or "."))
        template = ImageColumn.of(config.image, source.columns, root, config.max_image_bytes)
    elif config.text is not None:
        template = Template.parse(config.text, source.columns)
    else:
        template = default_template(source.schema, id_column, _first(source))
    recipe = {**encoder.recipe, "template": template.text, "dtype": config.dtype}
    digest = recipe_hash(recipe)
    stored = store.load_manifest()["sets"].get(name)  # a hint only: checked again under the lock
    id_hint = pa.string() if stored and stored["id_type"] == "string" else None
    scan = scan_source(source, id_column, template, digest, config.on_duplicate, id_hint)
    return Job(config, store, name, source, id_column, template, encoder, recipe, digest, scan)


def plan_against(job: Job, entry: dict[str, Any] | None) -> tuple[Plan, FeatureSet | None, bool]:
    """(plan, the set to extend or None, whether the set's old rows are dropped) for the stored ``entry``."""
    config, label = job.config, job.source.spec.label
    existing = None
    replace = False
    if entry is not None:
        changes = _changes({**entry["recipe"], "entity": entry["entity"]}, {**job.recipe, "entity": config.entity})
        if changes and not config.replace:
            raise RecipeMismatchError(job.name, changes)
        # --replace with an unchanged recipe is an ordinary incremental run: a replace that
        # died halfway resumes instead of paying for everything again.
        replace = bool(changes)
        existing = None if replace else FeatureSet(job.store.root, job.name, entry)
    try:
        return make_plan(job.scan, existing, label), existing, replace
    except (StoreError, IdTypeError):
        if not (config.replace and existing is not None):
            raise
        # --replace also rebuilds a set whose parts cannot be read, or whose ids changed type.
        return make_plan(job.scan, None, label), None, True


def set_entry(job: Job, entry: dict[str, Any] | None, plan: Plan) -> dict[str, Any]:
    """The manifest entry a run writes for its set (``dim`` is added when the encoder is loaded)."""
    config = job.config
    return {
        **(entry or {}),
        "entity": config.entity, "modality": job.encoder.modality, "encoder": config.encoder,
        "recipe": job.recipe, "recipe_hash": job.digest, "dtype": config.dtype,
        "id_type": str(plan.id_type), "id_column": job.id_column,
        "metric": "ip" if job.recipe.get("normalize") else "l2",
        "source": config.source.describe(),
        "query_prompt": getattr(job.encoder, "query_prompt", ""),
    }


def embed(config: EmbedConfig, *, progress: Progress | None = None, encoder: Encoder | None = None) -> EmbedResult:
    """Embed a source into a feature set, encoding only rows whose content is not stored yet."""
    started = time.perf_counter()
    progress = progress or Silent()
    stage = _encode_and_commit
    with contextlib.ExitStack() as stack:
        if config.engine == "ray":
            from featctl.pipeline import ray_engine

            # before anything is read or locked: a missing Ray, a bad address or too small a cluster is one line
            stack.enter_context(ray_engine.session(config))
            stage = ray_engine.encode_and_commit
        return _embed(config, started, progress, encoder, stage)


def _embed(config: EmbedConfig, started: float, progress: Progress, encoder: Encoder | None,
           stage: Callable[..., None]) -> EmbedResult:
    job = prepare(config, encoder)
    encoder, name = job.encoder, job.name
    tally = Tally()
    with job.store.writer(config.lock_timeout) as writer:
        entry = writer.entry(name)
        plan, existing, replace = plan_against(job, entry)
        if pending := [b for b in pending_batches(job.store.root, name) if b.recipe_hash == job.digest]:
            raise PendingBatchesError(name, len(pending), len(set().union(*(b.digests() for b in pending))))
        if len(plan.todo):
            new_entry = set_entry(job, entry, plan)
            progress.start(len(plan.todo))
            stage(job.rows(plan), plan, encoder, writer, name, new_entry, existing, replace, config, progress, tally)
    return EmbedResult(
        set=name, rows=plan.rows, encoded=tally.encoded + tally.reused, skipped=plan.skipped,
        failed=sum(tally.failures.values()), seconds=time.perf_counter() - started, reused=tally.reused,
        texts_encoded=tally.texts, parts_written=tally.parts, store=job.store.root,
        failures=dict(tally.failures), usage=api_usage(encoder, usage=tally.usage),
        input="image" if config.image else "text",
    )


def api_usage(encoder: Encoder, batch_discount: float = 1.0, usage: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a paid encoder spent in this run (or ``usage``, summed over Ray workers): requests, tokens,
    retries and the cost at its price."""
    usage = dict(usage or getattr(encoder, "usage", None) or {})
    price = getattr(encoder, "price", None)
    if usage and price is not None:
        paid = usage.get("tokens", 0) + usage.get("batch_tokens", 0) * batch_discount
        usage["cost_usd"] = round(paid * price / 1e6, 6)
    return usage


def _first(source: Source) -> pa.RecordBatch | None:
    return next(iter(source.batches()), None)


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def build_encoder(config: EmbedConfig) -> Encoder:
    """The encoder a config names, refused early when it cannot read this kind of input."""
    prefix = parse_spec(config.encoder)[0]
    cls = encoder_class(prefix)
    wanted = "image" if config.image is not None else "text"
    if wanted not in cls.inputs:
        hint = ("--image needs an image encoder such as clip:openai/clip-vit-base-patch32" if wanted == "image"
                else "pass --image COLUMN")
        raise EncoderOptionError(f"encoder '{prefix}:' encodes {' and '.join(cls.inputs)} only; {hint}")
    options = dict(config.encoder_options)
    if "image" in cls.inputs and "text" in cls.inputs:
        options["input"] = wanted
    return create_encoder(config.encoder, **options)


def _todo_rows(source: Source, id_column: str, template: Template | ImageColumn, digest: str,
               plan: Plan) -> Iterator[Row]:
    """(id, content hash, text) of every row the plan selected, in source order."""
    offset = 0
    for batch in source.batches():
        lo, hi = (int(i) for i in plan.todo.searchsorted([offset, offset + batch.num_rows]))
        if hi > lo:
            picked = batch.take(pa.array(plan.todo[lo:hi] - offset))
            ids = cast_ids(picked.column(id_column), plan.id_type).to_pylist()
            texts = template.render(picked)
            for i, (row_id, text, key) in enumerate(zip(ids, texts, template.keys(texts))):
                now = content_hash(digest, key)
                if now.encode() != plan.todo_hashes[lo + i]:
                    raise SourceFormatError(
                        f"{source.spec.label} changed while featctl was reading it (id {row_id}); run again"
                    )
                yield row_id, now, text
        offset += batch.num_rows


def chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    """``rows`` in lists of ``size`` (the last may be shorter)."""
    part: list[Row] = []
    for row in rows:
        part.append(row)
        if len(part) >= size:
            yield part
            part = []
    if part:
        yield part


def _encode_and_commit(rows: Iterator[Row], plan: Plan, encoder: Encoder, writer: StoreWriter, name: str,
                       entry: dict[str, Any], existing: FeatureSet | None, replace: bool, config: EmbedConfig,
                       progress: Progress, tally: Tally) -> None:
    if existing is not None and entry.get("dim") not in (None, encoder.dim):
        raise RecipeMismatchError(name, {"dim": (entry["dim"], encoder.dim)})
    entry = {**entry, "dim": encoder.dim}
    parts = PartEncoder(encoder, config.dtype, plan.id_type, plan.repeated, progress, tally)
    if existing is not None and plan.stored:
        parts.cache.update(existing.vectors_by_hash(set(plan.stored)))

    def commit(table: pa.Table, first: bool) -> None:
        writer.commit(name, entry, [table], drop_old=replace and first)
        tally.parts += 1

    if isinstance(encoder, StreamingEncoder):
        # Paid requests: each batch of answers is committed before the encoder may send more.
        for i, table in enumerate(stream_parts(rows, encoder, parts, config.part_rows)):
            commit(table, i == 0)
        return
    # Three stages overlap: a thread reads and renders the next part, this thread encodes the
    # current one, another thread commits the previous one. One item in flight on each side keeps
    # memory bounded; leaving the executors waits for that item, so nothing can deadlock.
    parts_in = chunks(rows, config.part_rows)
    with ThreadPoolExecutor(1, thread_name_prefix="featctl-reader") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="featctl-writer") as committer:
        upcoming = reader.submit(next, parts_in, None)
        pending: Future[None] | None = None
        while (part := upcoming.result()) is not None:
            upcoming = reader.submit(next, parts_in, None)
            table = parts.encode(part)
            first = pending is None
            if pending is not None:
                pending.result()  # commits stay in order, and a failed one stops the run
            pending = committer.submit(commit, table, first)
        if pending is not None:
            pending.result()
