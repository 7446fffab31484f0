"""The encode stage for streaming encoders (paid APIs): each finished request becomes a part.

Texts are handed to the encoder lazily and each batch of answers is returned as a part table
before the encoder is asked for more, so the runner commits what was paid for before more is
spent beyond the encoder's in-flight window. A kill loses at most that window.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from featctl.encoders.base import StreamingEncoder
from featctl.pipeline.encode import EMPTY_TEXT, PartEncoder, Row

log = logging.getLogger(__name__)

Answered = tuple[Row, "np.ndarray | None", "str | None"]


def stream_parts(rows: Iterator[Row], encoder: StreamingEncoder, parts: PartEncoder) -> Iterator[pa.Table]:
    """Part tables for ``rows``, one per batch of finished requests, each text sent once."""
    waiting: dict[str, list[Row]] = {}  # rows by the hash of a text sent and not answered yet
    ready: list[Answered] = []  # rows answered without a request: empty, or a text already known

    def texts() -> Iterator[tuple[str, str]]:
        for row in rows:
            _, digest, text = row
            if not text.strip():
                ready.append((row, None, EMPTY_TEXT))
            elif digest in parts.cache:
                ready.append((row, parts.cache[digest], None))
            elif digest in waiting:
                waiting[digest].append(row)
            else:
                waiting[digest] = [row]
                yield digest, text

    for answers in encoder.stream(texts()):
        answers = parts.checked(answers)
        answered, ready[:] = list(ready), []
        fresh = 0
        for digest, vector, error in answers:
            if error is None:
                fresh += 1
                if digest in parts.repeated:
                    parts.cache[digest] = vector
            answered.extend((row, vector, error) for row in waiting.pop(digest))
        parts.tally.texts += len(answers)
        parts.progress.advance(len(answered))
        yield parts.table(answered, fresh)
    if ready:
        parts.progress.advance(len(ready))
        yield parts.table(ready, 0)
