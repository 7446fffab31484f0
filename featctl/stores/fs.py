"""Where a store lives: a local folder, or an object-store URI handled by a pyarrow filesystem.

Paths stay plain strings everywhere. A local path (or ``file://`` URI) goes through ``os`` exactly as
before, so local stores keep fsync + rename and the ``flock`` writer lock. A URI such as
``s3://bucket/prefix`` or ``gs://bucket/prefix`` is resolved with ``pyarrow.fs.FileSystem.from_uri``;
query parameters (``?endpoint_override=host:port&scheme=http``) stay at the end of every joined path,
and the filesystem is built once per bucket and query. With ``STORAGE_EMULATOR_HOST`` set, ``gs://``
goes to that emulator, anonymously. Object writes are single PUTs: an object
appears whole or not at all, so no temporary name is needed.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import posixpath
import shutil
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from featctl.errors import StoreError

log = logging.getLogger(__name__)

KNOWN_SCHEMES = ("s3", "gs", "gcs")
# Settings that change which endpoint or identity a client talks to: clients are cached per their values.
_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_REGION",
        "AWS_DEFAULT_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT", "STORAGE_EMULATOR_HOST")


def env_key() -> tuple[str | None, ...]:
    return tuple(os.environ.get(name) for name in _ENV)


def scheme(path: str) -> str:
    """The URI scheme of ``path`` (lower case), or ``""`` for a plain local path."""
    head, sep, _ = str(path).partition("://")
    return head.lower() if sep and head.isidentifier() else ""


def is_remote(path: str) -> bool:
    return scheme(path) not in ("", "file")


def normalize_root(root: str) -> str:
    """A store root as featctl keeps it: ``file://`` becomes a local path; unknown schemes are refused."""
    kind = scheme(root)
    if kind == "file":
        parts = urlsplit(root)
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"store URI {root} names host '{parts.netloc}'; file:// stores are local: "
                             f"use file:///path (three slashes) or a plain path")
        return unquote(parts.path)
    if kind and kind not in KNOWN_SCHEMES:
        raise StoreError(
            f"unknown store scheme '{kind}://' in {root}; use a local path, s3://bucket/prefix or gs://bucket/prefix"
        )
    if kind and not urlsplit(root).netloc:
        raise StoreError(f"store URI {root} names no bucket; use {kind}://bucket/prefix")
    if kind in ("gs", "gcs") and "endpoint_override" in query(root):
        # pyarrow would send the parts there and google-cloud-storage the manifest and lease elsewhere
        raise StoreError(f"{display(root)}: a gs:// store takes its endpoint from STORAGE_EMULATOR_HOST, not "
                         "?endpoint_override in the URI; drop the query and set the variable")
    return root


def _split(path: str) -> tuple[str, str]:
    base, _, query = path.partition("?")
    return base, query


def join(base: str, *parts: str) -> str:
    """``os.path.join`` for local paths; for a URI, a ``/`` join that keeps its query at the end."""
    if not is_remote(base):
        return os.path.join(base, *parts)
    head, query = _split(base)
    joined = posixpath.join(head.rstrip("/"), *parts)
    return f"{joined}?{query}" if query else joined


def display(path: str) -> str:
    """A path for messages: a URI without its query (which may hold an endpoint or options)."""
    return _split(path)[0] if is_remote(path) else path


def absolute(path: str) -> str:
    return path if is_remote(path) else os.path.abspath(path)


def bucket_and_key(path: str) -> tuple[str, str]:
    """``s3://bucket/a/b?x=1`` → ``("bucket", "a/b")``."""
    parts = urlsplit(_split(path)[0])
    return parts.netloc, parts.path.lstrip("/")


def query(path: str) -> dict[str, str]:
    return dict(parse_qsl(_split(path)[1]))


def _emulated_gcs(prefix: str) -> pafs.FileSystem | None:
    """An anonymous GcsFileSystem on ``STORAGE_EMULATOR_HOST`` for a ``gs://`` prefix naming no endpoint."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if scheme(prefix) not in ("gs", "gcs") or not emulator or "endpoint_override" in query(prefix):
        return None
    parts = urlsplit(emulator if "://" in emulator else f"http://{emulator}")
    return pafs.GcsFileSystem(endpoint_override=parts.netloc, scheme=parts.scheme or "http", anonymous=True,
                              retry_time_limit=timedelta(seconds=30))


@functools.lru_cache(maxsize=32)
def _filesystem(prefix: str, env: tuple[str | None, ...]) -> pafs.FileSystem:
    try:
        return _emulated_gcs(prefix) or pafs.FileSystem.from_uri(prefix)[0]
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise StoreError(f"cannot open the object store for {display(prefix)}: {exc}") from None


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem that holds ``path`` and the path inside it (``bucket/key``)."""
    head, query_text = _split(path)
    parts = urlsplit(head)
    prefix = f"{parts.scheme}://{parts.netloc}/" + (f"?{query_text}" if query_text else "")
    return _filesystem(prefix, env_key()), f"{parts.netloc}{parts.path}".rstrip("/")


def remote_error(exc: OSError, path: str) -> StoreError:
    """One line for a pyarrow error on an object store, with what to do about it."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "ACCESS_DENIED" in text or "AccessDenied" in text or "403" in text:
        return StoreError(f"access denied to {display(path)} ({text}); check the credentials and the bucket policy")
    if "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text:
        return StoreError(f"the bucket of {display(path)} does not exist ({text}); create it or fix --store")
    return StoreError(f"object store error on {display(path)}: {text}; check the endpoint, network and credentials")


def _infos(path: str, selector: bool, recursive: bool = False) -> list[pafs.FileInfo]:
    fs, key = resolve(path)
    try:
        if selector:
            return fs.get_file_info(pafs.FileSelector(key, allow_not_found=True, recursive=recursive))
        return [fs.get_file_info(key)]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise remote_error(exc, path) from None


def _info(path: str) -> pafs.FileInfo:
    return _infos(path, selector=False)[0]


def isfile(path: str) -> bool:
    return _info(path).type == pafs.FileType.File if is_remote(path) else os.path.isfile(path)


def isdir(path: str) -> bool:
    """Locally a folder; on an object store, a prefix with at least one object under it."""
    return _info(path).type == pafs.FileType.Directory if is_remote(path) else os.path.isdir(path)


def exists(path: str) -> bool:
    return _info(path).type != pafs.FileType.NotFound if is_remote(path) else os.path.exists(path)


def listdir(path: str) -> list[str]:
    """Names directly under ``path``; an empty list where there is nothing."""
    if not is_remote(path):
        return os.listdir(path) if os.path.isdir(path) else []
    if scheme(path) in ("gs", "gcs"):
        # pyarrow's GCS listing reports no "folders" (prefixes) unless marker objects exist: take the
        # first name under ``path`` of every object below it.
        _, key = resolve(path)
        infos = _infos(path, selector=True, recursive=True)
        return sorted({i.path[len(key):].lstrip("/").split("/", 1)[0] for i in infos} - {""})
    return [posixpath.basename(i.path) for i in _infos(path, selector=True)]


def list_mtimes(path: str) -> dict[str, float | None]:
    """Names directly under ``path`` with their modification time (UTC seconds; ``None`` when unknown)."""
    if not is_remote(path):
        return {name: os.path.getmtime(os.path.join(path, name)) for name in listdir(path)}
    infos = _infos(path, selector=True)
    return {posixpath.basename(i.path): i.mtime.timestamp() if i.mtime else None for i in infos}


def makedirs(path: str) -> None:
    """Create a local folder; object stores have no folders, so nothing to do there."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
    """Delete one file or object; one that is already gone is fine."""
    try:
        if is_remote(path):
            fs, key = resolve(path)
            fs.delete_file(key)
        else:
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if is_remote(path):
            raise remote_error(exc, path) from None
        raise


def rmtree(path: str) -> None:
    """Delete a folder (or every object under a prefix); errors are ignored, like ``shutil.rmtree``."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    fs, key = resolve(path)
    try:
        fs.delete_dir_contents(key, missing_dir_ok=True)
    except OSError as exc:
        log.warning("could not delete %s: %s", display(path), exc)


def getsize(path: str) -> int:
    if not is_remote(path):
        return os.path.getsize(path)
    return int(_info(path).size or 0)


def read_bytes(path: str) -> bytes:
    if not is_remote(path):
        with open(path, "rb") as fh:
            return fh.read()
    fs, key = resolve(path)
    with fs.open_input_stream(key) as fh:
        return fh.read()


def put_bytes(path: str, data: bytes) -> None:
    """Write one object whole (object stores only; local writes go through ``files``)."""
    fs, key = resolve(path)
    with fs.open_output_stream(key) as fh:
        fh.write(data)


def sha256(path: str) -> str:
    """The sha256 of a file or object, read as a stream."""
    digest = hashlib.sha256()
    if is_remote(path):
        fs, key = resolve(path)
        stream: Any = fs.open_input_stream(key)
    else:
        stream = open(path, "rb")  # noqa: SIM115  (closed by the with below)
    with stream as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def upload(local: str, path: str) -> None:
    """Copy a local file to an object, streamed."""
    fs, key = resolve(path)
    pafs.copy_files(local, key, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def read_table(path: str, columns: list[str] | None = None) -> pa.Table:
    if not is_remote(path):
        return pq.read_table(path, columns=columns)
    fs, key = resolve(path)
    return pq.read_table(key, columns=columns, filesystem=fs)


def parquet_file(path: str) -> pq.ParquetFile:
    """A Parquet file or object opened for reading, through the store's filesystem (never a bare URI)."""
    if not is_remote(path):
        return pq.ParquetFile(path)
    fs, key = resolve(path)
    return pq.ParquetFile(fs.open_input_file(key))


def parquet_rows(path: str) -> int:
    if not is_remote(path):
        return pq.ParquetFile(path).metadata.num_rows
    fs, key = resolve(path)
    with fs.open_input_file(key) as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def write_table(table: pa.Table, path: str, **options: Any) -> tuple[int, str]:
    """Stream one Parquet object to an object store (local writes go through ``files``); its size and sha256."""
    fs, key = resolve(path)
    with fs.open_output_stream(key) as out:
        sink = _Hashing(out)
        pq.write_table(table, pa.PythonFile(sink, mode="w"), **options)
    return sink.size, sink.digest.hexdigest()


class _Hashing:
    """A write-only stream that hashes and counts what it passes on."""

    def __init__(self, out: pa.NativeFile) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
