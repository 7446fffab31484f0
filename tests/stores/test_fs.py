"""Store roots as paths or URIs: joining, display, ``file://`` and unknown schemes (no server needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from featctl.errors import StoreError
from featctl.stores import fs
from featctl.stores.store import open_store


def test_join_keeps_the_uri_query_at_the_end() -> None:
    root = "s3://bkt/a/b?endpoint_override=127.0.0.1:9000&scheme=http"
    assert fs.join(root, "features", "x") == "s3://bkt/a/b/features/x?endpoint_override=127.0.0.1:9000&scheme=http"
    assert fs.display(fs.join(root, "manifest.json")) == "s3://bkt/a/b/manifest.json"
    assert fs.bucket_and_key(fs.join(root, "manifest.json")) == ("bkt", "a/b/manifest.json")
    assert fs.join("s3://bkt/a/", "m") == "s3://bkt/a/m" and fs.join("/tmp/s", "m") == os.path.join("/tmp/s", "m")


def test_file_uris_are_local_stores(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/store")
    assert store.root == f"{tmp_path}/store" and not store.remote


@pytest.mark.parametrize("root, message", [("foo://bucket/x", "unknown store scheme 'foo://'"),
                                           ("s3://", "names no bucket")])
def test_bad_roots_are_refused(root: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(root)


def test_file_uris_naming_a_host_are_refused(tmp_path: Path) -> None:
    assert open_store(f"file://localhost{tmp_path}/s").root == f"{tmp_path}/s"
    with pytest.raises(StoreError, match="names host 'otherhost'; file:// stores are local"):
        open_store("file://otherhost/data/store")


def test_credentials_in_the_uri_reach_boto3_too() -> None:
    pytest.importorskip("boto3")
    from featctl.stores import s3

    client = s3.client("s3://bkt/x?endpoint_override=127.0.0.1:9&scheme=http&access_key=AKX&secret_key=SKX")
    credentials = client._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == ("AKX", "SKX")
    assert client.meta.endpoint_url == "http://127.0.0.1:9"


def test_raw_object_store_errors_become_one_line_with_a_fix() -> None:
    raw = OSError("When listing objects under key 'p/features' in bucket 'bkt': AWS Error ACCESS_DENIED during "
                  "ListObjectsV2 operation: Access Denied\nDetail: more")
    error = fs.remote_error(raw, "s3://bkt/p/features?endpoint_override=127.0.0.1:9")
    message = str(error)
    assert message.startswith("access denied to s3://bkt/p/features (When listing")
    assert "check the credentials and the bucket policy" in message and "\n" not in message
    assert "endpoint_override" not in message
