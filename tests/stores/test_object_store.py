"""Stores on S3: a real moto server on 127.0.0.1, driven through the CLI as a user types it."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featctl.errors import ConcurrentCommitError, LeaseLostError, LockTimeoutError
from featctl.stores.store import open_store
from tests.conftest import HashEncoder
from tests.stores.s3util import keys, plant_lease
from tests.stores.storeutil import DATA, ENTRY, INTERACTIONS, cli, embed, error_line, table

pytest.importorskip("moto.server")
pytest.importorskip("boto3")



def test_embed_coverage_neighbors_train_on_s3(aws: Any, bucket: str, tmp_path: Path,
                                              hash_encoder: type[HashEncoder]) -> None:
    store, local = f"s3://{bucket}/stores/anime", str(tmp_path / "local")
    first = embed(store)
    assert first["encoded"] == 225 and first["store"] == store
    embed(local)
    s3_table = open_store(store).feature_set("item_text").to_arrow()
    local_table = open_store(local).feature_set("item_text").to_arrow()
    assert s3_table["id"].equals(local_table["id"]) and s3_table.num_rows == 225
    np.testing.assert_array_equal(np.stack(s3_table["vector"].to_numpy(zero_copy_only=False)),
                                  np.stack(local_table["vector"].to_numpy(zero_copy_only=False)))
    manifest = json.loads(aws.get_object(Bucket=bucket, Key="stores/anime/manifest.json")["Body"].read())
    part = manifest["sets"]["item_text"]["parts"][0]["file"]
    assert f"stores/anime/features/item_text/{part}" in keys(aws, bucket)
    assert "stores/anime/.lock" not in keys(aws, bucket)  # the lease is released

    hash_encoder.calls = []
    again = embed(store)
    assert (again["encoded"], again["texts_encoded"], hash_encoder.calls) == (0, 0, [])
    assert cli("info", "item_text", "--store", store, "--verify").exit_code == 0

    covered = cli("coverage", "-i", INTERACTIONS, "--store", store, "--json")
    assert covered.exit_code == 0, covered.output
    report = json.loads(covered.stdout)
    assert report["store"] == store and report["sets"][0]["name"] == "item_text"
    assert any(k.startswith("stores/anime/reports/coverage-") and k.endswith(".json") for k in keys(aws, bucket))

    assert cli("index", "item_text", "--store", store).exit_code == 0
    assert cli("index", "item_text", "--store", local).exit_code == 0
    indexes = keys(aws, bucket, "stores/anime/indexes/item_text/")
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
    run = {k.rsplit("/", 1)[1] for k in keys(aws, bucket, f"stores/anime/runs/{out['run']}/")}
    assert run == {"config.json", "metrics.json", "checkpoint.pt", "log.txt"}
    metrics = json.loads(aws.get_object(Bucket=bucket, Key=f"stores/anime/runs/{out['run']}/metrics.json")
                         ["Body"].read())
    assert metrics["metrics"] == out["metrics"]


def test_a_live_lease_refuses_a_second_writer_and_an_expired_one_is_taken_over(
        aws: Any, bucket: str, hash_encoder: type[HashEncoder]) -> None:
    store = f"s3://{bucket}/s"
    plant_lease(aws, bucket, "s/.lock", expires_in=300)
    refused = cli("embed", "--source", DATA / "anime.tsv", "--store", store, "--encoder", "hash:v1",
                  "--lock-timeout", "0.5")
    assert "locked by another writer (pid 4242 on otherhost" in error_line(refused)
    assert keys(aws, bucket) == ["s/.lock"]  # nothing written, the holder's lease untouched

    plant_lease(aws, bucket, "s/.lock", expires_in=-1)
    assert embed(store)["encoded"] == 225
    assert "s/.lock" not in keys(aws, bucket) and "s/manifest.json" in keys(aws, bucket)


def test_the_lease_is_renewed_while_a_writer_runs(aws: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATCTL_LEASE_SECONDS", "1.5")
    with open_store(f"s3://{bucket}/r").writer(lock_timeout=0):
        first = json.loads(aws.get_object(Bucket=bucket, Key="r/.lock")["Body"].read())
        time.sleep(2.0)  # past the first expiry: renewals must have pushed it forward
        later = json.loads(aws.get_object(Bucket=bucket, Key="r/.lock")["Body"].read())
        assert later["holder"] == first["holder"] and later["expires_at"] > time.time()
        with pytest.raises(LockTimeoutError), open_store(f"s3://{bucket}/r").writer(lock_timeout=0.3):
            pass
    assert "r/.lock" not in keys(aws, bucket)


def test_a_concurrent_manifest_commit_is_detected_not_clobbered(aws: Any, bucket: str) -> None:
    store = open_store(f"s3://{bucket}/c")
    with store.writer() as writer:
        writer.commit("a", ENTRY, [table([1, 2])])
        # someone else replaces the manifest behind this writer's back (a writer without the lease)
        theirs = json.dumps({"format": 1, "sets": {}}).encode()
        aws.put_object(Bucket=bucket, Key="c/manifest.json", Body=theirs)
        with pytest.raises(ConcurrentCommitError, match="changed by another writer"):
            writer.commit("b", ENTRY, [table([3])])
    assert aws.get_object(Bucket=bucket, Key="c/manifest.json")["Body"].read() == theirs


def test_a_writer_whose_lease_was_taken_over_commits_nothing(aws: Any, bucket: str) -> None:
    store = open_store(f"s3://{bucket}/t")
    slow = store.writer().__enter__()
    plant_lease(aws, bucket, "t/.lock", expires_in=-1)  # as if the slow writer stalled past its expiry
    with store.writer(lock_timeout=0) as fast:
        fast.commit("a", ENTRY, [table([1])])
    with pytest.raises(LeaseLostError):
        slow.commit("a", ENTRY, [table([9])])
    slow.__exit__(None, None, None)
    assert open_store(f"s3://{bucket}/t").feature_set("a").vectors([1, 9])[1].tolist() == [True, False]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_stores_get_one_line_and_change_nothing(aws: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(store: str, *wanted: str) -> None:
        result = cli("embed", "--source", DATA / "anime.tsv", "--store", store, "--encoder", "hash:v1")
        line = error_line(result)
        assert all(w in line for w in wanted), result.output

    refused("foo://bucket/x", "unknown store scheme 'foo://'")
    refused("s3://featctl-no-such-bucket/x", "bucket 'featctl-no-such-bucket' does not exist")
    assert "featctl-no-such-bucket" not in [b["Name"] for b in aws.list_buckets()["Buckets"]]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    refused(f"s3://{bucket}/x", "cannot reach the object store")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.meta.endpoint_url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    refused(f"s3://{bucket}/x", "no credentials")
    assert keys(aws, bucket) == []
