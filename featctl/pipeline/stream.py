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
from featctl.pipeline.images import FAILED

log = logging.getLogger(__name__)

Answered = tuple[Row, "np.ndarray | None", "str | None"]


def stream_parts(rows: Iterator[Row], encoder: StreamingEncoder, parts: PartEncoder,
                 part_rows: int = 1) -> Iterator[pa.Table]:
    """Part tables for ``rows``, each text sent once: one per batch of answers from a paid encoder,
    else one per ``part_rows`` rows."""
    waiting: dict[str, list[Row]] = {}  # rows by the hash of a text sent and not answered yet
    ready: list[Answered] = []  # rows answered without a request: empty, or a text already known

    def texts() -> Iterator[tuple[str, str]]:
        for row in rows:
            _, digest, text = row
            if not text.strip():
                ready.append((row, None, EMPTY_TEXT))
            elif text.startswith(FAILED):
                ready.append((row, None, text[len(FAILED):]))
            elif digest in parts.cache:
                ready.append((row, parts.cache[digest], None))
            elif digest in waiting:
                waiting[digest].append(row)
            else:
                waiting[digest] = [row]
                yield digest, text

    answered: list[Answered] = []
    fresh = 0
    size = 1 if encoder.commit_each_answer else part_rows
    for answers in encoder.stream(texts()):
        answers = parts.checked(answers)
        answered += ready
        ready.clear()
        for digest, vector, error in answers:
            if error is None:
                fresh += 1
                if digest in parts.repeated:
                    parts.cache[digest] = vector
            answered.extend((row, vector, error) for row in waiting.pop(digest))
        parts.tally.texts += len(answers)
        if len(answered) >= size:
            parts.progress.advance(len(answered))
            yield parts.table(answered, fresh)
            answered, fresh = [], 0
    answered += ready
    if answered:
        parts.progress.advance(len(answered))
        yield parts.table(answered, fresh)
