"""``neighbors``: answers checked against brute force over the stored vectors, on real stores."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featctl.errors import (
    IdTypeError,
    IndexRequiredError,
    NeighborsInputError,
    QueryEncoderError,
    UnknownColumnError,
    UnknownIdError,
)
from featctl.pipeline import neighbors as nb
from featctl.pipeline.config import EmbedConfig
from featctl.pipeline.neighbors import NeighborsConfig, neighbors
from featctl.pipeline.runner import embed
from featctl.pipeline.sources import SourceSpec
from featctl.stores.feature_set import part_schema, vector_matrix
from featctl.stores.store import open_store
from tests.conftest import CATALOGUE, hash_vector, write_tsv

LONG = " It is a long description, far longer than a name or a list of tags, so it is never shown."
ITEMS = [[i, name, tags, summary + LONG] for i, name, tags, summary in CATALOGUE] + [
    [8, "Signal Lost", "sci-fi,mystery", "A radio operator hears a voice from a ship lost fifty years ago."],
    [9, "Paper Moon Bakery", "slice of life,cooking", "Two sisters bake through a winter in a snowed-in town."],
    [10, "Steel Horizon", "mecha,space", "A salvage crew wakes an old war machine drifting near Jupiter."],
]


@pytest.fixture
def items(tmp_path: Path, hash_encoder: Any) -> dict[str, Path]:
    """A catalogue embedded twice with the (fast) hash test encoder: item_text and item_other."""
    catalogue = write_tsv(tmp_path / "items.tsv", ["id", "name", "tags", "summary"], ITEMS)
    store = tmp_path / "store"
    embed(EmbedConfig(source=SourceSpec(str(catalogue)), store=str(store), encoder="hash:x"))
    embed(EmbedConfig(source=SourceSpec(str(catalogue)), store=str(store), encoder="hash:y", name="item_other",
                      text="{name} {tags}"))
    return {"store": store, "catalogue": catalogue}


def stored(store: Path, name: str) -> tuple[list[Any], np.ndarray]:
    table = open_store(store).feature_set(name).to_arrow()
    return table["id"].to_pylist(), vector_matrix(table["vector"], open_store(store).feature_set(name).dim)


def brute(store: Path, name: str, query: np.ndarray, k: int, skip: Any = None) -> list[tuple[Any, float]]:
    """The k nearest (id, score) by numpy: inner product for ip sets, Euclidean distance for l2 sets."""
    ids, matrix = stored(store, name)
    finite = np.isfinite(matrix).all(axis=1)
    ids, matrix = [i for i, f in zip(ids, finite) if f], matrix[finite]
    if open_store(store).feature_set(name).entry["metric"] == "ip":
        scores = matrix.astype(np.float64) @ query.astype(np.float64)
        order = np.argsort(-scores, kind="stable")
    else:
        scores = np.linalg.norm(matrix.astype(np.float64) - query.astype(np.float64), axis=1)
        order = np.argsort(scores, kind="stable")
    return [(ids[i], float(scores[i])) for i in order if ids[i] != skip][:k]


def assert_same(got: list[tuple[Any, float]], want: list[tuple[Any, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-4, atol=1e-5)


def write_set(store: Path, name: str, ids: list[Any], vectors: np.ndarray, **entry: Any) -> None:
    """A set written the way a trainer writing embeddings back would: straight through the store writer."""
    id_type = pa.string() if isinstance(ids[0], str) else pa.int64()
    dim = vectors.shape[1]
    table = pa.table({"id": pa.array(ids, id_type), "content_hash": [f"h{i}" for i in ids],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
                      "error": pa.array([None] * len(ids), pa.string())}, schema=part_schema(id_type, dim, "float32"))
    full = {"entity": "item", "modality": "learned", "encoder": "lightgcn", "recipe": {}, "recipe_hash": "x",
            "dtype": "float32", "id_type": str(id_type), "id_column": "id", "metric": "ip", "source": {},
            "dim": dim, **entry}
    with open_store(store).writer() as writer:
        writer.commit(name, full, [table])


def test_id_query_matches_brute_force_and_shows_short_catalogue_columns(items: dict[str, Path]) -> None:
    store = items["store"]
    result = neighbors(NeighborsConfig("item_text", store=str(store), ids=("3",), k=4))
    ids, matrix = stored(store, "item_text")
    want = brute(store, "item_text", matrix[ids.index(3)], 4)
    assert result.search == "exact" and result.metric == "l2" and result.queries[0].query == 3
    assert_same(result.queries[0].neighbors, want)
    assert result.queries[0].neighbors[0] == (3, 0.0)  # itself, at distance 0, unless excluded
    assert result.display_columns == ["name", "tags"]  # summaries are long: not a display column
    assert result.shown(3) == {"name": "Iron Vanguard", "tags": "mecha,war"}
    rows = result.rows()
    assert [r["id"] for r in rows] == [i for i, _ in want] and rows[0]["query"] == 3
    assert rows[0]["name"] == dict((r[0], r[1]) for r in ITEMS)[rows[0]["id"]]
    assert result.to_dict()["queries"][0]["display"]["name"] == "Iron Vanguard"


def test_exclude_self_several_ids_and_show(items: dict[str, Path]) -> None:
    store = items["store"]
    result = neighbors(NeighborsConfig("item_text", store=str(store), ids=(1, 10), k=3, exclude_self=True,
                                       show=("summary",)))
    ids, matrix = stored(store, "item_text")
    for query in result.queries:
        assert_same(query.neighbors, brute(store, "item_text", matrix[ids.index(query.query)], 3, skip=query.query))
        assert query.query not in [i for i, _ in query.neighbors]
    summaries = {r[0]: html.unescape(r[3]) for r in ITEMS}  # cleaned as templates clean them
    assert result.display_columns == ["summary"]
    assert all(r["summary"] == summaries[r["id"]] for r in result.rows())


def test_every_id_in_a_small_set_with_a_large_k(items: dict[str, Path]) -> None:
    result = neighbors(NeighborsConfig("item_text", store=str(items["store"]), ids=("5",), k=50, exclude_self=True))
    assert len(result.queries[0].neighbors) == len(ITEMS) - 1


def test_inner_product_set_with_nan_vectors_excluded_and_counted(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(40, 6)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[[4, 17]] = np.nan
    vectors[21, 2] = np.inf
    ids = list(range(100, 140))
    write_set(tmp_path / "s", "item_learned", ids, vectors)
    result = neighbors(NeighborsConfig("item_learned", store=str(tmp_path / "s"), ids=(105, 130), k=5))
    assert result.excluded_nonfinite == 3 and result.metric == "ip"
    assert any("excluded 3 ids with non-finite vectors" in w for w in result.warnings)
    for query in result.queries:
        assert_same(query.neighbors, brute(tmp_path / "s", "item_learned", vectors[ids.index(query.query)], 5))
        assert not {104, 117, 121} & {i for i, _ in query.neighbors}
    assert result.display_columns == [] and result.to_dict()["excluded_nonfinite"] == 3
    with pytest.raises(NeighborsInputError, match=r"id 117 of set 'item_learned' has a non-finite vector"):
        neighbors(NeighborsConfig("item_learned", store=str(tmp_path / "s"), ids=(117,)))


def test_unknown_ids_suggest_close_ones(items: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UnknownIdError, match=r"^no id 6 in set 'item_text'; close ids: 3, 4, 5, 7, 8$"):
        neighbors(NeighborsConfig("item_text", store=str(items["store"]), ids=("1", "6")))
    with pytest.raises(IdTypeError, match="stores int64 ids"):
        neighbors(NeighborsConfig("item_text", store=str(items["store"]), ids=("star",)))
    write_set(tmp_path / "s", "user_learned", ["alice", "alicia", "bob", "carol"], np.eye(4, dtype=np.float32))
    with pytest.raises(UnknownIdError, match=r"no id alica in set 'user_learned'; close ids: alicia, alice"):
        neighbors(NeighborsConfig("user_learned", store=str(tmp_path / "s"), ids=("alica",)))
    result = neighbors(NeighborsConfig("user_learned", store=str(tmp_path / "s"), ids=("bob",), k=1,
                                       exclude_self=True))
    assert result.queries[0].query == "bob" and len(result.queries[0].neighbors) == 1


def test_bad_show_column_lists_the_available_ones(items: dict[str, Path]) -> None:
    with pytest.raises(UnknownColumnError, match=r"unknown column 'title' in --show .*available columns: id, name, "
                                                 r"tags, summary"):
        neighbors(NeighborsConfig("item_text", store=str(items["store"]), ids=(1,), show=("name", "title")))


def test_source_gone_shows_no_columns_with_a_warning(items: dict[str, Path]) -> None:
    items["catalogue"].unlink()
    result = neighbors(NeighborsConfig("item_text", store=str(items["store"]), ids=(1,), k=2))
    assert result.display_columns == [] and len(result.queries[0].neighbors) == 2
    assert any("no display columns" in w and "file not found" in w for w in result.warnings)


def test_compare_two_sets_and_overlap(items: dict[str, Path]) -> None:
    store = items["store"]
    result = neighbors(NeighborsConfig("item_text", store=str(store), sample=4, k=3, exclude_self=True,
                                       compare="item_other", seed=7))
    assert result.compare == "item_other" and result.queried == 4
    assert len({q.query for q in result.queries}) == 4
    overlaps = []
    for query in result.queries:
        for name, got in (("item_text", query.neighbors), ("item_other", query.other)):
            ids, matrix = stored(store, name)
            assert_same(got, brute(store, name, matrix[ids.index(query.query)], 3, skip=query.query))
        mine, theirs = {i for i, _ in query.neighbors}, {i for i, _ in query.other}
        overlaps.append(len(mine & theirs) / 3)
        assert query.overlap == overlaps[-1]
    assert result.mean_overlap == pytest.approx(sum(overlaps) / 4)
    assert {r["set"] for r in result.rows()} == {"item_text", "item_other"}
    again = neighbors(NeighborsConfig("item_text", store=str(store), sample=4, k=3, compare="item_other", seed=7))
    assert [q.query for q in again.queries] == [q.query for q in result.queries]  # seeded


def test_all_writes_every_top_k_to_parquet(items: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nb, "BATCH_QUERIES", 4)  # several FAISS calls
    out = tmp_path / "nn.parquet"
    result = neighbors(NeighborsConfig("item_text", store=str(items["store"]), all=True, out=str(out), k=3))
    assert (result.queried, result.rows_written) == (len(ITEMS), 3 * len(ITEMS))
    table = pq.read_table(out)
    assert table.column_names == ["id", "rank", "neighbor", "score"] and table.schema.field("id").type == pa.int64()
    ids, matrix = stored(items["store"], "item_text")
    for row_id, vector in zip(ids, matrix):
        mine = table.filter(pa.compute.equal(table["id"], row_id)).to_pylist()
        assert [r["rank"] for r in mine] == [1, 2, 3]
        assert_same([(r["neighbor"], r["score"]) for r in mine], brute(items["store"], "item_text", vector, 3, row_id))
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_text_query_with_the_sets_encoder(items: dict[str, Path]) -> None:
    result = neighbors(NeighborsConfig("item_other", store=str(items["store"]), text="giant robots", k=4))
    assert result.queries[0].kind == "text" and result.queries[0].query == "giant robots"
    assert_same(result.queries[0].neighbors, brute(items["store"], "item_other", hash_vector("giant robots"), 4))


def test_text_query_with_the_shipped_minilm(tmp_path: Path, minilm: Any) -> None:
    catalogue = write_tsv(tmp_path / "items.tsv", ["id", "name", "tags", "summary"], ITEMS)
    embed(EmbedConfig(source=SourceSpec(str(catalogue)), store=str(tmp_path / "s"), encoder="st:all-MiniLM-L6-v2",
                      text="{name}. {tags}. {summary}"))
    result = neighbors(NeighborsConfig("item_text", store=str(tmp_path / "s"), text="giant robots at war", k=3))
    query = minilm.encode(["giant robots at war"], normalize_embeddings=True)[0]
    assert result.metric == "ip"
    assert_same(result.queries[0].neighbors, brute(tmp_path / "s", "item_text", query, 3))
    assert result.queries[0].neighbors[0][0] in (3, 10)  # the mecha shows


def test_text_refused_when_the_encoder_is_not_available(tmp_path: Path, hash_encoder: Any) -> None:
    write_set(tmp_path / "s", "item_learned", [1, 2], np.eye(2, dtype=np.float32), encoder="lightgcn")
    with pytest.raises(QueryEncoderError, match=r"cannot encode --text for set 'item_learned' with its encoder "
                                                r"'lightgcn': unknown encoder"):
        neighbors(NeighborsConfig("item_learned", store=str(tmp_path / "s"), text="robots"))
    write_set(tmp_path / "s", "item_gone", [1, 2], np.eye(2, dtype=np.float32), encoder="nope:model",
              recipe={"encoder": "nope", "model": "model"})
    with pytest.raises(QueryEncoderError, match=r"encoder 'nope:model': unknown encoder 'nope:'"):
        neighbors(NeighborsConfig("item_gone", store=str(tmp_path / "s"), text="robots"))
    write_set(tmp_path / "s", "item_moved", [1, 2], np.eye(2, dtype=np.float32), encoder="hash:x",
              recipe={"encoder": "hash", "model": "y", "template": "{name}"}, metric="l2")
    with pytest.raises(QueryEncoderError, match=r"differs from the one that built the set \(model: 'y' → 'x'\)"):
        neighbors(NeighborsConfig("item_moved", store=str(tmp_path / "s"), text="robots"))
    write_set(tmp_path / "s", "item_narrow", [1, 2], np.eye(2, dtype=np.float32), encoder="hash:x",
              recipe={"encoder": "hash", "model": "x"}, metric="l2")
    with pytest.raises(NeighborsInputError, match=r"encoded into 8 dimensions but set 'item_narrow' holds "
                                                  r"2-dimensional vectors"):
        neighbors(NeighborsConfig("item_narrow", store=str(tmp_path / "s"), text="robots"))


def test_large_sets_without_an_index_ask_for_one(items: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nb, "EXACT_LIMIT", 5)
    with pytest.raises(IndexRequiredError, match=r"set 'item_text' has 9 vectors, more than the 5 searched exactly "
                                                 r"without an index; build one first with featctl index item_text"):
        neighbors(NeighborsConfig("item_text", store=str(items["store"]), ids=(1,)))


class _Loaded:
    """What ``load_index`` returns (see the index contract), over a real FAISS index."""

    def __init__(self, ids: list[Any], matrix: np.ndarray, stale: bool) -> None:
        self.index = faiss.IndexFlatL2(matrix.shape[1])
        self.index.add(matrix)
        self.ids = pa.array(ids, pa.int64())
        self.info = {"kind": "flat", "metric": "l2", "excluded_nonfinite": 0}
        self._stale = stale

    def stale(self, fs: Any) -> bool:
        return self._stale


def test_a_built_index_is_used_and_a_stale_one_warns(items: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    ids, matrix = stored(items["store"], "item_text")
    monkeypatch.setattr(nb, "EXACT_LIMIT", 0)  # only the index can answer
    monkeypatch.setattr(nb, "load_index", lambda root, name: _Loaded(ids[:-1], matrix[:-1], stale=True))
    result = neighbors(NeighborsConfig("item_text", store=str(items["store"]), ids=(2,), k=3, exclude_self=True))
    assert result.search == "index (flat)"
    assert "index of item_text is stale: the set changed since it was built; run featctl index item_text" \
        in result.warnings
    every = brute(items["store"], "item_text", matrix[ids.index(2)], len(ids), skip=2)
    assert_same(result.queries[0].neighbors, [p for p in every if p[0] != ids[-1]][:3])  # what the index holds
    out = tmp_path / "nn.parquet"
    done = neighbors(NeighborsConfig("item_text", store=str(items["store"]), all=True, out=str(out), k=2))
    assert done.queried == len(ids) and pq.read_table(out).num_rows == 2 * len(ids)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give exactly one of --id ID, --text QUERY, --sample N or --all"),
    ({"ids": (1,), "text": "x"}, r"got --id, --text"),
    ({"all": True}, "--all needs --out"),
    ({"all": True, "out": "x.parquet", "sample": 2}, "--all takes no --sample"),
    ({"ids": (1,), "out": "x.parquet"}, "--out writes the neighbours of --all"),
    ({"ids": (1,), "k": 0}, "-k must be at least 1"),
    ({"text": "  "}, "--text is empty"),
])
def test_bad_combinations_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(NeighborsInputError, match=message):
        NeighborsConfig("item_text", **kwargs)


def test_the_index_built_by_featctl_index_is_used_and_known_stale(items: dict[str, Path]) -> None:
    from featctl.pipeline.index_build import IndexConfig, build_index

    store = items["store"]
    build_index(IndexConfig(set="item_text", store=str(store), kind="flat"))
    result = neighbors(NeighborsConfig("item_text", store=str(store), ids=(4,), k=3, exclude_self=True))
    ids, matrix = stored(store, "item_text")
    assert result.search == "index (flat)" and result.warnings == []
    assert_same(result.queries[0].neighbors, brute(store, "item_text", matrix[ids.index(4)], 3, skip=4))
    rows = [list(r) for r in ITEMS] + [[11, "Orbit Diner", "space,cooking", "A diner floats between two moons."]]
    write_tsv(items["catalogue"], ["id", "name", "tags", "summary"], rows)
    embed(EmbedConfig(source=SourceSpec(str(items["catalogue"])), store=str(store), encoder="hash:x"))
    stale = neighbors(NeighborsConfig("item_text", store=str(store), ids=(11,), k=2))
    assert "index of item_text is stale: the set changed since it was built; run featctl index item_text" \
        in stale.warnings
    assert 11 not in [i for i, _ in stale.queries[0].neighbors]  # the index predates it: still used, as it is
