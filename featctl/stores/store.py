"""The feature store: ``manifest.json`` + Parquet parts per feature set + a writer lock.

Readers trust only the manifest; a part on disk that the manifest does not list (a crash between
writing a part and committing the manifest) is invisible, and the next writer deletes it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from featctl.errors import StoreError, UnknownSetError
from featctl.stores.feature_set import FeatureSet
from featctl.stores.files import commit_file, sha256_file, write_json_atomic
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
    """A store folder. Reading needs no lock; writing goes through :meth:`writer`."""

    def __init__(self, root: str) -> None:
        self.root = str(root)

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.root, "manifest.json")

    def exists(self) -> bool:
        return os.path.isfile(self.manifest_path)

    def load_manifest(self) -> dict[str, Any]:
        if not self.exists():
            return {"format": FORMAT_VERSION, "sets": {}}
        try:
            with open(self.manifest_path, encoding="utf-8") as fh:
                manifest = json.load(fh)
        except ValueError as exc:
            raise StoreError(f"{self.manifest_path} is not valid JSON ({exc}); restore it from a backup") from None
        if manifest.get("format") != FORMAT_VERSION:
            raise StoreError(
                f"{self.manifest_path} has store format {manifest.get('format')!r}; "
                f"this featctl reads format {FORMAT_VERSION}: upgrade featctl"
            )
        return manifest

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
    """The store at ``path``, else ``$FEATCTL_STORE``, else ``./featstore``."""
    return Store(str(path or os.environ.get("FEATCTL_STORE") or DEFAULT_STORE))


class StoreWriter:
    """Holds the lock; commits parts and manifest entries atomically."""

    def __init__(self, store: Store, lock_timeout: float) -> None:
        self.store = store
        self._lock = StoreLock(os.path.join(store.root, ".lock"), lock_timeout)
        self.manifest: dict[str, Any] = {}
        self._created = False

    def __enter__(self) -> StoreWriter:
        if os.path.exists(self.store.root) and not os.path.isdir(self.store.root):
            raise StoreError(f"store path {self.store.root} is a file, not a folder; pass another --store")
        self._created = not os.path.exists(self.store.root)
        try:
            os.makedirs(self.store.root, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store {self.store.root}: {exc.strerror}") from None
        self._lock.acquire()
        try:
            self.manifest = self.store.load_manifest()
            self._remove_orphans()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        if self._created and not self.store.exists():
            # A first run that failed before committing anything leaves no half-made store behind.
            shutil.rmtree(self.store.root, ignore_errors=True)

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
        folder = os.path.join(self.store.root, "features", name)
        os.makedirs(folder, exist_ok=True)
        previous = self.manifest["sets"].get(name, {})
        number = max(previous.get("next_part", 1), entry.get("next_part", 1))
        written = []
        for table in tables:
            filename = f"part-{number:06d}.parquet"
            final = os.path.join(folder, filename)
            tmp = os.path.join(folder, f".{filename}.tmp-{os.getpid()}")
            try:
                # Vectors barely compress and zstd would triple read times; ids and hashes do compress.
                pq.write_table(table, tmp, compression=_COMPRESSION, use_dictionary=["error"])
                commit_file(tmp, final)
            except OSError as exc:
                raise StoreError(f"cannot write {final}: {exc.strerror or exc}; earlier parts are kept") from None
            written.append({
                "file": filename, "rows": table.num_rows, "failed": table["vector"].null_count,
                "bytes": os.path.getsize(final), "sha256": sha256_file(final), "created_at": now(),
            })
            number += 1
        old_parts = previous.get("parts", []) if drop_old else []
        entry = dict(entry)
        entry["parts"] = ([] if drop_old else list(previous.get("parts", []))) + written
        entry["next_part"] = number
        entry["updated_at"] = now()
        entry.setdefault("created_at", previous.get("created_at", entry["updated_at"]))
        manifest = copy.deepcopy(self.manifest)
        manifest["sets"][name] = entry
        try:
            write_json_atomic(self.store.manifest_path, manifest)
        except OSError as exc:
            raise StoreError(f"cannot write {self.store.manifest_path}: {exc.strerror or exc}") from None
        self.manifest = manifest
        for part in old_parts:
            try:
                os.remove(os.path.join(folder, part["file"]))
            except FileNotFoundError:
                pass
        return written

    def _remove_orphans(self) -> None:
        features = os.path.join(self.store.root, "features")
        if not os.path.isdir(features):
            return
        for name in os.listdir(features):
            listed = {p["file"] for p in self.manifest["sets"].get(name, {}).get("parts", [])}
            folder = os.path.join(features, name)
            for filename in os.listdir(folder):
                is_part = filename.startswith("part-") and filename.endswith(".parquet")
                if (is_part and filename not in listed) or ".tmp-" in filename:
                    log.info("removing uncommitted file %s/%s", name, filename)
                    os.remove(os.path.join(folder, filename))
