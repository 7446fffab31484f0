"""Helpers shared by the object-store tests (S3 on moto, GCS on fake-gcs-server)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from typer.testing import CliRunner

import featctl.cli.neighbors  # noqa: F401  (registers the command)
from featctl.cli import app
from featctl.stores.store import open_store
from tests.conftest import REPO

DATA = REPO / "data"
INTERACTIONS = str(DATA / "interactions.tsv")
ENTRY = {"entity": "item", "modality": "text", "encoder": "test", "dim": 4, "dtype": "float32",
         "id_type": "int64", "metric": "cosine", "recipe": {}, "recipe_hash": "x", "source": {}}
runner = CliRunner()


def cli(*args: object) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def error_line(result: Any) -> str:
    """The one ``error:`` line of a command that failed cleanly (exit 1, no exception escaping the CLI)."""
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def embed(store: str, *extra: str) -> dict[str, Any]:
    result = cli("embed", "--source", DATA / "anime.tsv", "--store", store, "--text", "{name}. {summary}",
                 "--encoder", "hash:v1", "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def table(ids: list[int]) -> pa.Table:
    from featctl.stores.feature_set import part_schema

    vectors = pa.array([[float(i)] * 4 for i in ids], pa.list_(pa.float32(), 4))
    return pa.table({"id": pa.array(ids, pa.int64()), "content_hash": [str(i) for i in ids], "vector": vectors,
                     "error": pa.nulls(len(ids), pa.string())}, schema=part_schema(pa.int64(), 4, "float32"))


def check_crashed_writers_orphan_is_removed(root: str, put: Callable[[str, bytes], None],
                                            listed: Callable[[str], list[str]], foreign: tuple[str, ...]) -> None:
    """A writer killed between uploading a part and committing it leaves exactly that part; the next
    writer, once the part is older than twice the lease (FEATCTL_LEASE_SECONDS=1), removes it and
    nothing else (``foreign``: keys featctl never wrote, relative to the bucket; ``root`` is ``x/``)."""
    store = open_store(root)
    with store.writer() as writer:
        writer.commit("a", ENTRY, [table([1])])
    for key in foreign:
        put(key, b"not featctl's")
    before = listed("x/")
    crashed = store.writer().__enter__()
    crashed._write_part(f"{root}/features/a", 2, table([2]))  # uploaded; then killed before the commit
    crashed._lock._stop.set()  # its renewals die with it; the lease is never released
    orphan = sorted(set(listed("x/")) - set(before) - {"x/.lock"})
    assert len(orphan) == 1 and orphan[0].startswith("x/features/a/part-000002-")
    time.sleep(2.2)  # past twice the lease: the part can no longer belong to a live writer
    with store.writer(lock_timeout=5):
        pass
    assert listed("x/") == before
    assert open_store(root).feature_set("a").verify() == []
