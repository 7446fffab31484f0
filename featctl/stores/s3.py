"""Conditional writes on S3 (and S3-compatible servers), the one thing pyarrow's S3FileSystem lacks.

The S3 backend of :mod:`featctl.stores.conditional`; versions are ETags.

pyarrow reads and writes every object of an ``s3://`` store; boto3 does only what needs an ETag:
reading the manifest with its ETag, replacing it with ``If-Match`` (or creating it with
``If-None-Match: *``), and the lease object behind the writer lock (see :mod:`featctl.stores.lease`).
The client is configured like pyarrow: ``AWS_ENDPOINT_URL`` / ``AWS_REGION`` / credentials from the
environment or profile, or ``endpoint_override``, ``scheme``, ``region``, ``access_key``, ``secret_key``
and ``session_token`` in the URI's query.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from featctl.errors import StoreError
from featctl.stores import fs
from featctl.stores.conditional import PreconditionFailed

log = logging.getLogger(__name__)


def _botocore() -> Any:
    try:
        import botocore.exceptions
    except ImportError:
        raise StoreError("s3:// stores need boto3: pip install 'featctl[s3]'") from None
    return botocore.exceptions


@functools.lru_cache(maxsize=16)
def _client(query: tuple[tuple[str, str], ...], env: tuple[str | None, ...]) -> Any:
    _botocore()
    import boto3
    from botocore.config import Config

    options = dict(query)
    kwargs: dict[str, Any] = {}
    if "endpoint_override" in options:
        endpoint = options["endpoint_override"]
        kwargs["endpoint_url"] = endpoint if "://" in endpoint else f"{options.get('scheme', 'https')}://{endpoint}"
    if "region" in options:
        kwargs["region_name"] = options["region"]
    # Credentials in the URI, as pyarrow reads them, win over the environment for both clients.
    for name, arg in (("access_key", "aws_access_key_id"), ("secret_key", "aws_secret_access_key"),
                      ("session_token", "aws_session_token")):
        if options.get(name):
            kwargs[arg] = options[name]
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client("s3", config=config, **kwargs)


def client(path: str) -> Any:
    return _client(tuple(sorted(fs.query(path).items())), fs.env_key())


def describe(exc: BaseException, path: str) -> StoreError:
    """One line for what went wrong talking to the object store behind ``path``."""
    errors = _botocore()
    where = fs.display(path)
    bucket, _ = fs.bucket_and_key(path)
    if isinstance(exc, errors.NoCredentialsError):
        return StoreError(f"no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                          "(or AWS_PROFILE)")
    if isinstance(exc, (errors.EndpointConnectionError, errors.ConnectTimeoutError)):
        return StoreError(f"cannot reach the object store for {where} ({exc}); check AWS_ENDPOINT_URL "
                          "or the network")
    if isinstance(exc, errors.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            return StoreError(f"bucket '{bucket}' does not exist ({where}); create it or fix --store")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StoreError(f"access denied to {where} ({code}); check the credentials and the bucket policy")
        return StoreError(f"object store error on {where}: {code} {exc}")
    return StoreError(f"object store error on {where}: {exc}")


def _errors() -> tuple[type[BaseException], ...]:
    errors = _botocore()
    return (errors.BotoCoreError, errors.ClientError)


def check_bucket(root: str) -> None:
    """Fail with one clear line when the bucket is missing, unreachable or not ours to use."""
    bucket, _ = fs.bucket_and_key(root)
    try:
        client(root).head_bucket(Bucket=bucket)
    except _errors() as exc:
        raise describe(exc, root) from None


def get(path: str) -> tuple[bytes | None, str | None]:
    """An object's bytes and ETag, or ``(None, None)`` when it does not exist."""
    bucket, key = fs.bucket_and_key(path)
    errors = _botocore()
    try:
        reply = client(path).get_object(Bucket=bucket, Key=key)
        return reply["Body"].read(), reply["ETag"]
    except errors.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None, None
        raise describe(exc, path) from None
    except errors.BotoCoreError as exc:
        raise describe(exc, path) from None


def put(path: str, data: bytes, etag: str | None) -> str:
    """Write ``path`` only if it still has ``etag`` (``None``: only if it does not exist); the new ETag.

    Raises :class:`PreconditionFailed` when the condition fails; :func:`featctl.stores.conditional.put`
    adopts a retried PUT (boto3 retries one whose response was lost) that had landed.
    """
    bucket, key = fs.bucket_and_key(path)
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    errors = _botocore()
    try:
        return client(path).put_object(Bucket=bucket, Key=key, Body=data, **condition)["ETag"]
    except errors.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        # 412 when the condition fails; 409 when two conditional writes race; NoSuchKey for If-Match on
        # an object that was deleted in between.
        if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"):
            raise PreconditionFailed(fs.display(path)) from None
        raise describe(exc, path) from None
    except errors.BotoCoreError as exc:
        raise describe(exc, path) from None


def delete(path: str, etag: str) -> bool:
    """Delete ``path`` only if it still has ``etag``; whether it was deleted."""
    bucket, key = fs.bucket_and_key(path)
    errors = _botocore()
    try:
        client(path).delete_object(Bucket=bucket, Key=key, IfMatch=etag)
        return True
    except errors.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "NoSuchKey", "412", "404"):
            return False
        raise describe(exc, path) from None
    except errors.BotoCoreError as exc:
        raise describe(exc, path) from None
