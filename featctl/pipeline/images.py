"""An image column as encoder inputs: each row's file, and a content key over the file's bytes.

A row's content hash is over the image bytes (plus the recipe), not its path: a poster replaced at
the same path is encoded again, an unchanged file that moved is not. Rows that cannot be read get
a reason instead of a location (``missing file``, ``over the size cap``, ``no image``) and are
recorded as failed without reaching the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from featctl.encoders.clip import MISSING_FILE, NOT_AN_IMAGE, TRUNCATED
from featctl.errors import UnknownColumnError
from featctl.stores.files import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

FAILED = "\x00"  # a rendered input that starts with this is a failure reason, not an input
NO_IMAGE = "no image"
OVER_CAP = "over the size cap"
# Failures that depend only on a row's content key: the same key fails the same way next run.
IMAGE_FAILURES = (MISSING_FILE, NO_IMAGE, OVER_CAP, NOT_AN_IMAGE, TRUNCATED)
URL_ERROR = "URL error"  # not final: the next run tries again
DEFAULT_MAX_BYTES = 20 << 20
FETCH_TIMEOUT = 10.0
FETCH_ATTEMPTS = 3
FETCH_WORKERS = 8


def failure(reason: str) -> str:
    return FAILED + reason


def _is_url(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


def image_cache() -> str:
    """Downloaded images by content hash: ``$FEATCTL_CACHE_DIR/images``, else ``~/.cache/featctl/images``."""
    root = os.environ.get("FEATCTL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "featctl")
    return os.path.join(root, "images")


@dataclass
class ImageColumn:
    """Renders an image column into absolute file paths (or failure markers) and their content keys."""

    column: str
    root: str
    max_bytes: int = DEFAULT_MAX_BYTES
    _digests: dict[tuple[str, int, int], str] = field(default_factory=dict)
    _fetched: dict[str, str] = field(default_factory=dict)  # url → cached file or failure, for this run

    @classmethod
    def of(cls, column: str, columns: Sequence[str], root: str, max_bytes: int = DEFAULT_MAX_BYTES) -> ImageColumn:
        if column not in columns:
            raise UnknownColumnError(column, "--image", columns)
        return cls(column, os.path.abspath(root), max_bytes)

    @property
    def text(self) -> str:
        """What the recipe records as the set's template."""
        return f"image:{{{self.column}}}"

    def render(self, batch: pa.RecordBatch) -> list[str]:
        values = batch.column(self.column).to_pylist()
        urls = list(dict.fromkeys(v.strip() for v in values if _is_url(v) and v.strip() not in self._fetched))
        if urls:  # downloads overlap; each URL is fetched once per run
            with ThreadPoolExecutor(FETCH_WORKERS, thread_name_prefix="featctl-fetch") as pool:
                self._fetched.update(zip(urls, pool.map(self._fetch, urls)))
        return [self._fetched[v.strip()] if _is_url(v) else self._locate(v) for v in values]

    def keys(self, rendered: list[str]) -> list[str]:
        """What each row's content hash covers: the image bytes, or the failure with what caused it."""
        return [r + f" (cap {self.max_bytes})" if r == failure(OVER_CAP) else r if r.startswith(FAILED)
                else self._digest(r) for r in rendered]

    def _locate(self, value: object) -> str:
        if value is None or not str(value).strip():
            return failure(NO_IMAGE)
        path = os.path.join(self.root, os.path.expanduser(str(value).strip()))
        try:
            size = os.path.getsize(path)
        except OSError:
            return failure(MISSING_FILE)
        return failure(OVER_CAP) if size > self.max_bytes else path

    def _fetch(self, url: str) -> str:
        """The downloaded file in the cache (by content hash), or a failure marker.

        A conditional request (ETag / Last-Modified of the cached copy) avoids downloading again
        what has not changed; server errors and timeouts are retried with backoff.
        """
        url = url.strip()
        cache = image_cache()
        index_path = os.path.join(cache, "urls", hashlib.sha256(url.encode()).hexdigest() + ".json")
        try:
            with open(index_path, encoding="utf-8") as fh:
                known = json.load(fh)
        except (OSError, ValueError):
            known = {}
        cached = os.path.join(cache, known.get("sha256", "-"))
        headers = {"User-Agent": "featctl"}
        if os.path.exists(cached):
            headers |= {k: v for k, v in (("If-None-Match", known.get("etag")),
                                          ("If-Modified-Since", known.get("last_modified"))) if v}
        error = ""
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                            timeout=FETCH_TIMEOUT) as reply:
                    data = reply.read(self.max_bytes + 1)
                    if len(data) > self.max_bytes:
                        return failure(OVER_CAP)
                    meta = {"etag": reply.headers.get("ETag"), "last_modified": reply.headers.get("Last-Modified")}
                break
            except urllib.error.HTTPError as exc:
                if exc.code == 304:
                    return self._locate(cached)  # the copy already here, still held to the size cap
                error = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    return failure(f"{URL_ERROR}: {error}")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                error = str(getattr(exc, "reason", exc)) or type(exc).__name__
            if attempt < FETCH_ATTEMPTS:
                time.sleep(0.5 * 2 ** (attempt - 1))
        else:
            return failure(f"{URL_ERROR}: {error}")
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(cache, digest)
        os.makedirs(os.path.dirname(index_path), exist_ok=True)
        if not os.path.exists(path):
            write_bytes_atomic(path, data)
        write_json_atomic(index_path, {"url": url, "sha256": digest, **meta})
        return path

    def _digest(self, path: str) -> str:
        """``image:<sha256>`` of a file, computed once per (path, size, mtime) in this process."""
        try:
            stat = os.stat(path)
            key = (path, stat.st_size, stat.st_mtime_ns)
            if key not in self._digests:
                with open(path, "rb") as fh:
                    self._digests[key] = "image:" + hashlib.file_digest(fh, "sha256").hexdigest()
            return self._digests[key]
        except OSError:
            return failure(MISSING_FILE)
