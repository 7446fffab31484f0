"""One writer at a time: an advisory ``flock`` on ``<store>/.lock``.

The kernel releases the lock when its holder dies, even by kill -9, so a crashed run never
leaves a stale lock behind. The file records who holds it, for the message a waiter prints.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from datetime import datetime, timezone

from featctl.errors import LockError, LockTimeoutError

log = logging.getLogger(__name__)


class StoreLock:
    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None
        self._writable = False

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            writable = True
        except OSError:
            # A read-only store can still be locked (flock needs no write access), so a rerun with
            # nothing to write succeeds; a commit would then fail with its own message.
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except OSError as exc:
                raise LockError(self.path, exc.strerror or str(exc)) from None
            writable = False
        deadline = time.monotonic() + self.timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder()
                    os.close(fd)
                    raise LockTimeoutError(os.path.dirname(self.path), self.timeout, holder) from None
                if not waited:
                    log.warning("store is locked by %s; waiting up to %gs", self._holder(), self.timeout)
                    waited = True
                time.sleep(0.1)
        if writable:
            os.ftruncate(fd, 0)
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        self._writable = writable

    def release(self) -> None:
        if self._fd is not None:
            if self._writable:
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def check(self) -> None:
        """An ``flock`` held by a live process cannot be taken over: nothing to check."""

    def _holder(self) -> str:
        try:
            with open(self.path) as fh:
                info = json.load(fh)
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError):
            return "another process"

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
