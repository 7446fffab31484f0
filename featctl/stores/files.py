"""Crash-safe file primitives: write to a temporary name, fsync, rename, fsync the folder.

On an object store (a URI path, see :mod:`featctl.stores.fs`) one PUT is already all or nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from typing import Any

from featctl.stores import fs


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``path`` whole or not at all; a failure leaves no temporary file and names ``path``."""
    if fs.is_remote(path):
        try:
            fs.put_bytes(path, data)
        except OSError as exc:
            raise OSError(exc.errno, str(exc), fs.display(path)) from None
        return
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise OSError(exc.errno, exc.strerror, path) from None
    fsync_dir(os.path.dirname(path) or ".")


def check_writable_file(path: str) -> None:
    """Raise OSError now, not after minutes of work, when ``path`` cannot be written as a file."""
    if os.path.isdir(path):
        raise OSError(errno.EISDIR, "is a folder, not a file", path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(errno.ENOENT, "no such folder for the file", path)
    if not os.access(folder, os.W_OK):
        raise OSError(errno.EACCES, "cannot write in its folder", path)


def commit_file(tmp: str, final: str) -> None:
    """Make a fully written temporary file durable under its final name."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(os.path.dirname(final) or ".")
