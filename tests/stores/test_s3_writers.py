"""Writers racing on an s3:// store: the manifest fence, lost responses, orphans, index generations."""

from __future__ import annotations

import time
from typing import Any

import pytest

from featctl.errors import ConcurrentCommitError
from featctl.stores.lease import S3Lease
from featctl.stores.store import open_store
from tests.stores.s3util import keys, manifest, plant_lease
from tests.stores.storeutil import ENTRY, check_crashed_writers_orphan_is_removed, table

pytest.importorskip("moto.server")
pytest.importorskip("boto3")


def test_a_writer_stalled_after_its_lease_check_cannot_commit_parts_another_writer_deleted(
        aws: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"s3://{bucket}/t")
    with store.writer() as first:
        first.commit("a", ENTRY, [table([1])])
    slow = store.writer().__enter__()
    check = S3Lease.check

    def check_then_stall(lease: S3Lease) -> None:
        check(lease)  # passes; then the writer stalls past its lease and another one takes over
        monkeypatch.setattr(S3Lease, "check", check)
        plant_lease(aws, bucket, "t/.lock", expires_in=-1)
        with store.writer(lock_timeout=0):
            pass

    monkeypatch.setattr(S3Lease, "check", check_then_stall)
    before = manifest(aws, bucket, "t/manifest.json")
    with pytest.raises(ConcurrentCommitError):
        slow.commit("a", ENTRY, [table([9])])
    slow.__exit__(None, None, None)
    after = manifest(aws, bucket, "t/manifest.json")
    assert after["generation"] == before["generation"] + 1 and after["sets"] == before["sets"]
    reread = open_store(f"s3://{bucket}/t").feature_set("a")
    assert reread.verify() == [] and reread.vectors([1, 9])[1].tolist() == [True, False]
    # the stale writer's part is younger than twice the lease: it was left alone, not deleted under it
    assert len(keys(aws, bucket, "t/features/a/")) == 2


def _lose_first_response(monkeypatch: pytest.MonkeyPatch, key: str) -> list[str]:
    """The first PUT of ``key`` lands but its response is lost, so it is sent again (as boto3 retries)."""
    from featctl.stores import s3

    client = s3.client(f"s3://any/{key}")
    put = client.put_object
    retried: list[str] = []

    def flaky(**kwargs: Any) -> Any:
        if kwargs["Key"].endswith(key) and not retried:
            retried.append(kwargs["Key"])
            put(**kwargs)  # lands on the server; the reply never arrives
        return put(**kwargs)

    monkeypatch.setattr(client, "put_object", flaky)
    return retried


def test_a_retried_manifest_put_whose_first_response_was_lost_is_not_a_conflict(
        aws: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"s3://{bucket}/m")
    with store.writer() as writer:
        writer.commit("a", ENTRY, [table([1])])
        retried = _lose_first_response(monkeypatch, "m/manifest.json")
        writer.commit("a", ENTRY, [table([2])])
        writer.commit("a", ENTRY, [table([3])])  # the adopted ETag is the manifest's current one
    assert retried == ["m/manifest.json"]
    assert open_store(f"s3://{bucket}/m").feature_set("a").vectors([1, 2, 3])[1].tolist() == [True] * 3


def test_a_retried_lease_put_whose_first_response_was_lost_still_holds_the_lease(
        aws: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    retried = _lose_first_response(monkeypatch, "l/.lock")
    with open_store(f"s3://{bucket}/l").writer(lock_timeout=0) as writer:
        writer.commit("a", ENTRY, [table([1])])
    assert retried == ["l/.lock"] and keys(aws, bucket, "l/.lock") == []  # acquired at once, then released


def test_a_lease_check_during_a_renewal_is_not_a_lost_lease(
        aws: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from featctl.stores import lease

    put = lease.conditional.put

    def slow_put(path: str, data: bytes, etag: str | None) -> str:
        new = put(path, data, etag)
        time.sleep(0.2)  # the lease object already changed; the renewal has not recorded its ETag yet
        return new

    monkeypatch.setattr(lease.conditional, "put", slow_put)
    held = S3Lease(f"s3://{bucket}/g/.lock", timeout=0, ttl=1.2)
    with held:
        until = time.monotonic() + 1.5  # spans several renewals (every 0.4s)
        while time.monotonic() < until:
            held.check()
            time.sleep(0.01)
    assert keys(aws, bucket, "g/") == []


def _index_files(aws: Any, bucket: str, prefix: str) -> tuple[list[str], dict[str, str]]:
    names = [k.rsplit("/", 1)[1] for k in keys(aws, bucket, prefix)]
    return names, manifest(aws, bucket, prefix + "index.json")["files"]


def test_index_writes_keep_the_previous_generation_and_are_fenced_by_the_lease(
        aws: Any, bucket: str) -> None:
    from featctl.errors import LeaseLostError
    from featctl.pipeline.index_build import IndexConfig, build_index
    from featctl.stores.indexes import load_index, save_index

    root, prefix = f"s3://{bucket}/i", "i/indexes/a/"
    with open_store(root).writer() as writer:
        writer.commit("a", ENTRY, [table(list(range(1, 41)))])
    aws.put_object(Bucket=bucket, Key=prefix + "README.txt", Body=b"not featctl's")
    generations = []
    for _ in range(3):
        build_index(IndexConfig("a", root, rebuild=True))
        names, files = _index_files(aws, bucket, prefix)
        generations.append(set(files.values()))
    assert set(names) == generations[1] | generations[2] | {"index.json", "README.txt"}  # the first is gone

    stale = open_store(root).writer().__enter__()
    plant_lease(aws, bucket, "i/.lock", expires_in=-1)
    with open_store(root).writer(lock_timeout=0):
        pass
    loaded = load_index(root, "a")
    assert loaded is not None
    with pytest.raises(LeaseLostError):
        save_index(root, "a", loaded.index, loaded.ids, loaded.hashes, loaded.info, check=stale.check_lease)
    stale.__exit__(None, None, None)
    assert _index_files(aws, bucket, prefix)[1] == files  # index.json still names the last good generation


def test_a_failed_first_run_removes_only_its_own_parts_and_always_releases_the_lease(
        aws: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from featctl.errors import StoreError
    from featctl.stores.store import Store, StoreWriter

    def no_commit(writer: StoreWriter, manifest: dict[str, Any]) -> None:
        aws.put_object(Bucket=bucket, Key="f/features/a/part-000001-0ther000.parquet", Body=b"another writer's")
        aws.put_object(Bucket=bucket, Key="f/notes.txt", Body=b"someone else's")
        raise StoreError("the manifest could not be written")

    write_manifest = StoreWriter._write_manifest
    monkeypatch.setattr(StoreWriter, "_write_manifest", no_commit)
    with pytest.raises(StoreError, match="could not be written"), open_store(f"s3://{bucket}/f").writer() as writer:
        writer.commit("a", ENTRY, [table([1])])
    assert keys(aws, bucket, "f/") == ["f/features/a/part-000001-0ther000.parquet", "f/notes.txt"]

    monkeypatch.setattr(StoreWriter, "_write_manifest", write_manifest)

    def unreachable(store: Store) -> bool:
        raise StoreError("the object store went away")

    with open_store(f"s3://{bucket}/g").writer() as writer:
        writer.commit("a", ENTRY, [table([1])])
        lease = writer._lock
        monkeypatch.setattr(Store, "exists", unreachable)
    assert keys(aws, bucket, "g/.lock") == [] and lease._thread is None  # released, renewals stopped


def test_a_lease_with_an_unreadable_expiry_counts_as_expired(aws: Any, bucket: str) -> None:
    aws.put_object(Bucket=bucket, Key="u/.lock", Body=b'{"holder": "x", "expires_at": "soon"}')
    with open_store(f"s3://{bucket}/u").writer(lock_timeout=0) as writer:
        writer.commit("a", ENTRY, [table([1])])
    assert keys(aws, bucket, "u/.lock") == []


def test_a_lease_lost_race_on_every_try_still_times_out(
        aws: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from featctl.errors import LockTimeoutError
    from featctl.stores import lease

    tries: list[float] = []

    def always_beaten(path: str, data: bytes, etag: str | None) -> str:
        tries.append(time.monotonic())
        raise lease.conditional.PreconditionFailed(path)

    monkeypatch.setattr(lease.conditional, "put", always_beaten)
    started = time.monotonic()
    with pytest.raises(LockTimeoutError):
        S3Lease(f"s3://{bucket}/w/.lock", timeout=0.5).acquire()
    assert time.monotonic() - started < 3 and len(tries) < 20  # paused between tries, no spin


def test_the_next_writer_removes_exactly_the_part_a_crashed_writer_left_uncommitted(
        aws: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATCTL_LEASE_SECONDS", "1")
    check_crashed_writers_orphan_is_removed(
        f"s3://{bucket}/x", lambda key, data: aws.put_object(Bucket=bucket, Key=key, Body=data),
        lambda prefix: keys(aws, bucket, prefix),
        ("x/features/a/notes.txt", "x/features/a/part-7.csv", "x/elsewhere/part-000009.parquet"))
