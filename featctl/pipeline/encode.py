"""The encode stage: one part's rows in, one part table (vectors or failure reasons) out.

Within a part, distinct texts are sorted by length so each batch pads little, and texts seen
earlier (in this run or already stored under another id) are copied instead of encoded. Calls to
the encoder grow from one batch to many while they stay short, so per-call overhead vanishes on
fast devices while the progress bar still moves every second or so on slow ones.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from featctl.encoders.base import Encoder
from featctl.errors import EncoderFailedError, first_line
from featctl.pipeline.images import FAILED
from featctl.stores.feature_set import part_schema

log = logging.getLogger(__name__)

EMPTY_TEXT = "empty text"
NON_FINITE = "non-finite vector"
BEYOND_FLOAT16 = "vector values beyond the float16 range (embed with --dtype float32)"
FLOAT16_MAX = float(np.finfo(np.float16).max)
# Encoder calls grow (doubling, up to MAX_CALL_BATCHES batches) while one takes less than this.
CALL_SECONDS = 0.5
MAX_CALL_BATCHES = 64
# Texts that must fail, all for one reason and with no success yet, before the encoder is deemed broken.
BROKEN_AFTER = 8

Row = tuple[Any, str, str]  # (id, content hash, text)
Result = tuple[str, Any, "str | None"]  # (content hash, vector or None, failure reason or None)


class Progress(Protocol):
    """What the runner reports while encoding; the CLI draws it as a bar."""

    def start(self, total: int) -> None: ...
    def advance(self, rows: int) -> None: ...


class Silent:
    def start(self, total: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass


@dataclass
class Tally:
    """Counts of a run, added to part by part."""

    encoded: int = 0
    reused: int = 0
    texts: int = 0
    parts: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    usage: Counter[str] = field(default_factory=Counter)  # a paid API's spend, when counted away from its encoder


@dataclass
class PartEncoder:
    """Encodes parts for one run, remembering vectors of texts that occur again later."""

    encoder: Encoder
    dtype: str
    id_type: pa.DataType
    repeated: frozenset[str]
    progress: Progress
    tally: Tally
    cache: dict[str, np.ndarray] = field(default_factory=dict)
    _call_size: int = 0
    _worked: bool = False
    _failures: Counter[str | None] = field(default_factory=Counter)

    def encode(self, rows: list[Row]) -> pa.Table:
        errors: list[str | None] = [None] * len(rows)
        pending: dict[str, list[int]] = {}
        for i, (_, digest, text) in enumerate(rows):
            if not text.strip():
                errors[i] = EMPTY_TEXT
            elif text.startswith(FAILED):
                errors[i] = text[len(FAILED):]
            elif digest not in self.cache:
                pending.setdefault(digest, []).append(i)
        self.progress.advance(len(rows) - sum(len(v) for v in pending.values()))

        order = sorted(pending, key=lambda d: len(rows[pending[d][0]][2]), reverse=True)
        vectors: dict[str, np.ndarray] = {}
        for digest, vector, error in self._encode_sorted([rows[pending[d][0]][2] for d in order], order, pending):
            if error is None:
                vectors[digest] = vector
            else:
                for i in pending[digest]:
                    errors[i] = error
        for digest in self.repeated & vectors.keys():
            self.cache[digest] = vectors[digest]
        out = [(row, None if errors[i] is not None else vectors.get(row[1], self.cache.get(row[1])), errors[i])
               for i, row in enumerate(rows)]
        return self.table(out, fresh=len(vectors))

    def check(self, vector: np.ndarray | None) -> str | None:
        """Why a vector cannot be stored, or None."""
        if vector is None:
            return None
        if not np.isfinite(vector).all():
            return NON_FINITE
        if self.dtype == "float16" and np.abs(vector).max() > FLOAT16_MAX:
            return BEYOND_FLOAT16
        return None

    def table(self, answered: list[tuple[Row, np.ndarray | None, str | None]], fresh: int) -> pa.Table:
        """The part table of rows and their answers; ``fresh`` of the vectors came from the encoder now."""
        matrix = np.zeros((len(answered), self.encoder.dim), dtype=np.float32)
        errors = [error for _, _, error in answered]
        for i, (_, vector, error) in enumerate(answered):
            if error is None:
                matrix[i] = vector
        valid = np.array([e is None for e in errors], dtype=bool)
        self.tally.reused += int(valid.sum()) - fresh  # rows that got a vector without a model call of their own
        self.tally.encoded += fresh
        self.tally.failures.update(e for e in errors if e is not None)
        return self._table([row for row, _, _ in answered], matrix, valid, errors)

    def _encode_sorted(self, texts: list[str], digests: list[str],
                       pending: dict[str, list[int]]) -> list[Result]:
        batch = self.encoder.batch_size
        self._call_size = self._call_size or batch
        out: list[Result] = []
        lo = 0
        while lo < len(texts):
            hi = lo + self._call_size
            started = time.perf_counter()
            results = self.checked(encode_isolating_failures(self.encoder, texts[lo:hi], digests[lo:hi]))
            out.extend(results)
            if time.perf_counter() - started < CALL_SECONDS and self._call_size < batch * MAX_CALL_BATCHES:
                self._call_size *= 2
            self.tally.texts += len(texts[lo:hi])
            self.progress.advance(sum(len(pending[d]) for d in digests[lo:hi]))
            lo = hi
        return out

    def checked(self, results: list[Result]) -> list[Result]:
        """Results with unstorable vectors failed; raises once the encoder looks broken."""
        results = [(d, v, e or self.check(v)) for d, v, e in results]
        self._watch_for_a_broken_encoder(results)
        return results

    def _watch_for_a_broken_encoder(self, results: list[Result]) -> None:
        """Stop the run when the encoder has failed on every text so far, for one same reason.

        An encoder that never worked in this run (out of memory, a bad option, a dead server) would
        otherwise record that reason against every row; once it has encoded anything, failures are
        the inputs' own and are recorded.
        """
        if self._worked:
            return
        if any(error is None for _, _, error in results):
            self._worked = True
            return
        self._failures.update(error for _, _, error in results)
        if len(self._failures) == 1 and sum(self._failures.values()) >= BROKEN_AFTER:
            reason, count = self._failures.most_common(1)[0]
            raise EncoderFailedError(count, reason or "")

    def _table(self, rows: list[Row], matrix: np.ndarray, valid: np.ndarray,
               errors: list[str | None]) -> pa.Table:
        dim = matrix.shape[1]
        value_type = pa.float16() if self.dtype == "float16" else pa.float32()
        flat = pa.array(matrix.astype(value_type.to_pandas_dtype()).reshape(-1), type=value_type)
        vectors = pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(~valid))
        return pa.Table.from_arrays(
            [pa.array([r[0] for r in rows], self.id_type), pa.array([r[1] for r in rows], pa.string()),
             vectors, pa.array(errors, pa.string())],
            schema=part_schema(self.id_type, dim, self.dtype),
        )


def encode_isolating_failures(encoder: Encoder, texts: list[str],
                              digests: list[str]) -> list[Result]:
    """(digest, vector, error) per text; if the encoder raises, halve the batch so one bad input fails alone."""
    try:
        matrix = encoder.encode(texts)
    except Exception as exc:  # an encoder's failure for one input must not lose the others
        if len(texts) == 1:
            return [(digests[0], None, f"encoder error: {first_line(exc)}")]
        log.warning("encoding %d texts failed (%s); splitting the batch", len(texts), first_line(exc))
        mid = len(texts) // 2
        return (encode_isolating_failures(encoder, texts[:mid], digests[:mid])
                + encode_isolating_failures(encoder, texts[mid:], digests[mid:]))
    return [(d, v, None) for d, v in zip(digests, matrix)]
