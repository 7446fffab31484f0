"""Whole openai: runs through the CLI: kill -9 and resume, dry runs, the Batch API, the key kept secret."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from featctl.cli import app
from featctl.encoders.openai_batching import tokenizer
from featctl.stores.store import Store
from tests.conftest import OPENAI_KEY as KEY
from tests.conftest import manifest_bytes, write_tsv

SMALL = "text-embedding-3-small"
TEXTS = [f"catalogue entry {i}: {'a heist in space' if i % 3 else 'a quiet cooking drama'}" for i in range(200)]
FEATCTL = str(Path(sys.executable).parent / "featctl")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_tsv(tmp_path / "items.tsv", ["id", "text"], [[i + 1, t] for i, t in enumerate(TEXTS)])


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def embed_args(source: Path, store: Path, *extra: str) -> list[str]:
    return ["embed", "--source", str(source), "--store", str(store), "--text", "{text}",
            "--encoder", f"openai:{SMALL}", "--dimensions", "32", *extra]


def committed_texts(store: Path) -> set[str]:
    table = Store(str(store)).feature_set("item_text").latest()
    return {TEXTS[i - 1] for i, e in zip(table["id"].to_pylist(), table["error"].to_pylist()) if e is None}


def test_kill_9_mid_run_then_rerun_sends_only_what_was_not_committed(server, source, tmp_path):
    store = tmp_path / "store"
    server.latency = 0.25
    args = embed_args(source, store, "--concurrency", "2", "--max-batch-inputs", "5")
    proc = subprocess.Popen([FEATCTL, *args], env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while sum(c.status == 200 for c in server.requests) < 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # requests in flight at the kill still finish (and are billed) server-side
    first = list(server.embedded)
    done = committed_texts(store)
    assert 0 < len(done) < len(TEXTS)
    lost = set(first) - done  # paid for and never committed
    assert len(lost) <= 2 * 5 + 5  # at most the in-flight window (and the answer being committed)

    server.reset()
    server.latency = 0.0
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    second = server.embedded
    assert not set(second) & done  # nothing committed was paid for again
    assert len(second) == len(set(second)) == len(TEXTS) - len(done)
    assert committed_texts(store) == set(TEXTS)


def test_dry_run_counts_tokens_requests_cost_and_time_without_calling_the_api(server, source, tmp_path):
    store = tmp_path / "store"
    tokens = sum(len(tokenizer().encode(t)) for t in TEXTS)
    result = cli(*embed_args(source, store, "--dry-run", "--json", "--max-batch-inputs", "64", "--tpm", "6000"))
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["tokens"] == tokens and plan["requests"] == 4 and plan["texts_to_send"] == 200
    assert plan["cost_usd"] == pytest.approx(tokens * 0.02 / 1e6)
    assert plan["minutes"] == pytest.approx(tokens / 6000)
    assert server.requests == [] and manifest_bytes(store) is None and not store.exists()

    assert cli(*embed_args(source, store, "--max-batch-inputs", "64")).exit_code == 0
    extra = write_tsv(tmp_path / "more.tsv", ["id", "text"],
                      [[i + 1, t] for i, t in enumerate(TEXTS)] + [[201, TEXTS[0]], [202, "brand new"], [203, " "]])
    server.reset()
    result = cli(*embed_args(extra, store, "--dry-run", "--json", "--batch-api", "--price", "1.0"))
    plan = json.loads(result.output)
    counts = [plan[k] for k in ("stored", "to_encode", "copied", "empty", "texts_to_send")]
    assert counts == [200, 3, 1, 1, 1]
    assert plan["cost_usd"] == pytest.approx(len(tokenizer().encode("brand new")) * 1.0 / 1e6 * 0.5)
    text = cli(*embed_args(extra, store, "--dry-run")).output
    assert "1 to send" in text and "time not estimated" in text
    assert server.requests == []


def test_the_key_appears_nowhere_the_run_wrote(server, source, tmp_path):
    store = tmp_path / "store"
    server.poison.add("entry 7:")
    server.fail_next("429", 1, retry_after=0.1)
    server.fail_next("500", 1)
    env = {**os.environ, "FEATCTL_STORE": str(store)}
    proc = subprocess.run([FEATCTL, "-v", *embed_args(source, store, "--json", "--max-batch-inputs", "50")],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["failed"] == 1
    reports = [cli("coverage", "--store", str(store), "--json").output, cli("info", "item_text", "--store",
                                                                             str(store)).output]
    written = [p.read_bytes() for p in store.rglob("*") if p.is_file()]
    assert written and KEY.encode() not in b"".join(written)
    assert KEY not in proc.stdout + proc.stderr + "".join(reports)
    assert "HTTP Request" in proc.stderr  # the log was on, and still clean


def test_bad_options_get_one_line_and_leave_the_store_alone(server, source, tmp_path, monkeypatch):
    store = tmp_path / "store"
    cases = [
        (embed_args(source, store, "--long-text", "squash"), "long_text='squash' is invalid: expected one of"),
        (["embed", "--source", str(source), "--store", str(store), "--rpm", "100"], "'st:' has no option 'rpm'"),
        (["embed", "--source", str(source), "--store", str(store), "--batch-api"], "--batch-api needs an openai:"),
        (embed_args(source, store, "--api-key-file", str(tmp_path / "nope")), "cannot read --api-key-file"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert manifest_bytes(store) is None


def batch_args(source: Path, store: Path, *extra: str) -> list[str]:
    return embed_args(source, store, "--batch-api", "--poll", "0.05", "--json", *extra)


def test_batch_api_round_trip_at_batch_price(server, source, tmp_path):
    store = tmp_path / "store"
    server.poison.add("entry 5:")
    result = cli(*batch_args(source, store, "--max-batch-inputs", "50"))
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (out["encoded"], out["failed"]) == (199, 1)
    [reason] = out["failures"]
    assert reason.startswith("refused by the API (400)")
    fs = Store(str(store)).feature_set("item_text")
    matrix, mask = fs.vectors(range(1, 201))
    good = [i for i in range(200) if i != 5]
    np.testing.assert_allclose(matrix[good], np.stack([server.vector(SMALL, TEXTS[i], 32) for i in good]), atol=1e-6)
    assert not mask[5]
    assert server.batches_created == 1 and server.batch_billed_tokens > 0
    # the refused line's other texts were sent again synchronously, split until entry 5 failed alone
    assert sorted(server.embedded) == sorted(TEXTS[:5] + TEXTS[6:50])
    assert not list((store / "batches").rglob("*.json"))


def test_batch_api_survives_a_restart_without_submitting_again(server, source, tmp_path):
    store = tmp_path / "store"
    server.batch_seconds = 0.5
    submitted = json.loads(cli(*batch_args(source, store, "--no-wait")).output)
    assert submitted["pending_batches"] == 1 and server.batches_created == 1
    assert len(list((store / "batches" / "item_text").glob("*.json"))) == 1
    again = json.loads(cli(*batch_args(source, store)).output)
    assert again["encoded"] == 200 and server.batches_created == 1
    assert committed_texts(store) == set(TEXTS)


def test_an_expired_batch_records_what_did_not_run_and_a_rerun_sends_only_that(server, source, tmp_path):
    store = tmp_path / "store"
    server.fail_batch("expired")
    first = json.loads(cli(*batch_args(source, store, "--max-batch-inputs", "20")).output)
    assert 0 < first["failed"] < 200
    assert all("expired before this request ran" in reason for reason in first["failures"])
    server.batch_embedded.clear()
    second = json.loads(cli(*batch_args(source, store, "--max-batch-inputs", "20")).output)
    assert second["encoded"] == first["failed"] and server.batches_created == 2
    assert committed_texts(store) == set(TEXTS)


def test_a_lost_reply_to_batch_creation_finds_the_batch_instead_of_paying_again(server, source, tmp_path):
    store = tmp_path / "store"
    server.fail_batch("lost reply")  # the batch is created, the reply never arrives
    out = json.loads(cli(*batch_args(source, store)).output)
    assert out["encoded"] == 200 and server.batches_created == 1
    assert len(server.batch_embedded) == 200


def test_batch_files_hold_at_most_the_input_limit(server, source, tmp_path, monkeypatch):
    from featctl.pipeline import batch_api

    monkeypatch.setattr(batch_api, "MAX_BATCH_INPUTS", 60)
    out = json.loads(cli(*batch_args(tmp_path / "items.tsv", tmp_path / "store", "--max-batch-inputs", "25")).output)
    assert out["encoded"] == 200 and server.batches_created == 4  # 2 requests of 25 inputs per file


def test_an_explicit_base_url_and_an_unknown_model(server, source, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL")
    store = tmp_path / "store"
    ok = cli(*embed_args(source, store, "--base-url", server.base_url, "--json"))
    assert ok.exit_code == 0 and json.loads(ok.output)["encoded"] == 200
    bad = cli("embed", "--source", str(source), "--store", str(store), "--text", "{text}", "--name", "other",
              "--encoder", "openai:text-embedding-4-huge", "--base-url", server.base_url)
    assert bad.exit_code == 1 and "(404: The model `text-embedding-4-huge` does not exist" in bad.output
    assert "check the model name and --base-url" in bad.output


def test_a_long_text_is_never_split_across_batch_files(server, tmp_path, monkeypatch):
    from featctl.pipeline import batch_api

    monkeypatch.setattr(batch_api, "MAX_BATCH_INPUTS", 2)
    long = " ".join(f"w{i}" for i in range(13000))  # about 26k tokens: four chunks
    source = write_tsv(tmp_path / "items.tsv", ["id", "text"], [[1, "short one"], [2, long], [3, "short two"]])
    out = json.loads(cli(*batch_args(source, tmp_path / "store", "--max-batch-inputs", "2")).output)
    assert (out["encoded"], out["failed"]) == (3, 0)
    tokens = tokenizer().encode(long)
    chunks = [tokens[i:i + 8191] for i in range(0, len(tokens), 8191)]
    weights = np.array([len(c) for c in chunks], dtype=np.float64)
    mean = (np.stack([server.vector(SMALL, c, 32) for c in chunks]) * weights[:, None]).sum(0)
    vector = Store(str(tmp_path / "store")).feature_set("item_text").vectors([2])[0][0]
    np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=1e-6)


def test_pending_batches_block_a_synchronous_run_and_a_no_wait_rerun_collects_them(server, source, tmp_path):
    store = tmp_path / "store"
    server.batch_seconds = 0.3
    assert json.loads(cli(*batch_args(source, store, "--no-wait")).output)["pending_batches"] == 1
    sync = cli(*embed_args(source, store))
    assert sync.exit_code == 1
    assert "1 batch(es) submitted with --batch-api and not collected yet (200 texts" in sync.output
    plan = json.loads(cli(*embed_args(source, store, "--dry-run", "--json")).output)
    assert (plan["in_batches"], plan["texts_to_send"]) == (200, 0)
    time.sleep(0.4)
    again = json.loads(cli(*batch_args(source, store, "--no-wait")).output)
    assert again["encoded"] == 200 and "pending_batches" not in again and server.batches_created == 1
    assert server.requests == []  # nothing was ever sent synchronously


def test_the_key_stays_out_of_batch_failures_too(server, source, tmp_path):
    store = tmp_path / "store"
    server.echo_key = True
    server.poison.add("entry 5:")
    out = cli(*batch_args(source, store, "--max-batch-inputs", "50"))
    assert json.loads(out.output)["failed"] == 1 and "sk-***" in out.output
    written = b"".join(p.read_bytes() for p in store.rglob("*") if p.is_file())
    assert KEY not in out.output and KEY.encode() not in written


def test_float16_sets_from_the_api(server, source, tmp_path):
    store = tmp_path / "store"
    assert cli(*embed_args(source, store, "--dtype", "float16")).exit_code == 0
    matrix, _ = Store(str(store)).feature_set("item_text").vectors(range(1, 201))
    np.testing.assert_allclose(matrix, np.stack([server.vector(SMALL, t, 32) for t in TEXTS]), atol=2e-3)
