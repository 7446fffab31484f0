"""Writers racing on an s3:// store: the manifest fence, lost responses, orphans, index generations."""

from __future__ import annotations

from typing import Any

import pytest

from featctl.errors import ConcurrentCommitError
from featctl.stores.lease import S3Lease
from featctl.stores.store import open_store
from tests.stores.s3util import ENTRY, keys, manifest, plant_lease, table

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
