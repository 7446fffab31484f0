"""FAISS indexes built from real stores: kinds, measured recall, incremental adds, staleness, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from featctl.cli import app
from featctl.errors import IndexBuildError
from featctl.pipeline.config import EmbedConfig
from featctl.pipeline.index_build import IndexConfig, build_index, choose_kind
from featctl.pipeline.runner import embed
from featctl.pipeline.sources import SourceSpec
from featctl.stores.feature_set import part_schema
from featctl.stores.indexes import load_index
from featctl.stores.store import open_store
from tests.conftest import CATALOGUE, HashEncoder, store_snapshot, write_tsv


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(2, n // 100), dim))
    points = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def write_set(store: Path, name: str, vectors: np.ndarray, ids: list[int] | None = None) -> None:
    n, dim = vectors.shape
    ids = ids if ids is not None else list(range(n))
    table = pa.table({"id": pa.array(ids, pa.int64()), "content_hash": [f"h{i}" for i in ids],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
                      "error": pa.array([None] * n, pa.string())}, schema=part_schema(pa.int64(), dim, "float32"))
    entry = {"entity": "item", "modality": "text", "encoder": "test", "recipe": {}, "recipe_hash": "x",
             "dtype": "float32", "id_type": "int64", "id_column": "id", "metric": "ip", "source": {}, "dim": dim}
    with open_store(store).writer() as writer:
        writer.commit(name, entry, [table])


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


def test_auto_chooses_by_size_and_memory() -> None:
    assert choose_kind(10_000, 384, 4 << 30) == "flat"
    assert choose_kind(150_000, 384, 4 << 30) == "hnsw"
    assert choose_kind(1_000_000, 384, 4 << 30) == "ivf-pq"
    assert choose_kind(150_000, 384, 100 << 20) == "ivf-pq"  # the HNSW graph would not fit 100 MB


def test_flat_index_of_an_embedded_set(catalogue: Path, store: Path, hash_encoder: type[HashEncoder]) -> None:
    embed(EmbedConfig(source=SourceSpec(str(catalogue)), store=str(store), encoder="hash:x"))
    result = build_index(IndexConfig(set="item_text", store=str(store)))
    assert (result.action, result.info["kind"], result.info["rows"], result.info["recall_at_10"]) == (
        "built", "flat", 6, 1.0)
    folder = store / "indexes" / "item_text"
    assert sorted(p.name for p in folder.iterdir()) == ["ids.parquet", "index.faiss", "index.json"]
    info = json.loads((folder / "index.json").read_text())
    assert {"kind", "params", "recall_at_10", "build_seconds", "bytes", "set_fingerprint"} <= set(info)
    loaded = load_index(str(store), "item_text")
    table = open_store(store).feature_set("item_text").to_arrow()
    assert loaded.ids.to_pylist() == table["id"].to_pylist() == [r[0] for r in CATALOGUE]
    vectors = np.stack(table["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)
    assert loaded.info["metric"] == "l2"  # the hash encoder does not normalise
    distances, rows = loaded.index.search(vectors, 3)
    squared = ((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(rows, np.argsort(squared, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(distances, np.sort(squared, axis=1)[:, :3], rtol=1e-4, atol=1e-6)
    assert build_index(IndexConfig(set="item_text", store=str(store))).action == "up to date"


@pytest.mark.parametrize("kind", ["hnsw", "ivf-pq"])
def test_approximate_kinds_reach_the_target_recall(tmp_path: Path, kind: str) -> None:
    everything = clustered(6_300, 32)
    vectors, queries = everything[:6_000], everything[6_000:]  # held out, from the same clusters
    write_set(tmp_path / "s", "items", vectors)
    info = build_index(IndexConfig(set="items", store=str(tmp_path / "s"), kind=kind)).info
    assert info["kind"] == kind and info["recall_at_10"] >= 0.95 and info["recall_queries"] == 500
    loaded = load_index(str(tmp_path / "s"), "items")
    found = loaded.ids.take(pa.array(loaded.index.search(queries, 10)[1].reshape(-1))).to_numpy().reshape(-1, 10)
    truth = exact_top(vectors, queries)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.9, (kind, recall, info["params"])
    tuned = "efSearch" if kind == "hnsw" else "nprobe"
    assert loaded.info["params"][tuned] == info["params"][tuned]


def test_new_rows_are_added_and_changed_rows_rebuild(tmp_path: Path, hash_encoder: type[HashEncoder]) -> None:
    rows = [list(r) for r in CATALOGUE]
    source = write_tsv(tmp_path / "items.tsv", ["id", "name", "tags", "summary"], rows)
    store = str(tmp_path / "s")
    embed(EmbedConfig(source=SourceSpec(str(source)), store=store, encoder="hash:x"))
    assert build_index(IndexConfig(set="item_text", store=store, kind="hnsw")).info["rows"] == 6
    write_tsv(source, ["id", "name", "tags", "summary"], rows + [[8, "New", "x", "A new story."]])
    embed(EmbedConfig(source=SourceSpec(str(source)), store=store, encoder="hash:x"))
    fs = open_store(store).feature_set("item_text")
    assert load_index(store, "item_text").stale(fs)
    added = build_index(IndexConfig(set="item_text", store=store))
    assert (added.action, added.info["kind"], added.info["rows"], added.info["added_rows"]) == ("added", "hnsw", 7, 1)
    assert load_index(store, "item_text").ids.to_pylist() == [1, 2, 3, 4, 5, 7, 8]
    assert not load_index(store, "item_text").stale(fs)
    rows[0][3] = "Rewritten."
    write_tsv(source, ["id", "name", "tags", "summary"], rows + [[8, "New", "x", "A new story."]])
    embed(EmbedConfig(source=SourceSpec(str(source)), store=store, encoder="hash:x"))
    rebuilt = build_index(IndexConfig(set="item_text", store=store))
    assert (rebuilt.action, rebuilt.info["rows"], rebuilt.info["added_rows"]) == ("built", 7, 0)
    assert rebuilt.info["kind"] == "flat"  # auto again: a rebuild chooses afresh


def test_non_finite_vectors_are_left_out_and_counted(tmp_path: Path) -> None:
    vectors = clustered(50, 8)
    vectors[[3, 7]] = np.nan
    write_set(tmp_path / "s", "learned", vectors)
    info = build_index(IndexConfig(set="learned", store=str(tmp_path / "s"))).info
    assert (info["rows"], info["excluded_nonfinite"]) == (48, 2)
    assert 3 not in load_index(str(tmp_path / "s"), "learned").ids.to_pylist()


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, catalogue: Path, store: Path,
                                                  hash_encoder: type[HashEncoder]) -> None:
    embed(EmbedConfig(source=SourceSpec(str(catalogue)), store=str(store), encoder="hash:x"))
    before = store_snapshot(store)
    cases = [
        (["item_text", "--kind", "annoy"], "unknown --kind 'annoy'; use one of auto, flat, hnsw, ivf-pq"),
        (["item_text", "--memory", "lots"], "cannot read --memory 'lots'; write e.g. 4GB or 512MB"),
        (["item_text", "--kind", "ivf-pq"], "an ivf-pq index needs at least 1,000 vectors"),
        (["nope"], "no feature set named 'nope'"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["index", *args, "--store", str(store)])
        assert result.exit_code == 1 and result.stderr.startswith("error: ") and message in result.stderr, (
            args, result.output)
        assert result.stderr.count("\n") == 1
    assert store_snapshot(store) == before
    with pytest.raises(IndexBuildError, match="--recall must be in"):
        IndexConfig(set="x", target_recall=1.5)


def test_cli_reports_the_index(catalogue: Path, store: Path, hash_encoder: type[HashEncoder]) -> None:
    embed(EmbedConfig(source=SourceSpec(str(catalogue)), store=str(store), encoder="hash:x"))
    out = CliRunner().invoke(app, ["index", "item_text", "--store", str(store)])
    assert out.exit_code == 0 and out.stdout.startswith("item_text: index built — flat (exact) over 6 vectors, "
                                                        "exact search, ")
    again = json.loads(CliRunner().invoke(app, ["index", "item_text", "--store", str(store), "--json"]).stdout)
    assert again["action"] == "up to date" and again["kind"] == "flat"
    assert pq.read_table(store / "indexes" / "item_text" / "ids.parquet").column_names == ["row", "id", "content_hash"]
