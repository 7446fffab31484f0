"""Helpers for the object-store tests: listing keys, planting leases, small parts."""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa

ENTRY = {"entity": "item", "modality": "text", "encoder": "test", "dim": 4, "dtype": "float32",
         "id_type": "int64", "metric": "cosine", "recipe": {}, "recipe_hash": "x", "source": {}}


def keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    """The keys under ``prefix``, without the empty folder markers pyarrow leaves after a delete."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/"))


def plant_lease(client: Any, bucket: str, key: str, expires_in: float) -> None:
    """A lease held by another process, expiring ``expires_in`` seconds from now (negative: expired)."""
    body = {"holder": "someone", "pid": 4242, "host": "otherhost", "since": "2026-01-01T00:00:00+00:00",
            "expires_at": time.time() + expires_in}
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())


def manifest(client: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def table(ids: list[int]) -> pa.Table:
    from featctl.stores.feature_set import part_schema

    vectors = pa.array([[float(i)] * 4 for i in ids], pa.list_(pa.float32(), 4))
    return pa.table({"id": pa.array(ids, pa.int64()), "content_hash": [str(i) for i in ids], "vector": vectors,
                     "error": pa.nulls(len(ids), pa.string())}, schema=part_schema(pa.int64(), 4, "float32"))
