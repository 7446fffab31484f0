"""FAISS indexes in the store: ``indexes/<set>/`` holds the index, its row → id map and ``index.json``.

A folder is written whole under a temporary name and renamed into place, so a reader sees the old
index or the new one, never half of one. ``index.json`` records the fingerprint of the set's parts
at build time: when the set changes, the index knows it is stale.

On an object store, where folders cannot be renamed, the index and id map are uploaded under names
that carry a fresh token, and ``index.json``, written last in one PUT, names them under ``files``:
a reader sees the old generation or the new one, and the generation before stays for readers that
read ``index.json`` just before it was replaced. FAISS reads and writes bytes there
(``serialize_index`` / ``deserialize_index``), never a local file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featctl.errors import ConcurrentCommitError, StoreError
from featctl.stores import conditional, fs
from featctl.stores.feature_set import FeatureSet
from featctl.stores.files import fsync_dir, write_json_atomic

log = logging.getLogger(__name__)

_GENERATION_FILE = re.compile(r"^(index-[0-9a-f]+\.faiss|ids-[0-9a-f]+\.parquet)$")


def set_fingerprint(fs: FeatureSet) -> str:
    """A digest of the set's parts (files and checksums): it changes whenever the set does."""
    parts = [(p["file"], p["sha256"]) for p in fs.entry["parts"]]
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=16).hexdigest()


def index_folder(root: str, name: str) -> str:
    return fs.join(root, "indexes", name)


@dataclass
class LoadedIndex:
    """An index ready to search: search parameters applied, row ``r`` is ``ids[r]``."""

    index: Any
    ids: pa.Array
    hashes: pa.Array
    info: dict[str, Any]

    def stale(self, fs: FeatureSet) -> bool:
        return self.info.get("set_fingerprint") != set_fingerprint(fs)


def load_index(root: str, name: str) -> LoadedIndex | None:
    """The set's index, or ``None`` when none was built."""
    import faiss

    folder = index_folder(root, name)
    if not fs.isfile(fs.join(folder, "index.json")):
        return None
    try:
        info = json.loads(fs.read_bytes(fs.join(folder, "index.json")).decode("utf-8"))
        files = info.get("files", {"index": "index.faiss", "ids": "ids.parquet"})
        if fs.is_remote(folder):
            data = np.frombuffer(fs.read_bytes(fs.join(folder, files["index"])), dtype=np.uint8)
            index = faiss.deserialize_index(data)
        else:
            index = faiss.read_index(os.path.join(folder, files["index"]))
        table = fs.read_table(fs.join(folder, files["ids"]))
    except (OSError, ValueError, RuntimeError, pa.ArrowInvalid) as exc:
        raise StoreError(f"cannot read the index of set '{name}' in {fs.display(folder)} ({exc}); rebuild it with "
                         f"featctl index {name} --rebuild") from None
    if index.ntotal != table.num_rows:
        raise StoreError(f"the index of set '{name}' holds {index.ntotal} rows but its id map {table.num_rows}; "
                         f"rebuild it with featctl index {name} --rebuild")
    apply_search_params(index, info["kind"], info["params"])
    return LoadedIndex(index, table["id"].combine_chunks(), table["content_hash"].combine_chunks(), info)


def apply_search_params(index: Any, kind: str, params: dict[str, Any]) -> None:
    """Set efSearch (HNSW) or nprobe and k_factor (IVF-PQ with exact re-ranking) on a loaded index."""
    import faiss

    if kind == "hnsw":
        index.hnsw.efSearch = int(params["efSearch"])
    elif kind == "ivf-pq":
        refine = faiss.downcast_index(index)
        if isinstance(refine, faiss.IndexRefine):
            refine.k_factor = float(params["k_factor"])
            base = faiss.downcast_index(refine.base_index)
        else:
            base = refine
        faiss.extract_index_ivf(base).nprobe = int(params["nprobe"])


def save_index(root: str, name: str, index: Any, ids: pa.Array, hashes: pa.Array, info: dict[str, Any],
               check: Callable[[], None] | None = None) -> int:
    """Write the folder under a temporary name, then swap it in; returns the index's size in bytes.

    ``check`` (the store writer's :meth:`~featctl.stores.store.StoreWriter.check_lease`) runs before an
    object store's ``index.json`` is replaced.
    """
    import faiss

    if fs.is_remote(root):
        return _save_remote(root, name, index, ids, hashes, info, check)
    final = index_folder(root, name)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        faiss.write_index(index, os.path.join(tmp, "index.faiss"))
        size = os.path.getsize(os.path.join(tmp, "index.faiss"))
        row = pa.array(range(len(ids)), pa.int64())
        pq.write_table(pa.table({"row": row, "id": ids, "content_hash": hashes}), os.path.join(tmp, "ids.parquet"))
        write_json_atomic(os.path.join(tmp, "index.json"), {**info, "bytes": size})
        fsync_dir(tmp)
        old = None
        if os.path.isdir(final):
            old = os.path.join(parent, f".{name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(parent)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"cannot write the index of set '{name}' under {parent}: {exc.strerror or exc}") from None
    return size


def _save_remote(root: str, name: str, index: Any, ids: pa.Array, hashes: pa.Array, info: dict[str, Any],
                 check: Callable[[], None] | None) -> int:
    """Upload a new generation, then ``index.json`` naming it, then drop all but it and the one before.

    ``index.json`` is replaced only if it still has the version (ETag, generation) it had before the
    upload, after ``check`` (the writer's lease) passed, so a writer that lost its lease, or another
    index writer, cannot swap in its generation. The previous generation is kept for readers that
    loaded its ``index.json``.
    """
    import faiss

    folder = index_folder(root, name)
    meta = fs.join(folder, "index.json")
    current, etag = conditional.get(meta)
    keep = set(_generation(current).values())
    token = secrets.token_hex(4)
    files = {"index": f"index-{token}.faiss", "ids": f"ids-{token}.parquet"}
    try:
        data = faiss.serialize_index(index).tobytes()
        fs.put_bytes(fs.join(folder, files["index"]), data)
        row = pa.array(range(len(ids)), pa.int64())
        fs.write_table(pa.table({"row": row, "id": ids, "content_hash": hashes}), fs.join(folder, files["ids"]))
        if check is not None:
            check()
        text = json.dumps({**info, "bytes": len(data), "files": files}, indent=2, sort_keys=True, ensure_ascii=False)
        try:
            conditional.put(meta, (text + "\n").encode("utf-8"), etag)
        except conditional.PreconditionFailed:
            raise ConcurrentCommitError(fs.display(meta)) from None
        keep |= set(files.values())
        for old in fs.listdir(folder):
            if _GENERATION_FILE.match(old) and old not in keep:
                fs.remove(fs.join(folder, old))
    except OSError as exc:
        raise StoreError(f"cannot write the index of set '{name}' under {fs.display(folder)}: {exc}") from None
    return len(data)


def _generation(data: bytes | None) -> dict[str, str]:
    """The files an ``index.json`` names (none when there is none or it cannot be read)."""
    try:
        info = json.loads(data or b"{}")
        return dict(info.get("files", {})) if isinstance(info, dict) else {}
    except (ValueError, TypeError):
        return {}
