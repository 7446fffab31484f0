"""The embed runner: exact vectors, incremental reruns, deduplication, failures, recipes, dtypes."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from featctl import EmbedConfig, SourceSpec, compact, embed, open_store
from featctl.encoders.registry import register
from featctl.encoders.sentence_transformers import SentenceTransformerEncoder
from featctl.errors import DuplicateIdError, IdTypeError, RayEngineError, RecipeMismatchError, SourceFormatError
from tests.conftest import CATALOGUE, read_manifest, store_snapshot, write_tsv

TEMPLATE = "{name}. {tags}. {summary}"


class CountingEncoder(SentenceTransformerEncoder):
    """The real MiniLM encoder, remembering every text it was asked to encode."""

    prefix = "counting"
    seen: list[str] = []

    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        CountingEncoder.seen.extend(inputs)
        return super().encode(inputs)


register("counting", CountingEncoder)
ENCODER = "counting:all-MiniLM-L6-v2"


@pytest.fixture(autouse=True)
def _reset_counter() -> None:
    CountingEncoder.seen.clear()


def run(source: Path, store: Path, **kwargs) -> object:
    kwargs.setdefault("text", TEMPLATE)
    kwargs.setdefault("encoder", ENCODER)
    return embed(EmbedConfig(source=SourceSpec(path=str(source)), store=str(store), **kwargs))


def expected_texts(rows: list[list[object]]) -> list[str]:
    return [f"{r[1]}. {r[2]}. {r[3]}".replace("&amp;", "&") for r in rows]


def test_vectors_equal_the_model_and_align_with_ids(catalogue: Path, store: Path, minilm) -> None:
    result = run(catalogue, store, encoder="st:all-MiniLM-L6-v2")
    assert (result.rows, result.encoded, result.skipped, result.failed) == (6, 6, 0, 0)
    direct = minilm.encode(expected_texts(CATALOGUE), normalize_embeddings=True)
    ids = [7, 5, 3, 1, 2, 4, 999]
    matrix, mask = open_store(store).feature_set("item_text").vectors(ids)
    assert matrix.dtype == np.float32 and mask.tolist() == [True] * 6 + [False]
    order = {r[0]: i for i, r in enumerate(CATALOGUE)}
    np.testing.assert_allclose(matrix[:6], direct[[order[i] for i in ids[:6]]], atol=1e-5)
    assert not matrix[6].any()
    table = open_store(store).feature_set("item_text").to_arrow()
    assert table.column_names == ["id", "content_hash", "vector"]
    assert table.schema.field("id").type == pa.int64()


def test_rerun_encodes_nothing_and_changed_rows_only(tmp_path: Path, store: Path) -> None:
    source = write_tsv(tmp_path / "a.tsv", ["id", "name", "tags", "summary"], CATALOGUE)
    run(source, store)
    assert len(CountingEncoder.seen) == 6
    CountingEncoder.seen.clear()
    again = run(source, store)
    assert (again.encoded, again.skipped, again.texts_encoded, again.parts_written) == (0, 6, 0, 0)
    assert CountingEncoder.seen == []

    changed = [list(r) for r in CATALOGUE]
    changed[2][3] = "Teen pilots defend a moon base with giant robots."
    changed.append([8, "New Show", "idol", "Idols sing."])
    write_tsv(source, ["id", "name", "tags", "summary"], changed)
    result = run(source, store)
    assert (result.encoded, result.skipped) == (2, 5)
    assert sorted(CountingEncoder.seen) == sorted(expected_texts([changed[2], changed[-1]]))
    fs = open_store(store).feature_set("item_text")
    summary = fs.summary()
    assert (summary["ids"], summary["superseded_rows"], len(summary["parts"])) == (7, 1, 2)
    new_vec, _ = fs.vectors([3])
    fresh = SentenceTransformerEncoder("all-MiniLM-L6-v2").encode(expected_texts([changed[2]]))
    np.testing.assert_allclose(new_vec, fresh, atol=1e-5)


def test_identical_texts_are_encoded_once_per_run_and_across_runs(tmp_path: Path, store: Path) -> None:
    rows = [[i, "Same Title", "tag", "Same summary."] for i in range(1, 6)] + [[6, "Other", "tag", "Other."]]
    source = write_tsv(tmp_path / "a.tsv", ["id", "name", "tags", "summary"], rows)
    result = run(source, store, part_rows=2)
    assert result.encoded == 6 and result.texts_encoded == 2 and result.parts_written == 3
    assert sorted(CountingEncoder.seen) == ["Other. tag. Other.", "Same Title. tag. Same summary."]
    matrix, mask = open_store(store).feature_set("item_text").vectors(range(1, 7))
    assert mask.all() and np.allclose(matrix[:5], matrix[0])

    CountingEncoder.seen.clear()
    rows.append([9, "Same Title", "tag", "Same summary."])
    write_tsv(source, ["id", "name", "tags", "summary"], rows)
    result = run(source, store)
    assert (result.encoded, result.reused, result.texts_encoded) == (1, 1, 0)
    assert CountingEncoder.seen == []


def test_empty_text_is_recorded_with_its_reason(tmp_path: Path, store: Path) -> None:
    rows = [[1, "A", "x", "fine"], [2, "", "", ""], [3, "C", "y", ""]]
    source = write_tsv(tmp_path / "a.tsv", ["id", "name", "tags", "summary"], rows)
    result = run(source, store, text="{summary}")
    assert (result.encoded, result.failed, dict(result.failures)) == (1, 2, {"empty text": 2})
    fs = open_store(store).feature_set("item_text")
    failed = fs.to_arrow(include_failed=True).to_pylist()
    assert {r["id"]: r["error"] for r in failed} == {1: None, 2: "empty text", 3: "empty text"}
    assert fs.vectors([1, 2, 3])[1].tolist() == [True, False, False]
    again = run(source, store, text="{summary}")  # permanent failures are not retried
    assert (again.skipped, again.encoded, again.failed) == (3, 0, 0)


def test_duplicate_ids(tmp_path: Path, store: Path) -> None:
    rows = [[1, "A", "x", "first"], [2, "B", "y", "b"], [1, "A", "x", "second"], [2, "B", "y", "b"]]
    source = write_tsv(tmp_path / "a.tsv", ["id", "name", "tags", "summary"], rows)
    with pytest.raises(DuplicateIdError, match=r"1 id\(s\) appear more than once with different content: 1;"):
        run(source, store)
    assert store_snapshot(store) == {}
    assert run(source, store, on_duplicate="first").rows == 2
    assert sorted(CountingEncoder.seen) == ["A. x. first", "B. y. b"]
    CountingEncoder.seen.clear()
    assert run(source, store, on_duplicate="last").encoded == 1
    assert CountingEncoder.seen == ["A. x. second"]


def test_recipe_change_is_refused_then_replaced(catalogue: Path, store: Path) -> None:
    run(catalogue, store)
    before = store_snapshot(store)
    for change in ({"text": "{name}"}, {"dtype": "float16"}, {"encoder_options": {"normalize": False}}):
        with pytest.raises(RecipeMismatchError, match="--name.*--replace"):
            run(catalogue, store, **change)
        assert store_snapshot(store) == before
    result = run(catalogue, store, text="{name}", replace=True)
    assert result.encoded == 6
    manifest = read_manifest(store)["sets"]["item_text"]
    assert manifest["recipe"]["template"] == "{name}" and len(manifest["parts"]) == 1
    assert sorted(p.name for p in (store / "features" / "item_text").iterdir()) == [manifest["parts"][0]["file"]]


def test_float16_halves_the_vectors(catalogue: Path, store: Path, minilm) -> None:
    run(catalogue, store, dtype="float16", name="half")
    fs = open_store(store).feature_set("half")
    matrix, mask = fs.vectors([r[0] for r in CATALOGUE])
    assert matrix.dtype == np.float32 and mask.all()
    direct = minilm.encode(expected_texts(CATALOGUE), normalize_embeddings=True)
    np.testing.assert_allclose(matrix, direct, atol=2e-3)
    assert fs.summary()["dtype"] == "float16"


def test_string_ids_keep_leading_zeros_and_id_types_must_match(tmp_path: Path, store: Path) -> None:
    source = write_tsv(tmp_path / "a.tsv", ["id", "name"], [["007", "Bond"], ["7", "Seven"]])
    run(source, store, text="{name}")
    fs = open_store(store).feature_set("item_text")
    assert fs.entry["id_type"] == "string"
    assert fs.vectors(["007", "7", "07"])[1].tolist() == [True, True, False]
    # A later source whose ids all look like integers keeps the set's string ids...
    later = write_tsv(tmp_path / "b.tsv", ["id", "name"], [["1", "One"], ["007", "Bond"], ["7", "Seven"]])
    assert run(later, store, text="{name}").encoded == 1
    assert open_store(store).feature_set("item_text").summary()["ids"] == 3
    assert open_store(store).feature_set("item_text").vectors(["1"])[1].tolist() == [True]
    # ...while ids that cannot be integers never enter an int64 set.
    ints = write_tsv(tmp_path / "c.tsv", ["id", "name"], [["1", "One"]])
    run(ints, store, text="{name}", name="int_ids")
    with pytest.raises(IdTypeError, match="ids read as string but set 'int_ids' stores int64 ids"):
        run(source, store, text="{name}", name="int_ids")
    with pytest.raises(IdTypeError, match="such as '01' that are not"):
        open_store(store).feature_set("int_ids").vectors(["1", "01"])


def test_empty_id_is_refused(tmp_path: Path, store: Path) -> None:
    source = write_tsv(tmp_path / "a.tsv", ["id", "name"], [["1", "A"], ["", "B"]])
    with pytest.raises(SourceFormatError, match="data row 2 has an empty id in column 'id'"):
        run(source, store, text="{name}")


def test_compact_keeps_latest_rows_and_failures(tmp_path: Path, store: Path) -> None:
    rows = [[1, "A", "x", "one"], [2, "B", "y", ""], [3, "C", "z", "three"]]
    source = write_tsv(tmp_path / "a.tsv", ["id", "name", "tags", "summary"], rows)
    run(source, store, text="{summary}", part_rows=1, dtype="float16")
    rows[0][3] = "one, changed"
    write_tsv(source, ["id", "name", "tags", "summary"], rows)
    run(source, store, text="{summary}", dtype="float16")
    fs = open_store(store).feature_set("item_text")
    before = fs.to_arrow(include_failed=True)
    result = compact("item_text", str(store))
    assert (result.rows_before, result.rows_after, result.parts_before, result.parts_after) == (4, 3, 4, 1)
    after = open_store(store).feature_set("item_text")
    assert after.to_arrow(include_failed=True).sort_by("id").equals(before.sort_by("id"))
    assert after.verify() == [] and len(list(Path(after.folder).iterdir())) == 1
    assert run(source, store, text="{summary}", dtype="float16").encoded == 0


def test_an_unreachable_ray_address_fails_before_the_source_is_read_or_the_store_locked(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = EmbedConfig(source=SourceSpec(path=str(tmp_path / "missing.tsv")), store=str(tmp_path / "s"),
                         engine="ray", ray_address=f"127.0.0.1:{port}")
    with pytest.raises(RayEngineError, match=f"^cannot start or reach the Ray cluster at 127.0.0.1:{port} "):
        embed(config)  # not "file not found": Ray is reached first, so a wrong address fails at once
    assert not (tmp_path / "s").exists()
