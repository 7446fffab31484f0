"""Run folders: ``runs/<run-id>/`` under the store holds a trainer's config, metrics, checkpoint and log.

On an object store a run is staged in a local temporary folder (torch and logging write local files)
and each finished file is uploaded with :meth:`Run.publish`; :attr:`Run.path` is always the store's.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from featctl.errors import StoreError
from featctl.stores import fs
from featctl.stores.files import write_json_atomic

log = logging.getLogger(__name__)


class Run:
    """One trainer run; files are written atomically, so a killed run leaves only whole files."""

    def __init__(self, root: str, model: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.id = f"{stamp}-{model}-{secrets.token_hex(2)}"
        self.path = fs.join(root, "runs", self.id)
        self._local = tempfile.mkdtemp(prefix=f"featctl-run-{self.id}-") if fs.is_remote(root) else self.path
        try:
            os.makedirs(self._local, exist_ok=fs.is_remote(root))
        except OSError as exc:
            raise StoreError(f"cannot create run folder {self.path}: {exc.strerror or exc}; check --store") from None

    def file(self, name: str) -> str:
        """The local path to write ``name`` at; call :meth:`publish` once it is whole."""
        return os.path.join(self._local, name)

    def publish(self, name: str) -> str:
        """Upload a finished file to an object-store run (nothing to do locally); its store path."""
        if self._local == self.path:
            return self.file(name)
        target = fs.join(self.path, name)
        try:
            fs.upload(self.file(name), target)
        except OSError as exc:
            raise StoreError(f"cannot upload {fs.display(target)}: {exc}") from None
        return target

    def write_json(self, name: str, data: Any) -> str:
        write_json_atomic(self.file(name), data)
        return self.publish(name)

    def remove(self) -> None:
        """Delete the run (a failed one leaves nothing behind)."""
        fs.rmtree(self.path)
        self.close()

    def close(self) -> None:
        """Drop the local staging folder of an object-store run."""
        if self._local != self.path:
            shutil.rmtree(self._local, ignore_errors=True)

    @contextmanager
    def logging_to_file(self, logger: str = "featctl") -> Iterator[None]:
        """Copy the library's INFO log into ``log.txt`` while the run lasts."""
        handler = logging.FileHandler(self.file("log.txt"), encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        target = logging.getLogger(logger)
        level = target.level
        target.addHandler(handler)
        if target.getEffectiveLevel() > logging.INFO:
            target.setLevel(logging.INFO)
        try:
            yield
        finally:
            target.removeHandler(handler)
            target.setLevel(level)
            handler.close()
            if self._local != self.path and os.path.exists(self.file("log.txt")):
                try:
                    self.publish("log.txt")
                except StoreError as exc:
                    log.warning("%s", exc)
