"""The store: manifest, parts, orphans, checksums, the writer lock, the read API."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from featctl import EmbedConfig, SourceSpec, embed, open_store
from featctl.errors import IdTypeError, LockTimeoutError, StoreError, UnknownSetError
from featctl.stores.lock import StoreLock
from tests.conftest import read_manifest


def _embed(catalogue: Path, store: Path, **kwargs):
    return embed(EmbedConfig(source=SourceSpec(path=str(catalogue)), store=str(store), text="{name}. {summary}",
                             **kwargs))


def test_layout_matches_the_contract(catalogue: Path, store: Path) -> None:
    _embed(catalogue, store, part_rows=4)
    manifest = read_manifest(store)
    entry = manifest["sets"]["item_text"]
    assert manifest["format"] == 1
    assert {"entity", "modality", "encoder", "recipe", "recipe_hash", "dim", "dtype", "source", "parts"} <= set(entry)
    assert entry["recipe"]["model"] == "sentence-transformers/all-MiniLM-L6-v2" and entry["dim"] == 384
    assert [p["rows"] for p in entry["parts"]] == [4, 2]
    part = pa.parquet.read_table(store / "features" / "item_text" / entry["parts"][0]["file"])
    assert part.schema.names == ["id", "content_hash", "vector", "error"]
    assert part.schema.field("vector").type == pa.list_(pa.float32(), 384)
    assert open_store(store).feature_set("item_text").verify() == []


def test_damaged_part_is_reported(catalogue: Path, store: Path) -> None:
    _embed(catalogue, store)
    part = next((store / "features" / "item_text").glob("part-*.parquet"))
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    assert open_store(store).feature_set("item_text").verify() == [f"{part.name}: checksum mismatch"]


def test_uncommitted_parts_are_invisible_and_cleaned_by_the_next_writer(catalogue: Path, store: Path) -> None:
    _embed(catalogue, store)
    folder = store / "features" / "item_text"
    committed = next(folder.glob("part-*.parquet"))
    orphan = folder / "part-000099.parquet"
    orphan.write_bytes(committed.read_bytes())
    (folder / ".part-000100.parquet.tmp-1").write_bytes(b"half a part")
    assert open_store(store).feature_set("item_text").summary()["stored_rows"] == 6
    assert _embed(catalogue, store).encoded == 0
    assert sorted(p.name for p in folder.iterdir()) == [committed.name]


def test_vectors_api_checks_id_types(catalogue: Path, store: Path) -> None:
    _embed(catalogue, store)
    fs = open_store(store).feature_set("item_text")
    matrix, mask = fs.vectors(["1", "2", "6"])  # strings that are canonical ints are matched as ints
    assert mask.tolist() == [True, True, False] and matrix.shape == (3, 384)
    with pytest.raises(IdTypeError, match="stores int64 ids"):
        fs.vectors(["abc"])


def test_unknown_set_and_bad_manifest(catalogue: Path, store: Path) -> None:
    _embed(catalogue, store)
    with pytest.raises(UnknownSetError, match="no feature set named 'nope'; sets in this store: item_text"):
        open_store(store).feature_set("nope")
    (store / "manifest.json").write_text('{"format": 99, "sets": {}}')
    with pytest.raises(StoreError, match="store format 99"):
        open_store(store).sets()


def test_open_store_uses_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEATCTL_STORE", str(tmp_path / "elsewhere"))
    assert open_store().root == str(tmp_path / "elsewhere")


def test_second_writer_fails_after_timeout_naming_the_holder(catalogue: Path, store: Path) -> None:
    store.mkdir()
    with StoreLock(str(store / ".lock"), timeout=0):
        started = time.monotonic()
        holder = rf"locked by another writer \(pid {os.getpid()} on .*--lock-timeout"
        with pytest.raises(LockTimeoutError, match=holder):
            _embed(catalogue, store, lock_timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 5
    assert not (store / "manifest.json").exists()


def test_second_writer_waits_for_the_lock(catalogue: Path, store: Path) -> None:
    store.mkdir()
    lock = StoreLock(str(store / ".lock"), timeout=0)
    lock.acquire()
    releaser = threading.Timer(1.0, lock.release)
    releaser.start()
    started = time.monotonic()
    assert _embed(catalogue, store, lock_timeout=30).encoded == 6
    assert time.monotonic() - started >= 0.9
    releaser.join()
