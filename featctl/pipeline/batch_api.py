"""``featctl embed --batch-api``: embeddings through the OpenAI Batch API, at half price.

Pending batches live in the store (``batches/<set>/<state>.json``) from before they are created
until their results are committed, so a rerun after a crash or a restart polls and ingests the
batches already paid for instead of submitting the same texts again. A state is written with its
input file before the batch is created and tagged in the batch's metadata, so even a crash between
the two finds its batch again.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from featctl.encoders.openai_api import SPLIT_ON, OpenAIEncoder
from featctl.encoders.openai_batching import Assembler, Piece, pack
from featctl.encoders.ratelimit import backoff
from featctl.errors import BatchApiError, EncoderOptionError, first_line
from featctl.pipeline.config import EmbedConfig, EmbedResult
from featctl.pipeline.encode import EMPTY_TEXT, PartEncoder, Progress, Silent, Tally
from featctl.pipeline.runner import Job, api_usage, plan_against, prepare, set_entry
from featctl.pipeline.stream import stream_parts
from featctl.stores import fs as fsio
from featctl.stores.batches import BatchState, batch_folder, pending_batches

log = logging.getLogger(__name__)

MAX_BATCH_INPUTS = 50_000   # embedding inputs per batch file
MAX_BATCH_BYTES = 150 << 20  # the API takes files up to 200 MB; token ids are written as text
BATCH_DISCOUNT = 0.5         # the Batch API costs half the synchronous price
DONE = ("completed", "failed", "expired", "cancelled")


def embed_batch(config: EmbedConfig, *, wait: bool = True, poll_seconds: float = 30.0,
                progress: Progress | None = None, sleep: Callable[[float], None] = time.sleep) -> EmbedResult:
    """Submit what the store lacks as batches, then (with ``wait``) poll and commit their results."""
    config.check_batch_api()
    started = time.perf_counter()
    progress = progress or Silent()
    job = prepare(config)
    encoder = job.encoder
    if not isinstance(encoder, OpenAIEncoder):
        raise EncoderOptionError(f"--batch-api needs an openai: encoder, not {config.encoder}")
    if not poll_seconds > 0:
        raise EncoderOptionError(f"--poll must be a positive number of seconds, got {poll_seconds}")
    folder = batch_folder(job.store.root, job.name)
    api = _Api(encoder, sleep)
    tally = Tally()
    with job.store.writer(config.lock_timeout) as writer:
        plan = _commit_without_requests(job, writer, progress, tally)
        states = pending_batches(job.store.root, job.name)
        if stale := [s for s in states if s.recipe_hash != job.digest]:
            log.warning("%d pending batch(es) in %s were made with another recipe and are ignored",
                        len(stale), folder)
        states = [s if s.batch_id else api.ensure_batch(s) for s in states if s not in stale]
        pending = set().union(*(s.digests() for s in states))
        for requests in _batch_files(encoder, _texts_to_send(job, plan, pending)):
            writer.keep()
            states.append(api.submit(folder, job.digest, requests))
    log.info("%d batch(es) pending for %s", len(states), job.name)
    while states:  # without wait: one look, so a rerun collects what has finished meanwhile
        for state in list(states):
            batch = api.call("check a batch", api.client.batches.retrieve, state.batch_id)
            if batch.status in DONE:
                _ingest(job, api, state, batch, progress, tally)
                states.remove(state)
        if not wait:
            break
        if states:
            sleep(poll_seconds)
    return EmbedResult(
        set=job.name, rows=plan.rows, encoded=tally.encoded + tally.reused, skipped=plan.skipped,
        failed=sum(tally.failures.values()), seconds=time.perf_counter() - started, reused=tally.reused,
        texts_encoded=tally.texts, parts_written=tally.parts, store=job.store.root,
        failures=dict(tally.failures), usage=api_usage(encoder, BATCH_DISCOUNT), pending_batches=len(states),
    )


def _texts_to_send(job: Job, plan: Any, pending: set[str]) -> Iterator[tuple[str, str]]:
    """Distinct non-empty texts the store lacks, that no pending batch carries."""
    seen = set(pending) | set(plan.stored)
    for _, digest, text in job.rows(plan):
        if text.strip() and digest not in seen:
            seen.add(digest)
            yield digest, text


def _batch_files(encoder: OpenAIEncoder, texts: Iterator[tuple[str, str]]) -> Iterator[list[list[Piece]]]:
    """Requests grouped into batch files of whole texts (every chunk of a text in one file), each
    within MAX_BATCH_INPUTS inputs and MAX_BATCH_BYTES of JSON."""
    group: list[Piece] = []
    size = 0
    for text_pieces in encoder.texts_as_pieces(texts):
        text_size = sum(len(p.payload) * (1 if isinstance(p.payload, str) else 7) + 16 for p in text_pieces)
        if group and (len(group) + len(text_pieces) > MAX_BATCH_INPUTS or size + text_size > MAX_BATCH_BYTES):
            yield list(pack(group, encoder.max_inputs, encoder.max_tokens))
            group, size = [], 0
        group += text_pieces
        size += text_size
    if group:
        yield list(pack(group, encoder.max_inputs, encoder.max_tokens))


class _Api:
    """The Batch API calls a run makes, retried on transient errors the way embeddings requests are."""

    def __init__(self, encoder: OpenAIEncoder, sleep: Callable[[float], None]) -> None:
        self.encoder, self.client, self.sleep = encoder, encoder.client(), sleep

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import openai

        for attempt in range(1, self.encoder.max_attempts + 1):
            try:
                return fn(*args, **kwargs)
            except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError, ValueError) as exc:
                error = self.encoder.scrub(first_line(exc))
                if attempt < self.encoder.max_attempts:
                    self.sleep(backoff(attempt, self.encoder.backoff))
            except openai.APIStatusError as exc:
                error = f"{exc.status_code}: {self.encoder.scrub(first_line(exc))}"
                break
        raise BatchApiError(what, error)

    def ensure_batch(self, state: BatchState) -> BatchState:
        """The state with its batch: found by the state's tag (a reply that was lost), else created."""
        tag = {"featctl_state": state.data["state"]}
        for attempt in range(1, self.encoder.max_attempts + 1):
            for batch in self.call("list batches", self.client.batches.list, limit=100):
                if (batch.metadata or {}).get("featctl_state") == tag["featctl_state"]:
                    return state.save(batch_id=batch.id)
            try:
                batch = self.client.batches.create(input_file_id=state.data["input_file_id"],
                                                   endpoint="/v1/embeddings", completion_window="24h", metadata=tag)
            except Exception as exc:  # the batch may exist even so: look for it before creating again
                log.warning("creating a batch failed (%s); attempt %d", self.encoder.scrub(first_line(exc)), attempt)
                self.sleep(backoff(attempt, self.encoder.backoff))
                continue
            log.info("submitted batch %s for %d requests", batch.id, len(state.data["requests"]))
            return state.save(batch_id=batch.id)
        raise BatchApiError("create a batch", "no batch after every attempt; the input file is kept, run again")

    def submit(self, folder: str, digest: str, requests: list[list[Piece]]) -> BatchState:
        """Upload a batch file, record it in the store, then create its batch."""
        encoder = self.encoder
        state_id = uuid.uuid4().hex[:12]
        lines, mapping = [], {}
        for n, request in enumerate(requests):
            custom_id = f"{state_id}-{n}"
            body: dict[str, Any] = {"model": encoder.model, "input": [p.payload for p in request],
                                    "encoding_format": "base64"}
            if encoder.dimensions:
                body["dimensions"] = encoder.dimensions
            lines.append(json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings",
                                     "body": body}))
            mapping[custom_id] = [[p.key, p.chunk, p.chunks, p.tokens] for p in request]
        upload = self.call("upload a batch file", self.client.files.create, purpose="batch",
                           file=(f"featctl-{state_id}.jsonl", io.BytesIO("\n".join(lines).encode())))
        fsio.makedirs(folder)
        state = BatchState(fsio.join(folder, f"{state_id}.json"), {
            "state": state_id, "recipe_hash": digest, "input_file_id": upload.id, "batch_id": None,
            "model": encoder.model, "requests": mapping})
        return self.ensure_batch(state.save())


def _results(api: _Api, batch: Any, state: BatchState) -> dict[str, tuple[np.ndarray | None, str | None, int]]:
    """custom_id → (vectors, error, HTTP status) from a finished batch's output and error files."""
    out: dict[str, tuple[np.ndarray | None, str | None, int]] = {}

    def read(file_id: str) -> None:
        with api.client.files.with_streaming_response.content(file_id) as response:
            for line in response.iter_lines():  # output files run to gigabytes: never read whole
                if line.strip():
                    record = json.loads(line)
                    out[record["custom_id"]] = _line(record, state, api.encoder)

    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            api.call("download batch results", read, file_id)
    return out


def _line(record: dict[str, Any], state: BatchState, encoder: OpenAIEncoder) -> tuple[Any, str | None, int]:
    response = record.get("response") or {}
    body = response.get("body") or {}
    status = int(response.get("status_code") or 0)
    if status != 200:
        error = (body.get("error") or record.get("error") or {}).get("message", "no message")
        return None, encoder.scrub(f"refused by the API ({status}): {error}"), status
    expected = len(state.data["requests"].get(record["custom_id"], ()))
    try:
        data = sorted(body["data"], key=lambda d: d["index"])
        vectors = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
                            if isinstance(d["embedding"], str) else np.asarray(d["embedding"], dtype=np.float32)
                            for d in data])
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"malformed batch result ({first_line(exc)})", 0
    if vectors.shape != (expected, encoder.dim):
        return None, f"malformed batch result ({vectors.shape[0]} vectors of {vectors.shape[1]} for {expected})", 0
    return vectors, None, status


def _ingest(job: Job, api: _Api, state: BatchState, batch: Any, progress: Progress, tally: Tally) -> None:
    """Commit a finished batch's vectors and failures for the rows that carry its texts.

    A refused line fails all its inputs at once; its texts are sent again synchronously (committed
    answer by answer), where a refused request is split until the input at fault fails alone.
    """
    encoder = api.encoder
    results = _results(api, batch, state)
    assembler = Assembler()
    answers: dict[str, tuple[np.ndarray | None, str | None]] = {}
    resend: set[str] = set()
    for custom_id, pieces in state.data["requests"].items():
        missing = (None, f"batch {batch.id} {batch.status} before this request ran", 0)
        vectors, error, status = results.get(custom_id, missing)
        if vectors is not None:
            encoder.usage["batch_tokens"] += sum(p[3] for p in pieces)
        elif status in SPLIT_ON and len(pieces) > 1:
            resend.update(p[0] for p in pieces)
            continue
        for i, (key, chunk, chunks, tokens) in enumerate(pieces):
            done = assembler.add(Piece(key, chunk, chunks, "", tokens), None if vectors is None else vectors[i], error)
            if done is not None:
                answers[done[0]] = (done[1], done[2])
    resend -= answers.keys()
    with job.store.writer(job.config.lock_timeout) as writer:
        plan, _, replace = plan_against(job, writer.entry(job.name))
        rows = [row for row in job.rows(plan) if row[1] in answers or row[1] in resend]
        tally.texts += len(answers)
        _commit(job, writer, plan, replace, [(row, *answers[row[1]]) for row in rows if row[1] in answers],
                progress, tally)
        if resend:
            log.info("a batch line was refused: sending its %d texts again, one request at a time", len(resend))
            plan, _, replace = plan_against(job, writer.entry(job.name))
            parts = PartEncoder(encoder, job.config.dtype, plan.id_type, plan.repeated, progress, tally)
            entry = {**set_entry(job, writer.entry(job.name), plan), "dim": encoder.dim}
            for i, table in enumerate(stream_parts(iter([r for r in rows if r[1] in resend]), encoder, parts)):
                writer.commit(job.name, entry, [table], drop_old=replace and i == 0)
                tally.parts += 1
        fsio.remove(state.path)


def _commit_without_requests(job: Job, writer: Any, progress: Progress, tally: Tally) -> Any:
    """Commit the rows no request is needed for (empty texts, texts stored under another id); the plan."""
    plan, existing, replace = plan_against(job, writer.entry(job.name))
    progress.start(len(plan.todo))
    copies = existing.vectors_by_hash(set(plan.stored)) if existing is not None and plan.stored else {}
    rows = [(row, None, EMPTY_TEXT) if not row[2].strip() else (row, copies[row[1]], None)
            for row in job.rows(plan) if not row[2].strip() or row[1] in copies]
    _commit(job, writer, plan, replace, rows, progress, tally, fresh=False)
    return plan


def _commit(job: Job, writer: Any, plan: Any, replace: bool, rows: list[Any], progress: Progress,
            tally: Tally, fresh: bool = True) -> None:
    encoder = job.encoder
    parts = PartEncoder(encoder, job.config.dtype, plan.id_type, plan.repeated, progress, tally)
    rows = [(row, v, e or parts.check(v)) for row, v, e in rows]
    entry = {**set_entry(job, writer.entry(job.name), plan), "dim": encoder.dim}
    counted: set[str] = set()
    size = job.config.part_rows
    for lo in range(0, len(rows), size):
        chunk = rows[lo:lo + size]
        new = {r[1] for r, _, e in chunk if e is None and fresh} - counted
        counted |= new
        writer.commit(job.name, entry, [parts.table(chunk, len(new))], drop_old=replace and lo == 0)
        tally.parts += 1
        progress.advance(len(chunk))
