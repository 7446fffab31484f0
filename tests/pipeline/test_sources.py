"""Sources: every file format reads the same rows; SQL runs in DuckDB; bad files fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featctl.errors import SourceEncodingError, SourceFormatError, SourceNotFoundError
from featctl.pipeline.sources import Source, SourceSpec
from featctl.stores.ids import cast_ids, infer_id_type
from tests.conftest import CATALOGUE, write_tsv

HEADER = ["id", "name", "tags", "summary"]


def _rows(source: Source) -> list[dict]:
    return pa.Table.from_batches(list(source.batches())).to_pylist()


def _write_all_formats(tmp_path: Path) -> dict[str, Path]:
    table = pa.table({h: [str(r[i]) if h != "id" else r[i] for r in CATALOGUE] for i, h in enumerate(HEADER)})
    paths = {"tsv": write_tsv(tmp_path / "c.tsv", HEADER, CATALOGUE)}
    paths["csv"] = tmp_path / "c.csv"
    paths["csv"].write_text("id,name,tags,summary\n" + "".join(
        f'{r[0]},"{r[1]}","{r[2]}","{r[3]}"\n' for r in CATALOGUE), encoding="utf-8")
    paths["parquet"] = tmp_path / "c.parquet"
    pq.write_table(table, paths["parquet"])
    paths["jsonl"] = tmp_path / "c.jsonl"
    paths["jsonl"].write_text("".join(json.dumps(dict(zip(HEADER, r))) + "\n" for r in CATALOGUE))
    return paths


def test_every_format_reads_the_same_rows(tmp_path: Path) -> None:
    for fmt, path in _write_all_formats(tmp_path).items():
        source = Source(SourceSpec(path=str(path)))
        rows = _rows(source)
        assert source.columns == HEADER, fmt
        assert [str(r["id"]) for r in rows] == [str(r[0]) for r in CATALOGUE], fmt
        assert [r["summary"] for r in rows] == [r[3] for r in CATALOGUE], fmt


def test_format_flag_overrides_the_extension(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "items.txt", HEADER, CATALOGUE)
    with pytest.raises(SourceFormatError, match="--format"):
        Source(SourceSpec(path=str(path)))
    assert len(_rows(Source(SourceSpec(path=str(path), format="tsv")))) == len(CATALOGUE)


def test_sql_runs_in_duckdb_over_files(tmp_path: Path) -> None:
    inter = write_tsv(tmp_path / "inter.tsv", ["user", "item", "comment"],
                      [[1, 1, "great"], [1, 2, "slow"], [2, 1, "loved it"]])
    sql = (f"SELECT \"user\" AS id, string_agg(comment, ' | ' ORDER BY item) AS comments "
           f"FROM read_csv('{inter}', delim='\t', header=true) GROUP BY \"user\" ORDER BY id")
    rows = _rows(Source(SourceSpec(sql=sql)))
    assert rows == [{"id": 1, "comments": "great | slow"}, {"id": 2, "comments": "loved it"}]


def test_bad_sql_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SourceFormatError, match="--sql query failed in DuckDB") as info:
        Source(SourceSpec(sql="SELECT * FROM read_csv('missing.csv')"))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="nope.tsv"):
        Source(SourceSpec(path=str(tmp_path / "nope.tsv")))


def test_undecodable_bytes_name_the_line_and_suggest_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.tsv"
    path.write_bytes(b"id\tname\n1\tok\n2\tMis\xe9rables\n")
    with pytest.raises(SourceEncodingError, match=r"line 3 is not valid utf-8.*--encoding"):
        list(Source(SourceSpec(path=str(path))).batches())
    rows = _rows(Source(SourceSpec(path=str(path), encoding="latin-1")))
    assert rows[1]["name"] == "Misérables"


def test_ids_are_int_only_when_every_value_is_canonical() -> None:
    assert infer_id_type(pa.array(["1", "20", "300"])) == pa.int64()
    assert infer_id_type(pa.array(["1", "012"])) == pa.string()
    assert infer_id_type(pa.array(["12", "12.0"])) == pa.string()
    assert infer_id_type(pa.array([1.0, 2.0])) == pa.int64()
    assert cast_ids(pa.array([1.0, 2.0]), pa.int64()).to_pylist() == [1, 2]
    assert cast_ids(pa.array(["7", "8"]), pa.int64()).to_pylist() == [7, 8]
