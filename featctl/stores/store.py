"""The feature store: ``manifest.json`` + Parquet parts per feature set + a writer lock.

Readers trust only the manifest; a part on disk that the manifest does not list (a crash between
writing a part and committing the manifest) is invisible, and the next writer deletes it.

The root may be a local folder or an object-store URI (:mod:`featctl.stores.fs`). Locally the
manifest is replaced by write, fsync, rename under an ``flock``. On ``s3://`` and ``gs://`` the
writer holds a lease (:mod:`featctl.stores.lease`) and replaces the manifest with a conditional
write (:mod:`featctl.stores.conditional`): only if it still has the version (S3 ETag, GCS generation)
it read when it started, or only if absent for a new store. A manifest committed by
anyone else in between makes the commit fail with :class:`ConcurrentCommitError` instead of being
overwritten. Parts on object stores carry a per-writer token in their names, so two writers can
never overwrite each other's parts.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from featctl.errors import ConcurrentCommitError, StoreError, UnknownSetError
from featctl.stores import conditional, fs
from featctl.stores.feature_set import FeatureSet
from featctl.stores.files import commit_file, write_json_atomic
from featctl.stores.lease import ObjectLease
from featctl.stores.lock import StoreLock

log = logging.getLogger(__name__)

DEFAULT_STORE = "featstore"
FORMAT_VERSION = 1
_COMPRESSION = {"id": "zstd", "content_hash": "zstd", "vector": "none", "error": "zstd"}
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_set_name(name: str) -> str:
    if not _SET_NAME.match(name):
        raise StoreError(
            f"invalid feature set name '{name}': use letters, digits, '_', '.' or '-' "
            "(start with a letter or digit, at most 128 characters)"
        )
    return name


class Store:
    """A store folder or object-store prefix. Reading needs no lock; writing goes through :meth:`writer`."""

    def __init__(self, root: str) -> None:
        self.root = fs.normalize_root(str(root))

    @property
    def remote(self) -> bool:
        return fs.is_remote(self.root)

    @property
    def manifest_path(self) -> str:
        return fs.join(self.root, "manifest.json")

    def check(self) -> None:
        """Fail with one line when an object store's bucket is missing or cannot be reached (writers)."""
        if conditional.writable(self.root):
            conditional.check_bucket(self.root)

    def exists(self) -> bool:
        if fs.scheme(self.root) == "s3":
            self.check()
        try:
            return fs.isfile(self.manifest_path)
        except (OSError, pa.ArrowException, StoreError) as exc:
            # A GCS bucket lookup needs more than read access, so readers look only after a failure, to
            # name a missing bucket, an unreachable endpoint or missing credentials in one line.
            self.check()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot read {fs.display(self.manifest_path)}: {exc}") from None

    def load_manifest(self) -> dict[str, Any]:
        """The manifest, read as any reader may: through the store's filesystem, no conditional client."""
        return self.load_manifest_versioned(versioned=False)[0]

    def load_manifest_versioned(self, versioned: bool = True) -> tuple[dict[str, Any], str | None]:
        """The manifest and, on an object store, its version (``None`` when it does not exist yet)."""
        where = fs.display(self.manifest_path)
        etag = None
        if versioned and conditional.writable(self.root):
            self.check()
            data, etag = conditional.get(self.manifest_path)
        elif not self.exists():
            data = None
        else:
            try:
                data = fs.read_bytes(self.manifest_path)
            except OSError as exc:
                raise StoreError(f"cannot read {where}: {exc}") from None
        if data is None:
            return {"format": FORMAT_VERSION, "sets": {}}, None
        try:
            manifest = json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise StoreError(f"{where} is not valid JSON ({exc}); restore it from a backup") from None
        if manifest.get("format") != FORMAT_VERSION:
            raise StoreError(
                f"{where} has store format {manifest.get('format')!r}; "
                f"this featctl reads format {FORMAT_VERSION}: upgrade featctl"
            )
        return manifest, etag

    def sets(self) -> list[str]:
        return sorted(self.load_manifest()["sets"])

    def feature_set(self, name: str) -> FeatureSet:
        sets = self.load_manifest()["sets"]
        if name not in sets:
            raise UnknownSetError(name, sets)
        return FeatureSet(self.root, name, sets[name])

    def writer(self, lock_timeout: float = 60.0) -> StoreWriter:
        return StoreWriter(self, lock_timeout)


def open_store(path: str | os.PathLike[str] | None = None) -> Store:
    """The store at ``path``, else ``$FEATCTL_STORE``, else ``./featstore``; a path or a URI."""
    return Store(str(path or os.environ.get("FEATCTL_STORE") or DEFAULT_STORE))


class WriterLock(Protocol):
    """One writer at a time: :class:`StoreLock` (``flock``) locally, :class:`ObjectLease` on object stores."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def check(self) -> None: ...


def _lock(root: str, timeout: float) -> WriterLock:
    if not fs.is_remote(root):
        return StoreLock(os.path.join(root, ".lock"), timeout)
    conditional.backend(root)  # one line for a scheme featctl cannot write
    return ObjectLease(fs.join(root, ".lock"), timeout)


class StoreWriter:
    """Holds the lock; commits parts and manifest entries atomically."""

    def __init__(self, store: Store, lock_timeout: float) -> None:
        self.store = store
        self._lock = _lock(store.root, lock_timeout)
        self.manifest: dict[str, Any] = {}
        self._etag: str | None = None
        self._created = False
        self._token = secrets.token_hex(4)
        self._written: list[str] = []  # objects this writer put on an object store (for a failed first run)

    def __enter__(self) -> StoreWriter:
        root = self.store.root
        if self.store.remote:
            self.store.check()
            self._created = not fs.isdir(root)
        else:
            if os.path.exists(root) and not os.path.isdir(root):
                raise StoreError(f"store path {root} is a file, not a folder; pass another --store")
            self._created = not os.path.exists(root)
            try:
                os.makedirs(root, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create store {root}: {exc.strerror}") from None
        self._lock.acquire()
        try:
            self.manifest, self._etag = self.store.load_manifest_versioned()
            orphans = self._orphans()
            if self.store.remote and (self._etag is not None or orphans):
                # The fence: a new generation of the manifest, written under this lease before anything
                # is deleted, so a writer that lost the lease (and still holds the old ETag) commits nothing.
                self._write_manifest(self.manifest)
            for path in orphans:
                log.info("removing uncommitted file %s", fs.display(path))
                fs.remove(path)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.store.remote and self._created and self._written and not self.store.exists():
                # A failed first run: remove what it uploaded, and only that (not the lease, nor
                # anything another writer or tool put under the prefix meanwhile).
                for path in self._written:
                    fs.remove(path)
        except (StoreError, OSError) as exc:
            log.warning("could not remove the uncommitted parts of %s: %s", fs.display(self.store.root), exc)
        finally:
            self._lock.release()
        if not self.store.remote and self._created and not self.store.exists():
            # A first run that failed before committing anything leaves no half-made store behind.
            fs.rmtree(self.store.root)

    def check_lease(self) -> None:
        """Raise :class:`~featctl.errors.LeaseLostError` when another writer took this one's lease over."""
        self._lock.check()

    def keep(self) -> None:
        """Keep a store this writer created even if nothing is committed (it holds pending batches)."""
        self._created = False

    def entry(self, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.manifest["sets"].get(name))

    def commit(
        self, name: str, entry: dict[str, Any], tables: Sequence[pa.Table], *, drop_old: bool = False
    ) -> list[dict[str, Any]]:
        """Write ``tables`` as new parts, then record them and ``entry`` in one manifest swap.

        With ``drop_old`` the set keeps only the new parts and the old files are deleted after
        the swap (compaction, ``--replace``).
        """
        check_set_name(name)
        folder = fs.join(self.store.root, "features", name)
        fs.makedirs(folder)
        previous = self.manifest["sets"].get(name, {})
        number = max(previous.get("next_part", 1), entry.get("next_part", 1))
        written = []
        for table in tables:
            written.append(self._write_part(folder, number, table))
            number += 1
        old_parts = previous.get("parts", []) if drop_old else []
        entry = dict(entry)
        entry["parts"] = ([] if drop_old else list(previous.get("parts", []))) + written
        entry["next_part"] = number
        entry["updated_at"] = now()
        entry.setdefault("created_at", previous.get("created_at", entry["updated_at"]))
        manifest = copy.deepcopy(self.manifest)
        manifest["sets"][name] = entry
        self._write_manifest(manifest)
        self.manifest = manifest
        for part in old_parts:
            fs.remove(fs.join(folder, part["file"]))
        return written

    def _write_part(self, folder: str, number: int, table: pa.Table) -> dict[str, Any]:
        # Vectors barely compress and zstd would triple read times; ids and hashes do compress.
        options: dict[str, Any] = {"compression": _COMPRESSION, "use_dictionary": ["error"]}
        if self.store.remote:
            filename = f"part-{number:06d}-{self._token}.parquet"
            final = fs.join(folder, filename)
            try:
                size, digest = fs.write_table(table, final, **options)
            except OSError as exc:
                raise StoreError(f"cannot write {fs.display(final)}: {exc}; earlier parts are kept") from None
            self._written.append(final)
        else:
            filename = f"part-{number:06d}.parquet"
            final = os.path.join(folder, filename)
            tmp = os.path.join(folder, f".{filename}.tmp-{os.getpid()}")
            try:
                pq.write_table(table, tmp, **options)
                commit_file(tmp, final)
            except OSError as exc:
                raise StoreError(f"cannot write {final}: {exc.strerror or exc}; earlier parts are kept") from None
            size, digest = os.path.getsize(final), fs.sha256(final)
        return {"file": filename, "rows": table.num_rows, "failed": table["vector"].null_count,
                "bytes": size, "sha256": digest, "created_at": now()}

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        path = self.store.manifest_path
        if not self.store.remote:
            try:
                write_json_atomic(path, manifest)
            except OSError as exc:
                raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
            return
        self._lock.check()
        manifest["generation"] = int(manifest.get("generation", 0)) + 1
        if isinstance(self._lock, ObjectLease):
            manifest["writer"] = self._lock.holder
        data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            self._etag = conditional.put(path, data, self._etag)
        except conditional.PreconditionFailed:
            raise ConcurrentCommitError(fs.display(path)) from None

    def _orphans(self) -> list[str]:
        """Part files the manifest does not list (and temporary files).

        On an object store a part is an orphan only once it is older than twice the lease: a younger one
        may belong to a writer that stalled past its lease and has not yet noticed it lost it.
        """
        features = fs.join(self.store.root, "features")
        if not fs.isdir(features):
            return []
        young = time.time() - 2 * self._lock.ttl if isinstance(self._lock, ObjectLease) else None
        found = []
        for name in fs.listdir(features):
            listed = {p["file"] for p in self.manifest["sets"].get(name, {}).get("parts", [])}
            folder = fs.join(features, name)
            for filename, mtime in fs.list_mtimes(folder).items():
                is_part = filename.startswith("part-") and filename.endswith(".parquet")
                if not ((is_part and filename not in listed) or ".tmp-" in filename):
                    continue
                if young is not None and (mtime is None or mtime > young):
                    log.info("keeping uncommitted %s/%s for now: it is younger than twice the lease", name, filename)
                    continue
                found.append(fs.join(folder, filename))
        return found
