"""``openai:`` — the OpenAI embeddings API (or any compatible server) through the official SDK.

Requests are packed by tokens, paced under ``rpm``/``tpm``, retried with backoff on 429, 5xx,
timeouts and dropped connections, and split when the API rejects one of their inputs, so that
input fails alone. The API key is read from ``OPENAI_API_KEY`` or ``api_key_file`` only; it is
kept out of the recipe and scrubbed from every message this module produces.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, ClassVar

import numpy as np

from featctl.encoders.base import Answer, StreamingEncoder, choice, positive_float, positive_int
from featctl.encoders.openai_batching import (
    MAX_INPUT_TOKENS,
    MAX_REQUEST_INPUTS,
    MAX_REQUEST_TOKENS,
    Assembler,
    Piece,
    pack,
    pieces,
    tokenizer,
)
from featctl.encoders.ratelimit import RateLimiter, backoff, retry_after
from featctl.errors import (
    ApiKeyError,
    ApiRefusedError,
    EncoderCallError,
    EncoderLoadError,
    EncoderOptionError,
    first_line,
)

log = logging.getLogger(__name__)

# model: (dimension, USD per 1M input tokens, accepts `dimensions`)
MODELS: dict[str, tuple[int, float, bool]] = {
    "text-embedding-3-small": (1536, 0.02, True),
    "text-embedding-3-large": (3072, 0.13, True),
    "text-embedding-ada-002": (1536, 0.10, False),
}
_REFUSED_HINTS = {
    401: "check OPENAI_API_KEY or --api-key-file",
    403: "this key may not use this model or endpoint",
    404: "check the model name and --base-url",
    429: "the account is out of quota: check its billing",
}
SPLIT_ON = (400, 413, 422)  # the request's content was refused: find the input that caused it
REFUSED = "refused by the API "
MAX_WAIT = 600.0  # a retry-after longer than this fails the request instead of stalling the run


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not 0 <= number < float("inf"):
        raise ValueError("expected a number >= 0")
    return number


class OpenAIEncoder(StreamingEncoder):
    """Embeddings from ``/v1/embeddings``; see the module docstring for what it guarantees."""

    prefix = "openai"
    options: ClassVar = {
        "dimensions": positive_int, "long_text": choice("average", "truncate"), "base_url": str,
        "api_key_file": str, "max_inputs": positive_int, "max_tokens": positive_int, "rpm": positive_float,
        "tpm": positive_float, "concurrency": positive_int, "max_attempts": positive_int,
        "timeout": positive_float, "backoff": positive_float, "price": _non_negative_float,
    }

    def __init__(self, model: str, *, dimensions: int | None = None, long_text: str = "average",
                 base_url: str | None = None, api_key_file: str | None = None,
                 max_inputs: int = MAX_REQUEST_INPUTS, max_tokens: int = MAX_REQUEST_TOKENS,
                 rpm: float | None = None, tpm: float | None = None, concurrency: int = 4,
                 max_attempts: int = 6, timeout: float = 60.0, backoff: float = 1.0,
                 price: float | None = None) -> None:
        known = MODELS.get(model)
        if dimensions is not None and known is not None:
            if not known[2]:
                raise EncoderOptionError(f"{model} has a fixed size of {known[0]}; drop dimensions (--dimensions)")
            if dimensions > known[0]:
                raise EncoderOptionError(f"dimensions={dimensions} is larger than {model}'s {known[0]}")
        self.model, self.dimensions, self.long_text = model, dimensions, long_text
        self.base_url, self.api_key_file = base_url, api_key_file
        self.max_inputs, self.max_tokens = max_inputs, max_tokens
        self.concurrency, self.max_attempts, self.timeout, self.backoff = concurrency, max_attempts, timeout, backoff
        self.price = price if price is not None else (known[1] if known else None)
        self.recipe = {"encoder": "openai", "model": model, "dimensions": dimensions, "long_text": long_text,
                       "max_input_tokens": self.input_tokens, "normalize": True}
        self.usage: Counter[str] = Counter()
        self._usage_lock = threading.Lock()
        self._stop = threading.Event()  # set when a stream ends early: workers send nothing more
        self.limiter = RateLimiter(rpm, tpm, sleep=self._stop.wait)
        self._client: Any = None
        self._key: str | None = None
        self._dim = dimensions or (known[0] if known else None)

    @property
    def input_tokens(self) -> int:
        """Tokens per input: long texts are chunked or truncated to this."""
        return min(MAX_INPUT_TOKENS, self.max_tokens)

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._dim is None:  # a model this module does not know: ask the server once
            self._stop.clear()
            [(_, vector, error)] = self._send([Piece(None, 0, 1, "dimension probe", 2)])
            if vector is None:
                raise EncoderCallError(f"could not learn the dimension of {self.model}: {error}")
            self._dim = len(vector)
        return self._dim

    def client(self) -> Any:
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise EncoderLoadError("encoder 'openai:' needs the openai package; "
                                       "pip install 'featctl[openai]'") from None
            self._key = self._read_key()
            self._client = openai.OpenAI(api_key=self._key, base_url=self.base_url, max_retries=0,
                                         timeout=self.timeout)
        return self._client

    def _read_key(self) -> str:
        if self.api_key_file:
            try:
                with open(self.api_key_file, encoding="utf-8") as fh:
                    key = fh.read().strip()
            except OSError as exc:
                raise ApiKeyError(f"cannot read --api-key-file {self.api_key_file}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ApiKeyError(f"--api-key-file {self.api_key_file} is not a text file holding a key") from None
            if not key:
                raise ApiKeyError(f"--api-key-file {self.api_key_file} is empty; put the API key in it")
            return key
        key = os.environ.get("OPENAI_API_KEY", "").strip()
        if not key:
            raise ApiKeyError("no API key: set OPENAI_API_KEY or pass --api-key-file FILE "
                              "(featctl never stores the key)")
        return key

    def scrub(self, text: str) -> str:
        """``text`` without the API key, should a server or SDK have echoed it."""
        return text.replace(self._key, "sk-***") if self._key else text

    def texts_as_pieces(self, texts: Iterable[tuple[Hashable, str]]) -> Iterator[list[Piece]]:
        """Each text as its request inputs: itself, truncated, or its chunks."""
        encoding = tokenizer()
        for key, text in texts:
            yield pieces(key, text, encoding, self.input_tokens, self.long_text)

    def plan(self, texts: Iterable[tuple[Hashable, str]]) -> Iterator[list[Piece]]:
        """The requests that would carry ``texts``: what :meth:`stream` sends and ``--dry-run`` counts."""
        chunks = (p for text_pieces in self.texts_as_pieces(texts) for p in text_pieces)
        return pack(chunks, self.max_inputs, self.max_tokens)

    def stream(self, texts: Iterable[tuple[Any, str]]) -> Iterator[list[Answer[Any]]]:
        self.client()
        assembler = Assembler()
        self._stop.clear()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="featctl-openai")
        running: set[Future[list[tuple[Piece, Any, str | None]]]] = set()
        try:
            for batch in self.plan(texts):
                while len(running) >= self.concurrency:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    yield from _assemble(done, assembler)
                running.add(pool.submit(self._send, batch))
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                yield from _assemble(done, assembler)
        finally:
            # Stopped early (an error, Ctrl-C): requests already sent finish, nothing more is sent.
            self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _send(self, batch: list[Piece], isolate: bool = True) -> list[tuple[Piece, np.ndarray | None, str | None]]:
        """One request with retries; a refused input is isolated by halving the request."""
        import openai

        tokens = sum(p.tokens for p in batch)
        for attempt in range(1, self.max_attempts + 1):
            self.limiter.acquire(tokens)
            if self._stop.is_set():
                return [(p, None, "stopped before this request was sent") for p in batch]
            try:
                matrix = self._request([p.payload for p in batch])
            except openai.APIStatusError as exc:
                status, message = exc.status_code, self.scrub(_message(exc))
                refused = status in _REFUSED_HINTS and not (status == 429 and exc.code != "insufficient_quota")
                if refused:
                    raise ApiRefusedError(status, message, _REFUSED_HINTS[status]) from None
                if status in SPLIT_ON:
                    reason = f"{REFUSED}({status}): {message}"
                    return self._isolate(batch, reason) if isolate else [(p, None, reason) for p in batch]
                error = f"{status}: {message}"
                wait_s = retry_after(exc.response.headers)
                if wait_s is not None and wait_s > MAX_WAIT:
                    error = f"{error} (the server asked to wait {wait_s:.0f} s)"
                    break
                if status == 429:
                    self._count("rate_limited")
                    self.limiter.pause(wait_s if wait_s is not None else backoff(attempt, self.backoff))
                    wait_s = 0.0
            except (openai.APIConnectionError, openai.APIResponseValidationError, ValueError) as exc:
                # Timeouts are connection errors to the SDK; a reply that is not the API's JSON is a ValueError.
                error, wait_s = self.scrub(first_line(exc)), None
            else:
                return [(p, row, None) for p, row in zip(batch, matrix)]
            if attempt < self.max_attempts:
                self._count("retries")
                log.info("embeddings request failed (%s); attempt %d of %d", error, attempt, self.max_attempts)
                self._stop.wait(wait_s if wait_s is not None else backoff(attempt, self.backoff))
        self._count("failed_requests")
        return [(p, None, f"API error after {attempt} attempts: {error}") for p in batch]

    def _isolate(self, batch: list[Piece], reason: str) -> list[tuple[Piece, np.ndarray | None, str | None]]:
        """Results for a refused request: each half is tried alone, and refused halves are split again.

        When both halves are refused for the very reason the whole was, the request itself is at
        fault (a parameter, not an input): every input fails with it instead of being split further.
        """
        if len(batch) == 1:
            return [(batch[0], None, reason)]
        self._count("splits")
        mid = len(batch) // 2
        halves = [batch[:mid], batch[mid:]]
        results = [self._send(half, isolate=False) for half in halves]
        refusals = [_refusal(r) for r in results]
        if refusals[0] == refusals[1] == reason:
            return [(p, None, reason) for p in batch]
        out: list[tuple[Piece, np.ndarray | None, str | None]] = []
        for half, result, refusal in zip(halves, results, refusals):
            out += self._isolate(half, refusal) if refusal else result
        return out

    def _request(self, inputs: list[str | list[int]]) -> np.ndarray:
        kwargs: dict[str, Any] = {"dimensions": self.dimensions} if self.dimensions else {}
        self._count("requests")
        response = self.client().embeddings.create(model=self.model, input=inputs, **kwargs)
        data = sorted(response.data, key=lambda d: d.index)
        if [d.index for d in data] != list(range(len(inputs))):
            raise ValueError(f"the reply has {len(data)} embeddings for {len(inputs)} inputs")
        matrix = np.asarray([d.embedding for d in data], dtype=np.float32)
        if self._dim is not None and matrix.shape[1] != self._dim:
            raise EncoderCallError(
                f"the server returned {matrix.shape[1]}-d vectors for {self.model}, not {self._dim}; "
                "check the model name, dimensions and --base-url"
            )
        if response.usage is not None:
            self._count("tokens", response.usage.total_tokens)
        return matrix

    def _count(self, what: str, n: int = 1) -> None:
        with self._usage_lock:
            self.usage[what] += n


def _assemble(done: set[Future[Any]], assembler: Assembler) -> Iterator[list[Answer[Any]]]:
    """Answers of finished requests; paid answers are handed over before a failed request's error is raised."""
    out, failure = [], None
    for future in done:
        try:
            results = future.result()
        except Exception as exc:  # noqa: BLE001 - raised below, once the others' answers are out
            failure = failure or exc
            continue
        for piece, vector, error in results:
            if (answer := assembler.add(piece, vector, error)) is not None:
                out.append(answer)
    if out:
        yield out
    if failure is not None:
        raise failure


def _refusal(results: list[tuple[Piece, Any, str | None]]) -> str | None:
    """The refusal every input of a request got, if the API refused the request."""
    errors = {error for _, _, error in results}
    (error,) = errors if len(errors) == 1 else (None,)
    return error if error is not None and error.startswith(REFUSED) else None


def _message(exc: Any) -> str:
    """The API's own error message (the SDK passes the body's ``error`` object as ``body``)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    return first_line(Exception(body.get("message") or exc.message))
