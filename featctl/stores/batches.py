"""Batches submitted to a paid batch API and not yet committed: ``<store>/batches/<set>/<state>.json``.

A state is written before its batch is created and removed only after its results are committed,
so whatever reads the store can tell which texts are already paid for and on their way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from featctl.errors import StoreError
from featctl.stores import fs
from featctl.stores.files import write_json_atomic


@dataclass(frozen=True)
class BatchState:
    """One submitted (or about to be submitted) batch, as recorded in the store."""

    path: str
    data: dict[str, Any]

    @property
    def batch_id(self) -> str | None:
        return self.data.get("batch_id")

    @property
    def recipe_hash(self) -> str:
        return self.data["recipe_hash"]

    def digests(self) -> set[str]:
        """Content hashes of the texts the batch carries."""
        return {p[0] for pieces in self.data["requests"].values() for p in pieces}

    def save(self, **changes: Any) -> BatchState:
        data = {**self.data, **changes}
        write_json_atomic(self.path, data)
        return BatchState(self.path, data)


def batch_folder(store_root: str, set_name: str) -> str:
    return fs.join(store_root, "batches", set_name)


def pending_batches(store_root: str, set_name: str) -> list[BatchState]:
    """The set's pending batches, oldest state file name first."""
    folder = batch_folder(store_root, set_name)
    if not fs.isdir(folder):
        return []
    out = []
    for name in sorted(fs.listdir(folder)):
        if name.endswith(".json"):
            path = fs.join(folder, name)
            try:
                out.append(BatchState(path, json.loads(fs.read_bytes(path).decode("utf-8"))))
            except (OSError, ValueError) as exc:
                raise StoreError(f"cannot read pending batch {fs.display(path)} ({exc}); restore or delete it") \
                    from None
    return out
