"""The runner under stress: interrupts, broken encoders, unstable SQL order, replaces that die."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from featctl import EmbedConfig, SourceSpec, embed, open_store
from featctl.errors import EncoderFailedError, EncoderOptionError, RecipeMismatchError, SourceFormatError
from tests.conftest import HashEncoder, hash_vector, write_tsv

ROWS = [[i, f"title {i}", f"summary number {i}"] for i in range(1, 11)]


def run(source: Path, store: Path, **kwargs):
    kwargs.setdefault("text", "{name}: {summary}")
    kwargs.setdefault("encoder", "hash:v1")
    return embed(EmbedConfig(source=SourceSpec(path=str(source)), store=str(store), **kwargs))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_tsv(tmp_path / "items.tsv", ["id", "name", "summary"], ROWS)


def _in_thread(fn) -> BaseException | None:
    """Run ``fn`` in a thread that must end within 30 s; return what it raised."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 (the test inspects it)
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the run hung"
    return raised[0] if raised else None


def test_interrupt_mid_run_returns_promptly_keeps_commits_and_frees_the_lock(
        source: Path, store: Path, hash_encoder: type[HashEncoder]) -> None:
    hash_encoder.interrupt_after = 2  # part 1 (2 calls) is encoded, part 2 is interrupted
    raised = _in_thread(lambda: run(source, store, part_rows=4, encoder_options={"batch_size": 2}))
    assert isinstance(raised, KeyboardInterrupt)
    fs = open_store(store).feature_set("item_text")
    assert fs.verify() == [] and fs.summary()["ids"] == 4
    hash_encoder.interrupt_after = None
    result = run(source, store, part_rows=4, lock_timeout=1)
    assert (result.skipped, result.encoded) == (4, 6)


def test_one_bad_input_fails_alone(source: Path, store: Path, hash_encoder: type[HashEncoder]) -> None:
    hash_encoder.fail_texts = {"title 3: summary number 3"}
    result = run(source, store, encoder_options={"batch_size": 8})
    assert (result.encoded, result.failed) == (9, 1)
    failed = open_store(store).feature_set("item_text").to_arrow(include_failed=True).to_pylist()
    assert [r["error"] for r in failed if r["id"] == 3] == ["encoder error: cannot encode 'title 3: summary number 3'"]
    hash_encoder.fail_texts = set()
    assert run(source, store).encoded == 1  # not a permanent failure: retried next run


def test_a_broken_encoder_stops_the_run_instead_of_failing_every_row(
        source: Path, store: Path, hash_encoder: type[HashEncoder]) -> None:
    hash_encoder.broken = "CUDA out of memory. Tried to allocate 2.00 GiB"
    with pytest.raises(EncoderFailedError, match=r"failed on each of the first 8 texts.*CUDA out of memory"):
        run(source, store, encoder_options={"batch_size": 8})
    assert not store.exists()  # a first run that committed nothing leaves no store behind
    # Small parts and calls too: the run stops after 8 texts, not after recording every row.
    with pytest.raises(EncoderFailedError):
        run(source, store, part_rows=3, encoder_options={"batch_size": 1})
    assert open_store(store).feature_set("item_text").summary()["failed"] <= 8


def test_sql_without_order_by_is_read_once_and_stays_consistent(tmp_path: Path, hash_encoder) -> None:
    rows = [[u, i, f"comment {u}-{i}"] for u in range(1, 301) for i in range(3)]
    inter = write_tsv(tmp_path / "inter.tsv", ["user_id", "item_id", "comment"], rows)
    sql = (f"SELECT user_id, string_agg(comment, ' ' ORDER BY item_id) AS comments "
           f"FROM read_csv('{inter}', delim='\t', header=true) GROUP BY user_id")
    for attempt in range(3):
        store = tmp_path / f"s{attempt}"
        config = EmbedConfig(source=SourceSpec(sql=sql), store=str(store), text="{comments}", encoder="hash:v1",
                             entity="user", part_rows=37)
        assert embed(config).encoded == 300
        assert embed(config).skipped == 300
        matrix, mask = open_store(store).feature_set("user_text").vectors([1, 300])
        assert mask.all() and np.allclose(matrix[1], hash_vector("comment 300-0 comment 300-1 comment 300-2"))


def test_replace_that_dies_halfway_resumes(source: Path, store: Path, hash_encoder: type[HashEncoder]) -> None:
    run(source, store)
    hash_encoder.interrupt_after = len(hash_encoder.calls) + 2
    raised = _in_thread(lambda: run(source, store, text="{summary}", replace=True, part_rows=4,
                                    encoder_options={"batch_size": 2}))
    assert isinstance(raised, KeyboardInterrupt)
    fs = open_store(store).feature_set("item_text")
    assert fs.recipe["template"] == "{summary}" and fs.summary()["ids"] == 4
    hash_encoder.interrupt_after = None
    result = run(source, store, text="{summary}", replace=True, part_rows=4)
    assert (result.skipped, result.encoded) == (4, 6)


def test_entity_is_part_of_a_sets_identity(source: Path, store: Path, hash_encoder) -> None:
    run(source, store, name="things")
    with pytest.raises(RecipeMismatchError, match="entity: 'item' → 'user'"):
        run(source, store, name="things", entity="user")


@pytest.mark.parametrize("option", [{"batch_size": 0}, {"batch_size": -3}, {"max_length": -5}])
def test_integer_options_are_validated(source: Path, store: Path, option: dict) -> None:
    with pytest.raises(EncoderOptionError, match="invalid: expected a positive integer"):
        run(source, store, encoder="st:all-MiniLM-L6-v2", encoder_options=option)


def test_replace_rebuilds_a_damaged_set_or_one_whose_ids_changed_type(
        tmp_path: Path, source: Path, store: Path, hash_encoder) -> None:
    run(source, store)
    part = next((store / "features" / "item_text").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:100])
    result = run(source, store, replace=True)
    assert result.encoded == 10 and open_store(store).feature_set("item_text").verify() == []
    letters = write_tsv(tmp_path / "letters.tsv", ["id", "name", "summary"], [["A1", "a", "b"]])
    assert run(letters, store, replace=True).encoded == 1
    assert open_store(store).feature_set("item_text").entry["id_type"] == "string"


def test_sql_with_a_trailing_comment_and_repeated_names(tmp_path: Path, store: Path, hash_encoder) -> None:
    config = EmbedConfig(source=SourceSpec(sql="SELECT 1 AS id, 'x' AS t -- the whole catalogue"),
                         store=str(store), text="{t}", encoder="hash:v1")
    assert embed(config).encoded == 1
    with pytest.raises(SourceFormatError, match="column name\\(s\\) 't' appear more than once"):
        embed(EmbedConfig(source=SourceSpec(sql="SELECT 1 AS id, 'a' AS t, 'b' AS t"), store=str(store),
                          encoder="hash:v1"))
