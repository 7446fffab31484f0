"""S3 helpers for the object-store tests: listing keys, planting leases, reading the manifest."""

from __future__ import annotations

import json
import time
from typing import Any


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
