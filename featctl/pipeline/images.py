"""An image column as encoder inputs: each row's file, and a content key over the file's bytes.

A row's content hash is over the image bytes (plus the recipe), not its path: a poster replaced at
the same path is encoded again, an unchanged file that moved is not. Rows that cannot be read get
a reason instead of a location (``missing file``, ``over the size cap``, ``no image``) and are
recorded as failed without reaching the model.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from featctl.encoders.clip import MISSING_FILE, NOT_AN_IMAGE, TRUNCATED
from featctl.errors import UnknownColumnError

log = logging.getLogger(__name__)

FAILED = "\x00"  # a rendered input that starts with this is a failure reason, not an input
NO_IMAGE = "no image"
OVER_CAP = "over the size cap"
# Failures that depend only on a row's content key: the same key fails the same way next run.
IMAGE_FAILURES = (MISSING_FILE, NO_IMAGE, OVER_CAP, NOT_AN_IMAGE, TRUNCATED)
DEFAULT_MAX_BYTES = 20 << 20


def failure(reason: str) -> str:
    return FAILED + reason


@dataclass
class ImageColumn:
    """Renders an image column into absolute file paths (or failure markers) and their content keys."""

    column: str
    root: str
    max_bytes: int = DEFAULT_MAX_BYTES
    _digests: dict[tuple[str, int, int], str] = field(default_factory=dict)

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
        return [self._locate(value) for value in batch.column(self.column).to_pylist()]

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
