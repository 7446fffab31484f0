"""Coverage reports measured on real files and a real store, against figures worked out by hand."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from featctl.encoders.registry import register
from featctl.errors import (
    CoverageInputError,
    CoverageTooLowError,
    EmptyStoreError,
    SourceFormatError,
    StoreError,
    UnknownColumnError,
)
from featctl.pipeline.config import EmbedConfig
from featctl.pipeline.coverage import CoverageConfig, check_coverage, coverage, require_coverage
from featctl.pipeline.encode import BEYOND_FLOAT16
from featctl.pipeline.runner import embed
from featctl.pipeline.sources import SourceSpec
from featctl.stores.feature_set import part_schema
from featctl.stores.store import open_store
from tests.conftest import HashEncoder, store_snapshot, write_tsv

ITEMS = [[i, f"Title {i}", f"Story number {i}."] for i in range(1, 10)]
ITEMS[5] = [6, "", ""]                      # empty text: fails with its reason
ITEMS[8] = [9, "Twin", "Same words."]       # 8 and 9 share their text, hence their vector
ITEMS[7] = [8, "Twin", "Same words."]
# item -> interactions; "99" is unknown, "1.0" and "007" spell stored ids differently.
COUNTS = {"1": 50, "2": 20, "3": 10, "4": 5, "5": 2, "6": 2, "7": 2, "8": 2, "9": 2, "10": 3,
          "99": 4, "1.0": 2, "007": 1}


@pytest.fixture
def scenario(tmp_path: Path, hash_encoder: type[HashEncoder]) -> dict[str, Path]:
    """Items 1-9 embedded; today's catalogue changed item 3's text and added items 10 and 12."""
    embedded = write_tsv(tmp_path / "items_then.tsv", ["id", "name", "summary"], ITEMS)
    store = tmp_path / "store"
    embed(EmbedConfig(source=SourceSpec(str(embedded)), store=str(store), encoder="hash:test",
                      text="{name}. {summary}"))
    today = [list(r) for r in ITEMS] + [[10, "Title 10", "New."], [12, "Title 12", "Newer."]]
    today[2] = [3, "Title 3", "A rewritten story."]
    catalog = write_tsv(tmp_path / "items_now.tsv", ["id", "name", "summary"], today)
    rows = [[u, item] for item, n in COUNTS.items() for u in range(n)]
    interactions = write_tsv(tmp_path / "interactions.tsv", ["user_id", "item_id"], rows)
    return {"store": store, "catalog": catalog, "embedded": embedded, "interactions": interactions}


def _report(s: dict[str, Path], **extra: object) -> dict:
    config = CoverageConfig(store=str(s["store"]), interactions=SourceSpec(str(s["interactions"])),
                            catalog=SourceSpec(str(s["catalog"])), save=False, **extra)
    return coverage(config).set("item_text")


def test_coverage_figures_match_a_hand_count(scenario: dict[str, Path]) -> None:
    r = _report(scenario)
    assert r["stored"] == {"ids": 9, "vectors": 8, "failed": 1}
    # catalogue: 1-10 and 12; vectors for 1-5 and 7-9 (3 is stale but still has one); 3 is not fresh
    c = r["catalog"]
    assert (c["ids"], c["covered"], c["fresh"], c["origin"]) == (11, 8, 7, "--catalog")
    assert c["ratio"] == pytest.approx(8 / 11) and c["fresh_ratio"] == pytest.approx(7 / 11)
    i = r["interactions"]
    assert (i["ids"], i["covered"], i["rows"], i["covered_rows"]) == (13, 8, 105, 93)
    assert i["ratio"] == pytest.approx(8 / 13) and i["weighted_ratio"] == pytest.approx(93 / 105)
    m = r["missing"]
    assert (m["never_encoded"], m["failed"], m["stale"], m["total"]) == (5, {"empty text": 1}, 1, 7)
    # examples come most popular first, in the stored id type where they fit it
    assert m["examples"]["never_encoded"] == [99, 10, "1.0", "007", 12]
    assert m["examples"]["failed"] == {"empty text": [6]} and m["examples"]["stale"] == [3]


def test_popularity_buckets(scenario: dict[str, Path]) -> None:
    buckets = {b["name"]: b for b in _report(scenario)["buckets"]}
    # 105 interactions: items 1 and 2 hold the first half, 3 and 4 reach 80%, the rest is tail
    assert (buckets["head"]["ids"], buckets["head"]["interactions"], buckets["head"]["covered"]) == (2, 70, 2)
    assert (buckets["torso"]["ids"], buckets["torso"]["interactions"]) == (2, 15)
    assert sum(b["ids"] for n, b in buckets.items() if n != "no interactions") == 13
    tail = buckets["tail"]
    assert (tail["ids"], tail["covered"], tail["interactions"], tail["covered_interactions"]) == (9, 4, 20, 8)
    assert (buckets["no interactions"]["ids"], buckets["no interactions"]["covered"]) == (1, 0)  # item 12


def test_id_space_explains_spellings_and_gaps(scenario: dict[str, Path]) -> None:
    r = _report(scenario)
    space = r["id_space"]
    mismatches = {m["kind"]: m for m in space["mismatches"]}
    assert mismatches["decimal"]["examples"] == [["1.0", 1]] and mismatches["decimal"]["rows"] == 2
    assert mismatches["zero-padded integer"]["examples"] == [["007", 7]]
    assert all(m["source"] == "interactions" and m["fix"] for m in space["mismatches"])
    assert space["forms"]["interactions"] == {"integer": 11, "decimal": 1, "zero-padded integer": 1}
    assert space["not_in_catalog"] == {"ids": 3, "rows": 7, "examples": [99, "1.0", "007"]}
    assert (space["max_id"], space["ids"]) == (99, 12)  # "1.0" and "007" are 1 and 7 again
    warnings = "\n".join(r["warnings"])
    for needle in ("3 of 11 catalogue ids have no vector (72.7% covered): 2 never encoded, 1 failed: empty text",
                   "'1.0' vs stored 1", "1 vectors are stale", "mix spellings", "not in the catalogue",
                   "the largest id is 99 but there are 12 ids"):
        assert needle in warnings


def test_vector_health_counts_identical_vectors(scenario: dict[str, Path]) -> None:
    v = _report(scenario)["vectors"]
    assert (v["rows"], v["dim"], v["dtype"], v["nan_or_inf"], v["zero_norm"]) == (8, 8, "float32", 0, 0)
    assert v["identical"] == {"groups": 1, "ids": 2, "same_content_groups": 1, "examples": [[8, 9]]}
    assert sum(v["histogram"]["counts"]) == 8 and v["norm"]["min"] <= v["norm"]["median"] <= v["norm"]["max"]


class OddEncoder(HashEncoder):
    """Gives a value float16 cannot hold for texts containing 'huge', zeros for texts containing 'zero'."""

    prefix = "odd"

    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        out = super().encode(inputs)
        for row, text in enumerate(inputs):
            if "huge" in text:
                out[row, 0] = 1e6
            if "zero" in text:
                out[row] = 0
        return out


register("odd", OddEncoder)


def test_float16_overflow_fails_with_its_reason_and_zero_vectors_are_reported(
        tmp_path: Path, hash_encoder: type[HashEncoder]) -> None:
    source = write_tsv(tmp_path / "odd.tsv", ["id", "text"], [["a", "fine"], ["b", "huge"], ["c", "zero"],
                                                             ["d", "zero too"]])
    embed(EmbedConfig(source=SourceSpec(str(source)), store=str(tmp_path / "s"), encoder="odd:x", dtype="float16"))
    report = coverage(CoverageConfig(store=str(tmp_path / "s"), save=False)).set("item_text")
    assert report["missing"]["failed"] == {BEYOND_FLOAT16: 1} and report["missing"]["examples"]["failed"] == {
        BEYOND_FLOAT16: ["b"]}
    v = report["vectors"]
    assert (v["rows"], v["nan_or_inf"], v["zero_norm"], v["dtype"]) == (3, 0, 2, "float16")
    assert v["identical"]["groups"] == 1 and v["identical"]["same_content_groups"] == 0
    assert v["identical"]["examples"] == [["c", "d"]]
    assert any("all zeros" in w for w in report["warnings"])
    assert any("share one vector although their content differs (e.g. c, d)" in w for w in report["warnings"])
    assert report["catalog"]["origin"] == "set source" and report["catalog"]["ratio"] == 0.75


def test_non_finite_vectors_written_by_other_tools_are_counted(tmp_path: Path) -> None:
    """Embed refuses NaN, but a trainer writing learned embeddings back may not: coverage still sees them."""
    vectors = np.array([[1, 0], [np.nan, 1], [np.inf, 0], [3, 4]], dtype=np.float32)
    table = pa.table({"id": pa.array([1, 2, 3, 4], pa.int64()), "content_hash": ["h1", "h2", "h3", "h4"],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 2),
                      "error": pa.array([None] * 4, pa.string())}, schema=part_schema(pa.int64(), 2, "float32"))
    entry = {"entity": "item", "modality": "learned", "encoder": "lightgcn", "recipe": {}, "recipe_hash": "x",
             "dtype": "float32", "id_type": "int64", "id_column": "id", "metric": "ip", "source": {}, "dim": 2}
    with open_store(tmp_path / "s").writer() as writer:
        writer.commit("item_learned", entry, [table])
    report = coverage(CoverageConfig(store=str(tmp_path / "s"), save=False)).set("item_learned")
    v = report["vectors"]
    assert (v["rows"], v["nan_or_inf"], v["zero_norm"]) == (4, 2, 0)
    assert (v["norm"]["min"], v["norm"]["median"], v["norm"]["max"]) == (1.0, 3.0, 5.0)
    assert report["catalog"] is None and report["missing"]["stale_note"].startswith("not checked")
    assert any("2 vectors hold NaN or inf" in w for w in report["warnings"])


def test_set_source_is_the_default_catalogue_and_edits_make_vectors_stale(scenario: dict[str, Path]) -> None:
    config = CoverageConfig(store=str(scenario["store"]), save=False)
    assert coverage(config).set("item_text")["missing"]["stale"] == 0
    rows = [list(r) for r in ITEMS]
    rows[0] = [1, "Title 1", "Edited."]
    write_tsv(scenario["embedded"], ["id", "name", "summary"], rows)
    r = coverage(config).set("item_text")
    assert r["catalog"]["path"].endswith("items_then.tsv") and r["catalog"]["origin"] == "set source"
    assert (r["missing"]["stale"], r["missing"]["examples"]["stale"]) == (1, [1])
    assert r["interactions"] is None and r["buckets"] == []
    unchecked = coverage(CoverageConfig(store=str(scenario["store"]), save=False, stale=False)).set("item_text")
    assert unchecked["missing"]["stale"] is None and unchecked["catalog"]["fresh"] is None


def test_template_not_fitting_the_catalogue_leaves_staleness_unchecked(scenario: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    other = write_tsv(tmp_path / "ids_only.tsv", ["id"], [[i] for i in range(1, 13)])
    r = coverage(CoverageConfig(store=str(scenario["store"]), catalog=SourceSpec(str(other)),
                                save=False)).set("item_text")
    assert r["missing"]["stale"] is None and "unknown column 'name'" in r["missing"]["stale_note"]
    assert (r["catalog"]["ids"], r["catalog"]["covered"]) == (12, 8)


def test_catalogue_duplicates_and_mixed_jsonl_ids_are_reported(scenario: dict[str, Path], tmp_path: Path) -> None:
    dup = write_tsv(tmp_path / "dup.tsv", ["id", "name", "summary"], [list(r) for r in ITEMS] + [[2, "Again", "x"]])
    inter = tmp_path / "mixed.jsonl"
    inter.write_text("\n".join(json.dumps({"user_id": 1, "item_id": v}) for v in [1, "2", 3.0, "abc", "04", None]))
    r = coverage(CoverageConfig(store=str(scenario["store"]), catalog=SourceSpec(str(dup)),
                                interactions=SourceSpec(str(inter)), save=False)).set("item_text")
    assert (r["catalog"]["duplicate_ids"], r["catalog"]["duplicate_examples"]) == (1, [2])
    assert r["id_space"]["forms"]["interactions"] == {"integer": 2, "decimal": 1, "text": 1, "zero-padded integer": 1}
    assert (r["interactions"]["ids"], r["interactions"]["covered"], r["interactions"]["empty_ids"]) == (5, 2, 1)
    assert {m["kind"] for m in r["id_space"]["mismatches"]} == {"decimal", "zero-padded integer"}


def test_user_sets_use_the_user_column_and_table(tmp_path: Path, hash_encoder: type[HashEncoder]) -> None:
    users = write_tsv(tmp_path / "users.tsv", ["user_id", "bio"], [[1, "likes robots"], [2, "likes food"], [3, ""]])
    store = str(tmp_path / "s")
    embed(EmbedConfig(source=SourceSpec(str(users)), store=store, encoder="hash:x", entity="user"))
    inter = write_tsv(tmp_path / "i.tsv", ["uid", "item_id"], [[1, 5], [1, 6], [3, 5], [4, 5]])
    r = coverage(CoverageConfig(store=store, interactions=SourceSpec(str(inter)), user_col="uid",
                                users=SourceSpec(str(users)), users_id="user_id", save=False)).set("user_text")
    assert (r["catalog"]["ids"], r["catalog"]["covered"], r["catalog"]["origin"]) == (3, 2, "--users")
    assert (r["interactions"]["column"], r["interactions"]["ids"], r["interactions"]["covered"]) == ("uid", 3, 1)
    assert r["interactions"]["weighted_ratio"] == pytest.approx(2 / 4)


def test_gates(scenario: dict[str, Path]) -> None:
    config = CoverageConfig(store=str(scenario["store"]), interactions=SourceSpec(str(scenario["interactions"])),
                            catalog=SourceSpec(str(scenario["catalog"])), save=False)
    report = coverage(config)
    check_coverage(report, min_ratio=0.5, min_weighted=0.85)
    with pytest.raises(CoverageTooLowError, match=r"'item_text' covers 72.7% of the catalogue \(8 of 11\), "
                                                  r"below the minimum 95.0% \(--min\) \(and 1 more"):
        check_coverage(report, min_ratio=0.95)
    with pytest.raises(CoverageTooLowError, match=r"88.6% of the interactions \(93 of 105\), below the minimum "
                                                  r"90.0% \(--min-weighted\)"):
        require_coverage(config, min_weighted=0.9)
    bare = coverage(CoverageConfig(store=str(scenario["store"]), stale=False, save=False,
                                   catalog=SourceSpec(str(scenario["catalog"]))))
    with pytest.raises(CoverageInputError, match="pass --interactions"):
        check_coverage(bare, min_weighted=0.5)


def test_bad_input_fails_before_anything_is_written(scenario: dict[str, Path], tmp_path: Path) -> None:
    before = store_snapshot(scenario["store"])
    with pytest.raises(UnknownColumnError, match=r"unknown column 'movie' in --item-col of .*interactions.tsv; "
                                                 r"available columns: user_id, item_id"):
        coverage(CoverageConfig(store=str(scenario["store"]), item_col="movie",
                                interactions=SourceSpec(str(scenario["interactions"]))))
    with pytest.raises(UnknownColumnError, match="unknown column 'sku' in --id of"):
        coverage(CoverageConfig(store=str(scenario["store"]), catalog=SourceSpec(str(scenario["catalog"])),
                                catalog_id="sku"))
    assert store_snapshot(scenario["store"]) == before
    with pytest.raises(EmptyStoreError, match="has no feature sets yet; create one with featctl embed"):
        coverage(CoverageConfig(store=str(tmp_path / "empty")))
    assert not (tmp_path / "empty").exists()


def test_reports_are_saved_under_the_store(scenario: dict[str, Path]) -> None:
    report = coverage(CoverageConfig(store=str(scenario["store"]),
                                     interactions=SourceSpec(str(scenario["interactions"]))))
    json_path, html_path = report.saved
    assert Path(json_path).parent == scenario["store"] / "reports"
    assert json.loads(Path(json_path).read_text()) == json.loads(json.dumps(report.to_dict()))
    assert "item_text" in Path(html_path).read_text()
    assert coverage(CoverageConfig(store=str(scenario["store"]))).saved[0] != json_path


def test_float_typed_ids_are_integers_as_embed_reads_them_and_the_child_process_agrees(
        scenario: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pandas-written log whose item ids became floats (a null forced the column to float64)."""
    import pyarrow.parquet as pq

    from featctl.pipeline.coverage import report as report_module

    items = [1.0, 1.0, 1.0, 2.0, None]
    pq.write_table(pa.table({"user_id": list(range(5)), "item_id": pa.array(items, pa.float64())}),
                   tmp_path / "log.parquet")
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps({"item_id": v}) for v in items))
    catalog = tmp_path / "items.parquet"
    pq.write_table(pa.table({"id": pa.array([float(r[0]) for r in ITEMS]), "name": [r[1] for r in ITEMS],
                             "summary": [r[2] for r in ITEMS]}), catalog)
    reports = []
    for log_file in ("log.parquet", "log.jsonl"):
        config = CoverageConfig(store=str(scenario["store"]), interactions=SourceSpec(str(tmp_path / log_file)),
                                catalog=SourceSpec(str(catalog)), save=False)
        r = coverage(config).set("item_text")
        assert (r["interactions"]["ids"], r["interactions"]["covered"], r["interactions"]["empty_ids"]) == (2, 2, 1)
        assert r["interactions"]["weighted_ratio"] == 1.0 and r["id_space"]["mismatches"] == []
        assert (r["catalog"]["ids"], r["catalog"]["covered"], r["missing"]["stale"]) == (9, 8, 0)
        reports.append(r)
    assert reports[0] == reports[1]
    monkeypatch.setattr(report_module, "CHILD_BYTES", 0)  # re-hash the catalogue in a child process
    assert coverage(config).set("item_text") == reports[1]


def test_ids_of_other_types_are_refused(scenario: dict[str, Path], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"item_id": [True, False]}), tmp_path / "bools.parquet")
    with pytest.raises(SourceFormatError, match=r"bools.parquet: column 'item_id' \(--item-col\) holds BOOLEAN "
                                                r"values; ids must be integers or strings"):
        coverage(CoverageConfig(store=str(scenario["store"]), interactions=SourceSpec(str(tmp_path / "bools.parquet")),
                                save=False))


def test_repeated_and_case_twin_set_names(tmp_path: Path, hash_encoder: type[HashEncoder]) -> None:
    source = write_tsv(tmp_path / "items.tsv", ["id", "name"], [[1, "a"], [2, "b"]])
    for name in ("Item", "item"):
        embed(EmbedConfig(source=SourceSpec(str(source)), store=str(tmp_path / "s"), encoder="hash:x", name=name))
    report = coverage(CoverageConfig(store=str(tmp_path / "s"), sets=("item", "Item", "item"), save=False))
    assert [(s["name"], s["catalog"]["covered"], s["missing"]["stale"]) for s in report.sets] == [
        ("item", 2, 0), ("Item", 2, 0)]


def test_latin1_source_is_its_own_catalogue(tmp_path: Path, hash_encoder: type[HashEncoder]) -> None:
    source = tmp_path / "items.tsv"
    source.write_bytes("id\tname\n1\tCaf\xe9\n2\tNa\xefve\n".encode("latin-1"))
    embed(EmbedConfig(source=SourceSpec(str(source), encoding="latin-1"), store=str(tmp_path / "s"),
                      encoder="hash:x"))
    r = coverage(CoverageConfig(store=str(tmp_path / "s"), save=False)).set("item_text")
    assert (r["catalog"]["covered"], r["catalog"]["fresh"]) == (2, 2)


def test_damaged_part_and_empty_log_are_explained(scenario: dict[str, Path], tmp_path: Path) -> None:
    empty = write_tsv(tmp_path / "empty.tsv", ["user_id", "item_id"], [])
    report = coverage(CoverageConfig(store=str(scenario["store"]), interactions=SourceSpec(str(empty)),
                                     save=False))
    r = report.set("item_text")
    assert r["interactions"]["ids"] == 0 and [b["ids"] for b in r["buckets"]] == [0, 0, 0, 9]
    assert any("the interactions hold no item ids" in w for w in r["warnings"])
    with pytest.raises(CoverageInputError, match="against a threshold: the interactions hold no ids for it"):
        check_coverage(report, min_weighted=0.5)
    part = next((scenario["store"] / "features" / "item_text").glob("part-*.parquet"))
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(part).drop_columns(["vector"]), part)
    with pytest.raises(StoreError, match=r"cannot read part .*part-000001.parquet of set 'item_text' .*"
                                         r"run featctl info item_text --verify"):
        coverage(CoverageConfig(store=str(scenario["store"]), save=False))
