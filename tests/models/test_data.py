from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featctl.errors import SourceNotFoundError, TrainInputError, UnknownColumnError
from featctl.models.data import InteractionsConfig, load_interactions
from featctl.models.splits import split
from featctl.pipeline.sources import SourceSpec


def _write(path, rows, header="user_id\titem_id\trating\tts"):
    path.write_text(header + "\n" + "\n".join("\t".join(map(str, r)) for r in rows) + "\n")
    return path


def test_filters_merges_and_indexes_by_id(tmp_path):
    path = _write(tmp_path / "log.tsv", [
        (10, 7, 5, 100), (10, 7, 4, 300),  # repeated pair: merged, latest time kept
        (10, 2, 2, 50),                     # below --min-rating
        (3, 2, 4, 10), (3, 100, 5, 20), (10, 100, 4.5, 30),
    ])
    data = load_interactions(InteractionsConfig(SourceSpec(str(path)), rating_col="rating", min_rating=4,
                                                time_col="ts"))
    assert data.users.to_pylist() == ["3", "10"]
    assert data.items.to_pylist() == ["2", "7", "100"]  # numeric order, not text order
    assert data.int_ids == {"user": True, "item": True}
    assert data.typed_ids("item").type == pa.int64()
    pairs = {(data.users[u].as_py(), data.items[i].as_py(), t) for u, i, t in zip(data.user, data.item, data.time)}
    assert pairs == {("3", "2", 10), ("3", "100", 20), ("10", "7", 300), ("10", "100", 30)}
    assert data.stats == {"rows": 6, "null_ids": 0, "below_min_rating": 1, "repeated_pairs": 1,
                          "removed_by_k_core": 0}


def test_string_ids_and_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"u": ["b", "a", "a"], "i": ["x1", "x1", "x2"]}), path)
    data = load_interactions(InteractionsConfig(SourceSpec(str(path)), user_col="u", item_col="i"))
    assert data.users.to_pylist() == ["a", "b"] and data.items.to_pylist() == ["x1", "x2"]
    assert data.int_ids == {"user": False, "item": False}
    assert len(data) == 3


def test_k_core_repeats_until_stable(tmp_path):
    # user 9 has 2 interactions; dropping them leaves item 5 with 1, which must go too.
    rows = [(u, i, 5, 0) for u in (1, 2, 3) for i in (1, 2, 3)] + [(9, 5, 5, 0), (9, 1, 5, 0), (1, 5, 5, 0)]
    data = load_interactions(InteractionsConfig(SourceSpec(str(_write(tmp_path / "l.tsv", rows))), k_core=3))
    assert data.items.to_pylist() == ["1", "2", "3"]
    assert data.users.to_pylist() == ["1", "2", "3"]
    assert data.stats["removed_by_k_core"] == 3


def test_bad_input_messages(tmp_path):
    path = _write(tmp_path / "l.tsv", [(1, 2, "five", 0)])
    with pytest.raises(UnknownColumnError, match="unknown column 'item'.*available columns: user_id, item_id"):
        load_interactions(InteractionsConfig(SourceSpec(str(path)), item_col="item"))
    with pytest.raises(TrainInputError, match="data row 1, column 'rating' .* holds 'five', not a number"):
        load_interactions(InteractionsConfig(SourceSpec(str(path)), rating_col="rating", min_rating=4))
    with pytest.raises(TrainInputError, match="--min-rating needs .* --rating-col"):
        InteractionsConfig(SourceSpec(str(path)), min_rating=4)
    with pytest.raises(SourceNotFoundError):
        load_interactions(InteractionsConfig(SourceSpec(str(tmp_path / "nope.tsv"))))
    ok = _write(tmp_path / "ok.tsv", [(1, 2, 3, 0)])
    with pytest.raises(TrainInputError, match="no interactions left to train on.*below min rating 1"):
        load_interactions(InteractionsConfig(SourceSpec(str(ok)), rating_col="rating", min_rating=4))


def _log(n_users=50, n_items=40, per_user=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(u, int(i), 5, int(t)) for u in range(n_users)
            for t, i in enumerate(rng.choice(n_items, per_user, replace=False))]
    return rows


def test_random_split_is_per_user_80_10_10_and_seeded(tmp_path):
    data = load_interactions(InteractionsConfig(SourceSpec(str(_write(tmp_path / "l.tsv", _log())))))
    a, b, c = split(data, "random", seed=1), split(data, "random", seed=1), split(data, "random", seed=2)
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)
    for user in range(data.n_users):  # 12 interactions: 10 / 1 / 1
        assert [int((part[:, 0] == user).sum()) for part in (a.train, a.valid, a.test)] == [10, 1, 1]
    every = np.concatenate([a.train, a.valid, a.test])
    assert len(np.unique(every[:, 0] * 1000 + every[:, 1])) == len(data)  # a partition: nothing lost or doubled
    assert a.skipped_users == 0


def test_temporal_split_leaves_the_last_one_out(tmp_path):
    rows = [(1, 1, 5, 30), (1, 2, 5, 10), (1, 3, 5, 20), (2, 1, 5, 5), (2, 3, 5, 1), (3, 2, 5, 9)]
    data = load_interactions(InteractionsConfig(SourceSpec(str(_write(tmp_path / "l.tsv", rows))), time_col="ts"))
    parts = split(data, "temporal")
    as_ids = lambda part: {(data.users[u].as_py(), data.items[i].as_py()) for u, i in part}  # noqa: E731
    assert as_ids(parts.test) == {("1", "1"), ("2", "1")}
    assert as_ids(parts.valid) == {("1", "3")}
    assert as_ids(parts.train) == {("1", "2"), ("2", "3"), ("3", "2")}
    assert parts.skipped_users == 1  # user 3 has a single interaction: nothing to test on
    with pytest.raises(TrainInputError, match="pass --time-col"):
        split(load_interactions(InteractionsConfig(SourceSpec(str(tmp_path / "l.tsv")))), "temporal")


def test_cold_item_split_holds_items_out_entirely(tmp_path):
    data = load_interactions(InteractionsConfig(SourceSpec(str(_write(tmp_path / "l.tsv", _log(n_items=50))))))
    parts = split(data, "cold-item", seed=3)
    held = set(parts.valid[:, 1]) | set(parts.test[:, 1])
    assert len(held) == 10 and not held & set(parts.train[:, 1])
    assert not set(parts.valid[:, 1]) & set(parts.test[:, 1])
    assert set(np.flatnonzero(parts.cold_items)) == held
    with pytest.raises(TrainInputError, match="unknown split 'loo'"):
        split(data, "loo")
