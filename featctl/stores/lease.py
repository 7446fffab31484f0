"""One writer at a time on an object store: a lease object ``<store>/.lock`` with an expiry.

Protocol (conditional writes through :mod:`featctl.stores.conditional`: S3 ``If-Match`` /
``If-None-Match: *`` on ETags, which AWS S3, MinIO and moto support; GCS ``ifGenerationMatch`` on
generations, ``0`` for create). Below, "ETag" means either version:

- **acquire**: ``PUT .lock`` with ``If-None-Match: *`` holding ``{"holder", "pid", "host", "since",
  "expires_at"}``. Exactly one of several racing writers gets a 200; the others get 412.
- **wait / take over**: a loser reads the lease and its ETag. While ``expires_at`` (UTC seconds) lies
  in the future it polls until ``--lock-timeout``; once it has passed, the holder is taken to be dead
  and the lease is replaced with ``If-Match: <that ETag>``, so of several writers taking over one
  stale lease only one wins.
- **renew**: a thread re-PUTs the lease with ``If-Match`` on its own ETag every ``ttl / 3`` seconds.
  A renewal that fails (the lease was taken over after this process stalled past its expiry) marks
  the lease lost, and :meth:`ObjectLease.check` makes the next commit fail instead of writing.
- **release**: ``DELETE .lock`` with ``If-Match`` on its own ETag; a lease already taken over is left alone.

A crashed writer's lease expires after ``ttl`` seconds (``FEATCTL_LEASE_SECONDS``, default 60), so
a kill -9 blocks other writers for at most that long. Expiry compares the holder's clock with the
taker's: their clocks must agree to well within ``ttl``. The lease is a first line of defence; the
manifest itself is replaced with ``If-Match`` on the ETag read at the start (see ``store.py``), so a
writer that lost its lease still cannot clobber a manifest committed by another.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from featctl.errors import LeaseLostError, LockTimeoutError, StoreError
from featctl.stores import conditional, fs

log = logging.getLogger(__name__)

DEFAULT_TTL = 60.0


def lease_seconds() -> float:
    try:
        return max(1.0, float(os.environ.get("FEATCTL_LEASE_SECONDS") or DEFAULT_TTL))
    except ValueError:
        raise StoreError("FEATCTL_LEASE_SECONDS must be a number of seconds") from None


class ObjectLease:
    """The writer lock of an object store; same interface as :class:`~featctl.stores.lock.StoreLock`."""

    def __init__(self, path: str, timeout: float, ttl: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.ttl = ttl or lease_seconds()
        self.holder = uuid.uuid4().hex
        self._etag: str | None = None
        self._lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def _body(self, since: str | None = None) -> bytes:
        return json.dumps({
            "holder": self.holder, "pid": os.getpid(), "host": socket.gethostname(),
            "since": since or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "expires_at": time.time() + self.ttl,
        }).encode()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        waited = False
        while True:
            current, etag = conditional.get(self.path)
            info = _parse(current) if current is not None else {}
            try:
                if current is None:
                    self._etag = conditional.put(self.path, self._body(), None)
                    break
                if _expires_at(info) < time.time():
                    log.warning("taking over the expired lease of %s", _holder(info))
                    self._etag = conditional.put(self.path, self._body(), etag)
                    break
            except conditional.PreconditionFailed:
                pass  # another writer moved first: look again, after the deadline check and a pause
            if time.monotonic() >= deadline:
                raise LockTimeoutError(fs.display(self.path.rsplit("/", 1)[0]), self.timeout, _holder(info))
            if not waited:
                log.warning("store is locked by %s; waiting up to %gs", _holder(info), self.timeout)
                waited = True
            time.sleep(min(1.0, max(0.05, self.timeout / 20)))
        self._lost = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name="featctl-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        while not self._stop.wait(self.ttl / 3):
            with self._guard:
                if self._etag is None:
                    return
                try:
                    self._etag = conditional.put(self.path, self._body(since), self._etag)
                except conditional.PreconditionFailed:
                    log.error("lost the lease on %s to another writer", fs.display(self.path))
                    self._lost = True
                    return
                except StoreError as exc:
                    log.warning("could not renew the lease on %s: %s", fs.display(self.path), exc)

    def check(self) -> None:
        """Raise :class:`LeaseLostError` when another writer has taken the lease over."""
        with self._guard:  # not while a renewal is between its PUT and recording the new ETag
            if self._lost:
                raise LeaseLostError(fs.display(self.path))
            current, etag = conditional.get(self.path)
            if current is None or etag != self._etag:
                self._lost = True
                raise LeaseLostError(fs.display(self.path))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._guard:
            if self._etag is not None and not self._lost:
                try:
                    conditional.delete(self.path, self._etag)
                except StoreError as exc:
                    log.warning("could not release the lease on %s (%s); it expires in %gs",
                                fs.display(self.path), exc, self.ttl)
            self._etag = None

    def __enter__(self) -> ObjectLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


S3Lease = ObjectLease  # the name it had while only s3:// stores were writable


def _parse(data: bytes) -> dict[str, Any]:
    try:
        info = json.loads(data)
        return info if isinstance(info, dict) else {}
    except ValueError:
        return {}  # unreadable: no expiry, so it counts as expired


def _expires_at(info: dict[str, Any]) -> float:
    """The lease's expiry in UTC seconds; an unreadable one counts as expired."""
    try:
        return float(info.get("expires_at", 0))
    except (TypeError, ValueError):
        return 0.0


def _holder(info: dict[str, Any]) -> str:
    if "pid" in info and "host" in info:
        return f"pid {info['pid']} on {info['host']} since {info.get('since', '?')}"
    return "another process"
