"""The fake OpenAI server, driven through the real ``openai`` SDK."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from tests.openai_server import FakeOpenAI, tokenizer

MODEL = "text-embedding-3-small"
HTTP = openai.DefaultHttpxClient()  # the SDK's own client class, shared: building one costs ~50 ms


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-test") as srv:
        yield srv


def client_for(server: FakeOpenAI, *, key: str = "sk-test", retries: int = 0, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=retries, timeout=timeout, http_client=HTTP)


@pytest.fixture
def client(server: FakeOpenAI) -> openai.OpenAI:
    return client_for(server)


def as_array(response: openai.types.CreateEmbeddingResponse) -> np.ndarray:
    return np.array([d.embedding for d in response.data], dtype=np.float32)


# -- vectors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", [None, "float", "base64"])
@pytest.mark.parametrize("dims", [None, 64])
def test_vectors_equal_reference(server: FakeOpenAI, client: openai.OpenAI, fmt: str | None, dims: int | None) -> None:
    texts = ["hello world", "Café Ōkami <|endoftext|>"]
    kwargs = {k: v for k, v in {"encoding_format": fmt, "dimensions": dims}.items() if v is not None}
    response = client.embeddings.create(input=texts, model=MODEL, **kwargs)
    expected = np.stack([server.vector(MODEL, t, dims) for t in texts])
    if fmt == "base64":  # asked for explicitly, the SDK hands back the base64 strings
        got = np.stack([np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in response.data])
    else:
        got = as_array(response)
    np.testing.assert_array_equal(got, expected)
    assert got.shape == (2, dims or 1536)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    assert [d.index for d in response.data] == [0, 1] and response.model == MODEL
    n_tokens = sum(len(tokenizer().encode(t, disallowed_special=())) for t in texts)
    assert response.usage.prompt_tokens == response.usage.total_tokens == n_tokens


def test_token_arrays_and_shortening(server: FakeOpenAI, client: openai.OpenAI) -> None:
    text = "the quick brown fox"
    tokens = tokenizer().encode(text)
    by_text = as_array(client.embeddings.create(input=text, model=MODEL))
    by_tokens = as_array(client.embeddings.create(input=tokens, model=MODEL))
    by_token_lists = as_array(client.embeddings.create(input=[tokens, tokens], model=MODEL))
    np.testing.assert_array_equal(by_text[0], by_tokens[0])
    np.testing.assert_array_equal(by_token_lists[1], by_text[0])
    assert server.requests[1].inputs == [text]  # token arrays are recorded decoded
    full, short = server.vector(MODEL, text), server.vector(MODEL, text, 32)
    np.testing.assert_allclose(full[:32] / np.linalg.norm(full[:32]), short, atol=1e-6)
    assert not np.allclose(server.vector("text-embedding-3-large", text, 32), short)
    assert server.vector("text-embedding-3-large", text).shape == (3072,)


# -- errors ----------------------------------------------------------------------------------------------

def test_wrong_key_is_401_without_echoing_it(server: FakeOpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        client_for(server, key="sk-secret-123").embeddings.create(input="x", model=MODEL)
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert "sk-secret-123" not in str(err.value) and "sk-secret-123" not in err.value.response.text
    assert server.statuses[401] == 1 and server.embedded == []


@pytest.mark.parametrize(("kwargs", "status", "message"), [
    ({"input": ["a"] * 2049}, 400, "'$.input' must have at most 2048 items"),
    ({"input": ["ok", ""]}, 400, "'$.input' is invalid"),
    ({"input": [[15339] * 8192]}, 400, "maximum context length is 8192 tokens, however you requested 8192 tokens"),
    ({"input": [[15339] * 8000] * 38}, 400, "Requested 304000 tokens, max 300000 tokens per request"),
    ({"input": "x", "model": "text-embedding-4"}, 404, "The model `text-embedding-4` does not exist"),
    ({"input": "x", "model": "text-embedding-ada-002", "dimensions": 8}, 400, "does not support specifying dimensions"),
])
def test_validation(server: FakeOpenAI, client: openai.OpenAI, kwargs: dict, status: int, message: str) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.embeddings.create(**{"model": MODEL, **kwargs})
    assert err.value.status_code == status and message in err.value.message
    assert server.statuses == {status: 1} and server.billed_tokens == 0


def test_poison_fails_whole_request(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.poison.add("BAD")
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(input=["fine", "also fine", "very BAD text"], model=MODEL)
    assert "Invalid input at index 2" in err.value.message
    body = err.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error" and body["param"] == "input"
    assert server.embedded == []
    client.embeddings.create(input=["fine"], model=MODEL)
    assert server.embedded == ["fine"]


# -- injected faults -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "error"), [
    ("429", openai.RateLimitError),
    ("500", openai.InternalServerError),
    ("503", openai.InternalServerError),
    ("disconnect", openai.APIConnectionError),
    ("malformed", json.JSONDecodeError),  # the SDK does not wrap a bad JSON body, nor retry it
])
def test_faults(server: FakeOpenAI, client: openai.OpenAI, kind: str, error: type[Exception]) -> None:
    server.fail_next(kind)
    with pytest.raises(error):
        client.embeddings.create(input="x", model=MODEL)
    assert server.requests[0].fault == kind and server.embedded == []
    client.embeddings.create(input="x", model=MODEL)  # one fault per request
    assert server.embedded == ["x"] and len(server.requests) == 2


def test_slow_fault_times_out(server: FakeOpenAI) -> None:
    server.fail_next("slow", delay=0.5)
    with pytest.raises(openai.APITimeoutError):
        client_for(server, timeout=0.1).embeddings.create(input="x", model=MODEL)
    server.latency = 0.3
    with pytest.raises(openai.APITimeoutError):
        client_for(server, timeout=0.1).embeddings.create(input="y", model=MODEL)
    server.latency = 0.0
    client_for(server, timeout=0.1).embeddings.create(input="z", model=MODEL)


def test_retry_after_headers_and_sdk_retry(server: FakeOpenAI) -> None:
    server.fail_next("429", retry_after=1.5, retry_after_ms=120)
    with pytest.raises(openai.RateLimitError) as err:
        client_for(server).embeddings.create(input="x", model=MODEL)
    headers = err.value.response.headers
    assert headers["retry-after"] == "1.5" and headers["retry-after-ms"] == "120"
    assert err.value.code == "rate_limit_exceeded"
    server.fail_next("503", count=2, retry_after_ms=50)
    start = time.monotonic()
    client_for(server, retries=2).embeddings.create(input="y", model=MODEL)
    assert time.monotonic() - start >= 0.1  # the SDK waited retry-after-ms twice
    assert [c.status for c in server.requests] == [429, 503, 503, 200]


def test_tpm_bucket(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.tpm, server.window = 480, 0.5  # a bucket of 4 tokens refilled at 8/s; "hello world" is 2 tokens
    for _ in range(2):
        ok = client.embeddings.with_raw_response.create(input="hello world", model=MODEL)
    assert ok.headers["x-ratelimit-limit-tokens"] == "4" and ok.headers["x-ratelimit-remaining-tokens"] == "0"
    with pytest.raises(openai.RateLimitError) as err:
        client.embeddings.create(input="hello world", model=MODEL)
    headers = err.value.response.headers
    wait_ms = int(headers["retry-after-ms"])
    assert 0 < wait_ms <= 500 and headers["retry-after"] == "1"
    assert re.search(r"on tokens per min \(TPM\): Limit 4, Used [34], Requested 2", err.value.message)
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert server.billed_tokens == 4  # the rejected request used nothing
    time.sleep(wait_ms / 1000 + 0.02)
    client.embeddings.create(input="hello world", model=MODEL)
    assert server.statuses == {200: 3, 429: 1}


def test_rpm_and_sdk_waits_for_window(server: FakeOpenAI) -> None:
    server.rpm, server.window = 120, 0.5  # 1 request per half second
    c = client_for(server, retries=3)
    start = time.monotonic()
    for text in ("a", "b"):
        c.embeddings.create(input=text, model=MODEL)
    assert 0.4 <= time.monotonic() - start < 2.0
    assert server.embedded == ["a", "b"] and server.statuses[429] >= 1


def test_counters_and_reset(server: FakeOpenAI, client: openai.OpenAI) -> None:
    client.embeddings.create(input=["a b", "c"], model=MODEL)
    client.embeddings.create(input=["a b"], model=MODEL)
    assert server.embedded == ["a b", "c", "a b"] and server.billed_tokens == 5
    calls = server.requests
    assert [(c.inputs, c.tokens, c.status) for c in calls] == [(["a b", "c"], 3, 200), (["a b"], 2, 200)]
    assert calls[0].time <= calls[1].time
    server.reset()
    assert server.requests == [] and server.billed_tokens == 0 and not server.statuses


# -- files and batches -----------------------------------------------------------------------------------

def batch_line(custom_id: str, inp: object, **body: object) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings",
                       "body": {"model": MODEL, "input": inp, **body}})


def upload(client: openai.OpenAI, lines: list[str]) -> str:
    return client.files.create(file=("in.jsonl", ("\n".join(lines) + "\n").encode()), purpose="batch").id


def test_batch_round_trip(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.batch_seconds = 0.4
    server.poison.add("BAD")
    content = [batch_line("a", ["one", "two"]), batch_line("b", "three", dimensions=16, encoding_format="base64"),
               batch_line("c", ["BAD"])]
    file_id = upload(client, content)
    assert client.files.retrieve(file_id).purpose == "batch"
    assert client.files.content(file_id).content.decode().splitlines() == content
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h",
                                  metadata={"run": "t"})
    seen = [batch.status]
    while batch.status not in ("completed", "failed"):
        time.sleep(0.02)
        batch = client.batches.retrieve(batch.id)
        seen.append(batch.status)
    assert list(dict.fromkeys(seen)) == ["validating", "in_progress", "completed"]
    assert batch.metadata == {"run": "t"} and batch.completed_at and batch.in_progress_at
    assert batch.request_counts and batch.request_counts.model_dump() == {"total": 3, "completed": 2, "failed": 1}
    out = [json.loads(x) for x in client.files.content(batch.output_file_id).content.splitlines()]
    assert [o["custom_id"] for o in out] == ["a", "b"] and all(o["error"] is None for o in out)
    a, b = (o["response"]["body"] for o in out)
    np.testing.assert_array_equal(np.array(a["data"][1]["embedding"], np.float32), server.vector(MODEL, "two"))
    got = np.frombuffer(base64.b64decode(b["data"][0]["embedding"]), "<f4")
    np.testing.assert_array_equal(got, server.vector(MODEL, "three", 16))
    err = [json.loads(x) for x in client.files.content(batch.error_file_id).content.splitlines()]
    assert err[0]["custom_id"] == "c" and err[0]["response"]["status_code"] == 400
    assert "Invalid input at index 0" in err[0]["response"]["body"]["error"]["message"]
    assert server.batch_billed_tokens == 3 and server.billed_tokens == 0 and server.requests == []
    assert server.batches_created == 1 and server.batch_embedded == ["one", "two", "three"]


def test_batch_validation_failure(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.batch_seconds = 0.0
    bad_url = json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {}})
    file_id = upload(client, [batch_line("a", "x"), "{not json", bad_url, batch_line("a", "y")])
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed" and batch.failed_at and batch.errors and batch.errors.data
    assert [(e.code, e.line) for e in batch.errors.data] == [
        ("invalid_json_line", 2), ("invalid_url", 3), ("duplicate_custom_id", 4)]


@pytest.mark.parametrize("kind", ["failed", "expired"])
def test_batch_faults(server: FakeOpenAI, client: openai.OpenAI, kind: str) -> None:
    server.batch_seconds = 0.0
    server.fail_batch(kind)
    file_id = upload(client, [batch_line(str(i), f"text {i}") for i in range(5)])
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    batch = client.batches.retrieve(batch.id)
    assert batch.status == kind
    if kind == "expired":
        out = client.files.content(batch.output_file_id).content.splitlines()
        assert [json.loads(x)["custom_id"] for x in out] == ["0", "1"] and batch.expired_at
        assert batch.request_counts and (batch.request_counts.total, batch.request_counts.completed) == (5, 2)
    else:
        assert batch.output_file_id is None and server.batch_billed_tokens == 0
    again = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    assert client.batches.retrieve(again.id).status == "completed"  # the fault was for one batch


def test_batch_cancel_and_unknown_ids(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.batch_seconds = 5.0
    file_id = upload(client, [batch_line("a", "x")])
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at and cancelled.output_file_id is None
    assert client.batches.retrieve(batch.id).status == "cancelled" and server.batch_billed_tokens == 0
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nope")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/embeddings", completion_window="24h")
