"""``featctl neighbors`` as a user types it: tables, NDJSON, --all, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

import featctl.cli.neighbors  # noqa: F401  (registers the command)
from featctl.cli import app
from tests.pipeline.test_neighbors import ITEMS, brute, items, stored, write_set  # noqa: F401  (items: a fixture)

runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, ["neighbors", *(str(a) for a in args)])


def test_table_shows_ids_scores_and_catalogue_columns(items: dict[str, Path]) -> None:  # noqa: F811
    result = cli("item_text", "--store", items["store"], "--id", 3, "-k", 3, "--exclude-self")
    assert result.exit_code == 0, result.output
    ids, matrix = stored(items["store"], "item_text")
    want = brute(items["store"], "item_text", matrix[ids.index(3)], 3, skip=3)
    names = {r[0]: r[1] for r in ITEMS}
    assert "neighbours of id 3 · Iron Vanguard · mecha,war" in result.stdout
    for row_id, score in want:
        assert names[row_id] in result.stdout and f"{score:.4f}" in result.stdout
    assert "distance" in result.stdout and "summary" not in result.stdout


def test_json_prints_one_object_per_neighbour(items: dict[str, Path]) -> None:  # noqa: F811
    result = cli("item_text", "--store", items["store"], "--id", 1, "--id", 2, "-k", 2, "--show", "name", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["query"], r["rank"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert set(rows[0]) == {"query", "set", "rank", "id", "score", "name"}
    ids, matrix = stored(items["store"], "item_text")
    assert [(r["id"], round(r["score"], 4)) for r in rows[2:]] == [
        (i, round(s, 4)) for i, s in brute(items["store"], "item_text", matrix[ids.index(2)], 2)]


def test_compare_prints_both_lists_and_the_mean_overlap(items: dict[str, Path]) -> None:  # noqa: F811
    result = cli("item_text", "--store", items["store"], "--sample", 2, "-k", 3, "--compare", "item_other")
    assert result.exit_code == 0, result.output
    assert "item_text id" in result.stdout and "item_other id" in result.stdout
    assert result.stdout.count("overlap@3") == 3 and "mean overlap@3:" in result.stdout


def test_all_writes_parquet(items: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "nn.parquet"
    result = cli("item_text", "--store", items["store"], "--all", "--out", out, "-k", 2)
    assert result.exit_code == 0, result.output
    assert "18 neighbours of 9 ids (k=2, exact)" in result.stdout and pq.read_table(out).num_rows == 18
    summary = json.loads(cli("item_text", "--store", items["store"], "--all", "--out", out, "--json").stdout)
    assert (summary["queried"], summary["rows_written"]) == (9, 72)  # k=10, 8 others each


def test_nan_vectors_are_counted_in_a_warning(tmp_path: Path) -> None:
    vectors = np.array([[1, 0], [np.nan, 1], [0.6, 0.8], [0, 1]], dtype=np.float32)
    write_set(tmp_path / "s", "item_learned", [1, 2, 3, 4], vectors)
    result = cli("item_learned", "--store", tmp_path / "s", "--id", 1, "-k", 5, "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [1, 3, 4]
    assert "warning: excluded 1 ids with non-finite vectors" in result.stderr


def test_errors_are_one_line(items: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    cases: list[tuple[list[Any], str]] = [
        (["--id", 6], "error: no id 6 in set 'item_text'; close ids: 3, 4, 5, 7, 8"),
        (["--id", 1, "--show", "title"], "error: unknown column 'title' in --show"),
        (["--id", 1, "--text", "x"], "error: give exactly one of --id ID, --text QUERY, --sample N or --all"),
        (["--id", 1, "--compare", "nope"], "error: no feature set named 'nope'"),
    ]
    for args, message in cases:
        result = cli("item_text", "--store", items["store"], *args)
        assert result.exit_code == 1 and result.stderr.startswith(message), (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    write_set(tmp_path / "s", "item_learned", [1, 2], np.eye(2, dtype=np.float32), encoder="lightgcn")
    result = cli("item_learned", "--store", tmp_path / "s", "--text", "giant robots")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot encode --text for set 'item_learned' with its encoder 'lightgcn'")


def test_help_has_an_example() -> None:
    result = runner.invoke(app, ["neighbors", "--help"])
    assert result.exit_code == 0 and "Example: featctl neighbors item_text --id 1" in result.stdout
