"""Conditional object writes shared by every writable object store (``s3://``, ``gs://``).

The manifest, ``index.json`` and the writer's lease object are replaced only if they still have the
version this writer read: an S3 ETag (``If-Match`` / ``If-None-Match: *``) or a GCS generation
(``ifGenerationMatch``, ``0`` for create). Each backend module (:mod:`featctl.stores.s3`,
:mod:`featctl.stores.gcs`) implements :class:`ConditionalObjects`; this module picks one by scheme
and adds what they share: adopting a retried write whose first response was lost.
"""

from __future__ import annotations

import functools
import logging
from typing import Protocol, cast

from featctl.errors import StoreError
from featctl.stores import fs

log = logging.getLogger(__name__)

WRITABLE = ("s3", "gs", "gcs")


class PreconditionFailed(Exception):
    """A conditional write lost: the object changed (or appeared) since it was read."""


class ConditionalObjects(Protocol):
    """Objects read with a version and written or deleted only if that version still holds."""

    def check_bucket(self, root: str) -> None: ...

    def get(self, path: str) -> tuple[bytes | None, str | None]: ...

    def put(self, path: str, data: bytes, version: str | None) -> str: ...

    def delete(self, path: str, version: str) -> bool: ...


def writable(path: str) -> bool:
    return fs.scheme(path) in WRITABLE


def backend(path: str) -> ConditionalObjects:
    """The conditional-write backend of ``path``'s scheme; a one-line error for one that has none."""
    kind = fs.scheme(path)
    if kind == "s3":
        from featctl.stores import s3

        return cast(ConditionalObjects, s3)
    if kind in ("gs", "gcs"):
        from featctl.stores import gcs

        return cast(ConditionalObjects, gcs)
    raise StoreError(f"cannot write to {kind}:// stores ({fs.display(path)}): "
                     "featctl writes object stores only on s3:// and gs://")


def check_bucket(root: str) -> None:
    """Fail with one clear line when the bucket is missing, unreachable or not ours to use (once per
    root and client settings)."""
    _check_bucket(root, fs.env_key())


@functools.lru_cache(maxsize=64)
def _check_bucket(root: str, env: tuple[str | None, ...]) -> None:
    backend(root).check_bucket(root)


def get(path: str) -> tuple[bytes | None, str | None]:
    """An object's bytes and version, or ``(None, None)`` when it does not exist."""
    return backend(path).get(path)


def put(path: str, data: bytes, version: str | None) -> str:
    """Write ``path`` only if it still has ``version`` (``None``: only if absent); the new version.

    Raises :class:`PreconditionFailed` when another writer got there first. Clients retry a write
    whose response was lost, and the retry of one that did land fails its condition: so a failed
    condition on an object that now holds exactly ``data`` (which names this writer) is this write.
    """
    objects = backend(path)
    try:
        return objects.put(path, data, version)
    except PreconditionFailed:
        current, landed = objects.get(path)
        if current == data and landed:
            log.info("%s already holds this write (a retried write whose first response was lost)",
                     fs.display(path))
            return landed
        raise


def delete(path: str, version: str) -> bool:
    """Delete ``path`` only if it still has ``version``; whether it was deleted."""
    return backend(path).delete(path, version)
