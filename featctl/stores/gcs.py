"""Conditional writes on Google Cloud Storage: the GCS backend of :mod:`featctl.stores.conditional`.

pyarrow's GcsFileSystem reads and writes every object of a ``gs://`` store; google-cloud-storage
does only what needs a generation: reading the manifest, ``index.json`` and the lease with their
generation, replacing them with ``ifGenerationMatch`` (``0`` to create), and deleting the lease with
it. Versions are generations, kept as strings. Credentials are Application Default Credentials
(``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``, the metadata server).
With ``STORAGE_EMULATOR_HOST=http://host:port`` both clients talk to that emulator anonymously.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from featctl.errors import StoreError
from featctl.stores import fs
from featctl.stores.conditional import PreconditionFailed

_TIMEOUT = 60.0
_CHECK_SECONDS = 10.0  # how long the bucket check retries an unreachable server before its one line


def _api() -> Any:
    try:
        import google.api_core.exceptions
        import google.cloud.storage  # noqa: F401
    except ImportError:
        raise StoreError("gs:// stores need google-cloud-storage: pip install 'featctl[gcs]'") from None
    return google.api_core.exceptions


@functools.lru_cache(maxsize=8)
def _client(env: tuple[str | None, ...]) -> Any:
    _api()
    from google.cloud import storage

    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(credentials=AnonymousCredentials(), project=project or "featctl")
    return storage.Client(project=project)


def _blob(path: str) -> Any:
    bucket, key = fs.bucket_and_key(path)
    try:
        client = _client(fs.env_key())
    except Exception as exc:  # google.auth raises DefaultCredentialsError, among others
        raise describe(exc, path) from None
    return client.bucket(bucket).blob(key)


def describe(exc: BaseException, path: str) -> StoreError:
    """One line for what went wrong talking to the object store behind ``path``."""
    errors = _api()
    where = fs.display(path)
    bucket, _ = fs.bucket_and_key(path)
    name = type(exc).__name__
    if name == "DefaultCredentialsError":
        return StoreError(f"no credentials for {where}: set GOOGLE_APPLICATION_CREDENTIALS or run "
                          "'gcloud auth application-default login' (or STORAGE_EMULATOR_HOST for an emulator)")
    if isinstance(exc, (errors.Forbidden, errors.Unauthorized)):
        return StoreError(f"access denied to {where} ({exc.code}); check the credentials and the bucket's IAM")
    if isinstance(exc, errors.NotFound):
        return StoreError(f"bucket '{bucket}' does not exist ({where}); create it or fix --store")
    if isinstance(exc, errors.GoogleAPICallError):
        return StoreError(f"object store error on {where}: {exc.code} {exc.message}")
    if isinstance(exc, (ConnectionError, OSError, errors.RetryError)) or "Connection" in name:
        return StoreError(f"cannot reach the object store for {where} ({name}); check STORAGE_EMULATOR_HOST "
                          "or the network")
    return StoreError(f"object store error on {where}: {name}: {exc}")


def check_bucket(root: str) -> None:
    """Fail with one clear line when the bucket is missing, unreachable or not ours to use."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    bucket, _ = fs.bucket_and_key(root)
    try:
        found = _client(fs.env_key()).lookup_bucket(bucket, timeout=_TIMEOUT,
                                                    retry=DEFAULT_RETRY.with_timeout(_CHECK_SECONDS))
    except StoreError:
        raise
    except Exception as exc:
        raise describe(exc, root) from None
    if found is None:
        raise StoreError(f"bucket '{bucket}' does not exist ({fs.display(root)}); create it or fix --store")


def get(path: str) -> tuple[bytes | None, str | None]:
    """An object's bytes and generation, or ``(None, None)`` when it does not exist."""
    errors = _api()
    blob = _blob(path)
    try:
        data = blob.download_as_bytes(timeout=_TIMEOUT)
        generation = blob.generation
        if generation is None:  # a server that sent no x-goog-generation: the data at a known one
            blob.reload(timeout=_TIMEOUT)
            generation = blob.generation
            data = blob.download_as_bytes(timeout=_TIMEOUT, if_generation_match=generation)
    except errors.NotFound:
        return None, None
    except Exception as exc:
        raise describe(exc, path) from None
    return data, str(generation)


def put(path: str, data: bytes, version: str | None) -> str:
    """Write ``path`` only if it still has generation ``version`` (``None``: only if absent); the new one.

    Raises :class:`PreconditionFailed` when the condition fails (the client retries conditional
    uploads; :func:`featctl.stores.conditional.put` adopts one that had landed).
    """
    errors = _api()
    blob = _blob(path)
    try:
        blob.upload_from_string(data, content_type="application/json", timeout=_TIMEOUT,
                                if_generation_match=int(version) if version else 0)
    except (errors.PreconditionFailed, errors.NotFound, errors.Conflict):
        raise PreconditionFailed(fs.display(path)) from None
    except Exception as exc:
        raise describe(exc, path) from None
    return str(blob.generation)


def delete(path: str, version: str) -> bool:
    """Delete ``path`` only if it still has generation ``version``; whether it was deleted."""
    errors = _api()
    blob = _blob(path)
    try:
        blob.delete(if_generation_match=int(version), timeout=_TIMEOUT)
        return True
    except (errors.PreconditionFailed, errors.NotFound):
        return False
    except Exception as exc:
        raise describe(exc, path) from None
