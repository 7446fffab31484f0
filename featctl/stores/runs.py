"""Run folders: ``runs/<run-id>/`` under the store holds a trainer's config, metrics, checkpoint and log."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from featctl.errors import StoreError
from featctl.stores.files import write_json_atomic

log = logging.getLogger(__name__)


class Run:
    """One trainer run; files are written atomically, so a killed run leaves only whole files."""

    def __init__(self, root: str, model: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.id = f"{stamp}-{model}-{secrets.token_hex(2)}"
        self.path = os.path.join(root, "runs", self.id)
        try:
            os.makedirs(self.path)
        except OSError as exc:
            raise StoreError(f"cannot create run folder {self.path}: {exc.strerror or exc}; check --store") from None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def write_json(self, name: str, data: Any) -> str:
        write_json_atomic(self.file(name), data)
        return self.file(name)

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
