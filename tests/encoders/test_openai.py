"""The openai: encoder against a real OpenAI-compatible HTTP server, through the real openai SDK."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from featctl.encoders.openai_batching import tokenizer
from featctl.encoders.ratelimit import RateLimiter, retry_after
from featctl.errors import ApiKeyError, ApiRefusedError, EncoderFailedError, EncoderOptionError
from featctl.pipeline.config import EmbedConfig
from featctl.pipeline.runner import embed
from featctl.pipeline.sources import SourceSpec
from featctl.stores.store import Store
from tests.conftest import OPENAI_KEY as KEY
from tests.conftest import manifest_bytes, write_tsv

SMALL = "text-embedding-3-small"


def texts_file(tmp_path: Path, texts: list[str], name: str = "items.tsv") -> Path:
    return write_tsv(tmp_path / name, ["id", "text"], [[i + 1, t] for i, t in enumerate(texts)])


def run(source: Path, store: Path, spec: str = f"openai:{SMALL}?dimensions=64", **options: object):
    options = {"backoff": 0.01, **options}
    return embed(EmbedConfig(source=SourceSpec(path=str(source)), store=str(store), text="{text}",
                             encoder=spec, encoder_options=options))


def stored(store: Path, name: str = "item_text"):
    fs = Store(str(store)).feature_set(name)
    table = fs.latest()
    return fs, dict(zip(table["id"].to_pylist(), table["error"].to_pylist()))


TEXTS = [f"item number {i}: a story about {'robots' if i % 2 else 'cooking'} and friendship" for i in range(40)]


def test_vectors_equal_the_servers_by_id_and_each_text_is_sent_once(server, tmp_path, store):
    source = texts_file(tmp_path, TEXTS + [TEXTS[3], ""])  # a repeated text and an empty one
    result = run(source, store, max_inputs=7)
    assert (result.encoded, result.failed, result.failures) == (41, 1, {"empty text": 1})
    fs, errors = stored(store)
    matrix, mask = fs.vectors(range(1, 43))
    assert mask.tolist() == [True] * 41 + [False]
    expected = np.stack([server.vector(SMALL, t, 64) for t in TEXTS + [TEXTS[3]]])
    np.testing.assert_allclose(matrix[:41], expected, atol=1e-6)
    assert errors[42] == "empty text"
    assert sorted(server.embedded) == sorted(TEXTS)  # the repeat and the empty text were never sent
    assert all(len(call.inputs) <= 7 for call in server.requests)
    assert fs.entry["recipe"]["model"] == SMALL and fs.entry["recipe"]["dimensions"] == 64
    assert result.usage["tokens"] == server.billed_tokens == sum(len(tokenizer().encode(t)) for t in TEXTS)


def test_ada_and_full_size_vectors(server, tmp_path, store):
    source = texts_file(tmp_path, TEXTS[:5])
    run(source, store, spec="openai:text-embedding-ada-002")
    fs, _ = stored(store)
    matrix, _ = fs.vectors(range(1, 6))
    assert matrix.shape == (5, 1536)
    np.testing.assert_allclose(matrix, np.stack([server.vector("text-embedding-ada-002", t) for t in TEXTS[:5]]),
                               atol=1e-6)
    with pytest.raises(EncoderOptionError, match="fixed size of 1536"):
        run(source, store, spec="openai:text-embedding-ada-002?dimensions=256")


def test_requests_stay_within_input_and_token_limits(server, tmp_path, store):
    texts = [f"{'word ' * (i % 50 + 1)}{i}" for i in range(300)]
    run(texts_file(tmp_path, texts), store, max_inputs=64, max_tokens=2000)
    assert all(call.status == 200 and len(call.inputs) <= 64 for call in server.requests)
    assert all(call.tokens <= 2000 for call in server.requests)
    assert max(call.tokens for call in server.requests) > 1500  # packed close to the limit
    assert sorted(server.embedded) == sorted(texts)


def test_long_texts_are_chunked_and_averaged_by_tokens_or_truncated(server, tmp_path, store):
    enc = tokenizer()
    long = " ".join(f"w{i}" for i in range(9000))  # about 18k tokens: three chunks
    tokens = enc.encode(long)
    assert len(tokens) > 2 * 8191
    source = texts_file(tmp_path, [long, "short"])
    run(source, store)
    chunks = [tokens[i:i + 8191] for i in range(0, len(tokens), 8191)]
    weights = np.array([len(c) for c in chunks], dtype=np.float64)
    mean = (np.stack([server.vector(SMALL, c, 64) for c in chunks]) * weights[:, None]).sum(0) / weights.sum()
    fs, _ = stored(store)
    np.testing.assert_allclose(fs.vectors([1])[0][0], mean / np.linalg.norm(mean), atol=1e-6)
    assert max(call.tokens for call in server.requests) <= 300_000
    assert all(len(enc.encode(t)) <= 8191 for call in server.requests for t in call.inputs)

    truncated = tmp_path / "trunc"
    run(source, truncated, long_text="truncate")
    fs, _ = stored(truncated)
    np.testing.assert_allclose(fs.vectors([1])[0][0], server.vector(SMALL, tokens[:8191], 64), atol=1e-6)
    assert fs.entry["recipe"]["long_text"] == "truncate"


@pytest.mark.parametrize("fault", ["429", "500", "503", "malformed", "disconnect", "slow"])
def test_transient_faults_are_retried(server, tmp_path, store, fault):
    server.fail_next(fault, 2, delay=1.5)
    result = run(texts_file(tmp_path, TEXTS[:10]), store, timeout=0.5)
    assert result.failed == 0 and result.usage["retries"] == 2
    assert sorted(server.embedded) == sorted(TEXTS[:10])


def test_retry_after_is_honoured_and_pauses_every_sender(server, tmp_path, store):
    server.fail_next("429", 1, retry_after_ms=700)
    started = time.monotonic()
    result = run(texts_file(tmp_path, TEXTS[:20]), store, max_inputs=5, concurrency=1)
    assert time.monotonic() - started >= 0.7
    assert result.usage["rate_limited"] == 1 and result.failed == 0
    assert retry_after({"retry-after": "2"}) == 2.0 and retry_after({"retry-after-ms": "150"}) == 0.15
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None


def test_after_max_attempts_rows_fail_with_the_last_error_and_a_rerun_retries_them(server, tmp_path, store):
    source = texts_file(tmp_path, TEXTS[:6])
    run(source, store, max_inputs=3, concurrency=1)  # one good run so the set exists
    server.reset()
    extra = texts_file(tmp_path, TEXTS[:12])
    server.fail_next("500", 3)
    result = run(extra, store, max_inputs=3, concurrency=1, max_attempts=3)
    [(reason, count)] = result.failures.items()
    assert count == 3 and reason.startswith("API error after 3 attempts: 500: The server had an error")
    _, errors = stored(store)
    assert sum(e == reason for e in errors.values()) == 3
    server.reset()
    again = run(extra, store, max_inputs=3)
    assert (again.encoded, again.failed) == (3, 0)
    assert len(server.embedded) == 3


def test_a_refused_input_fails_alone(server, tmp_path, store):
    server.poison.add("number 13:")
    result = run(texts_file(tmp_path, TEXTS), store, concurrency=1)
    assert result.failed == 1
    _, errors = stored(store)
    assert errors[14].startswith("refused by the API (400): Invalid input at index")
    assert sum(e is None for e in errors.values()) == 39
    assert result.usage["splits"] >= 5  # halving 40 down to the one input


def test_a_dead_encoder_stops_the_run_and_keeps_the_store(server, tmp_path, store):
    server.fail_next("500", 100)
    with pytest.raises(EncoderFailedError, match="API error after 2 attempts: 500"):
        run(texts_file(tmp_path, TEXTS), store, max_attempts=2)
    assert manifest_bytes(store) is None


def test_a_wrong_key_is_refused_without_being_echoed(server, tmp_path, store, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-0000")
    with pytest.raises(ApiRefusedError, match=r"\(401: Incorrect API key provided\); check OPENAI_API_KEY") as info:
        run(texts_file(tmp_path, TEXTS[:3]), store)
    assert "sk-wrong" not in str(info.value) and manifest_bytes(store) is None
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ApiKeyError, match="set OPENAI_API_KEY or pass --api-key-file"):
        run(texts_file(tmp_path, TEXTS[:3]), store)
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")
    assert run(texts_file(tmp_path, TEXTS[:3]), store, api_key_file=str(key_file)).encoded == 3


def test_client_side_limits_keep_under_the_servers(server, tmp_path, store):
    server.tpm, server.window = 6000, 2.0  # 200 tokens per 2 s window
    result = run(texts_file(tmp_path, TEXTS[:30]), store, max_inputs=2, tpm=5400)
    assert server.statuses[429] == 0 and result.failed == 0


def test_server_side_limits_alone_are_survived_through_retry_after(server, tmp_path, store):
    server.tpm, server.window = 6000, 1.0
    result = run(texts_file(tmp_path, TEXTS[:30]), store, max_inputs=4, max_attempts=20)
    assert server.statuses[429] > 0 and result.failed == 0


def test_rate_limiter_spaces_requests_by_both_limits():
    now = [0.0]
    limiter = RateLimiter(rpm=60, tpm=600, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    starts = []
    for tokens in (5, 5, 20, 1):
        limiter.acquire(tokens)
        starts.append(now[0])
    # 1 request/s; 10 tokens/s: the 20-token request holds the next one back 2 s
    assert starts == [0.0, 1.0, 2.0, 4.0]
    limiter.pause(3)
    limiter.acquire(1)
    assert now[0] == pytest.approx(7.0)


def test_a_model_the_encoder_does_not_know_learns_its_dimension_from_the_server(server, tmp_path, store):
    result = run(texts_file(tmp_path, TEXTS[:4]), store, spec="openai:BAAI/bge-m3")
    fs, _ = stored(store)
    assert result.encoded == 4 and fs.dim == 1024
    np.testing.assert_allclose(fs.vectors([2])[0][0], server.vector("BAAI/bge-m3", TEXTS[1]), atol=1e-6)
    assert server.requests[0].inputs == ["dimension probe"] and "cost_usd" not in result.usage  # no known price


def test_a_refusal_of_the_request_itself_is_not_split_input_by_input(server, tmp_path, store):
    # the server refuses `dimensions` for this model: every request, whatever its inputs
    with pytest.raises(EncoderFailedError, match="does not support specifying dimensions"):
        run(texts_file(tmp_path, TEXTS), store, spec="openai:BAAI/bge-m3?dimensions=64")
    assert len(server.requests) <= 4  # one request and its two halves, not one per input
    assert manifest_bytes(store) is None


def test_closing_a_stream_sends_nothing_more_and_does_not_wait_for_retries(server):
    from featctl.encoders.registry import create_encoder

    encoder = create_encoder(f"openai:{SMALL}?dimensions=8", max_inputs=1, concurrency=2, backoff=0.01)
    server.fail_next("429", 1, retry_after=20)  # one worker would sleep 20 s before trying again
    stream = encoder.stream(enumerate(TEXTS))
    first = next(stream)
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 2 and first
    sent = len(server.requests)
    time.sleep(0.5)
    assert len(server.requests) == sent
