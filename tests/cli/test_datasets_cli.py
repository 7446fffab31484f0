"""``featctl datasets`` as a user types it: the summary, --json, the list, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from featctl.cli import app
from tests.pipeline.test_datasets import read_back, write_ml100k, write_tmdb

runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, ["datasets", *(str(a) for a in args)])


def test_prepare_prints_files_rows_and_side_data(tmp_path: Path) -> None:
    source, tmdb, out = write_ml100k(tmp_path / "ml-100k"), write_tmdb(tmp_path / "side"), tmp_path / "out"
    result = cli("prepare", "movielens-100k", "--from", source, "--out", out, "--tmdb", tmdb)
    assert result.exit_code == 0, result.output
    assert f"movielens-100k → {out} (from {source})" in result.stdout
    for line in ("items.tsv: 5 rows", "users.tsv: 3 rows", "interactions.tsv: 5 rows",
                 f"side data: {tmdb} (overview, poster)"):
        assert line in result.stdout
    assert "warning: 2 of 5 poster files do not exist" in result.stderr
    assert read_back(out / "items.tsv")[1]["title"] == "Misérables, Les (1995)"


def test_prepare_json_without_side_data(tmp_path: Path) -> None:
    source = write_ml100k(tmp_path / "ml-100k")
    result = cli("prepare", "movielens-100k", "--from", source, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["files"] == {"items.tsv": 5, "users.tsv": 3, "interactions.tsv": 5}
    assert (data["name"], data["side_data"], data["tmdb"], data["warnings"]) == ("movielens-100k", False, None, [])
    assert "overview" not in read_back(tmp_path / "out" / "items.tsv")[0]
    human = cli("prepare", "movielens-100k", "--from", source, "--out", tmp_path / "out")
    assert "side data: none (pass --tmdb DIR" in human.stdout


def test_list_shows_adapters() -> None:
    result = cli("list")
    assert result.exit_code == 0, result.output
    assert "movielens-100k" in result.stdout and "MovieLens 100K" in result.stdout
    data = json.loads(cli("list", "--json").stdout)
    assert [d["name"] for d in data] == ["movielens-100k"] and data[0]["description"]


def test_errors_are_one_line(tmp_path: Path) -> None:
    source = write_ml100k(tmp_path / "ml-100k")
    (source / "u.user").unlink()
    cases = [
        (["prepare", "ml-1m", "--from", source, "--out", tmp_path / "o"], "unknown dataset 'ml-1m'; known datasets: "
         "movielens-100k (see featctl datasets list)"),
        (["prepare", "movielens-100k", "--from", tmp_path / "nope", "--out", tmp_path / "o"],
         f"source folder not found: {tmp_path / 'nope'} (check --from"),
        (["prepare", "movielens-100k", "--from", source, "--out", tmp_path / "o"],
         f"{source}: required file u.user is missing"),
        (["prepare", "movielens-100k", "--out", tmp_path / "o", "--url", "http://127.0.0.1:9/ml-100k.zip"],
         "cannot download http://127.0.0.1:9/ml-100k.zip: "),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.stderr


def test_help_has_an_example() -> None:
    result = cli("prepare", "--help")
    assert result.exit_code == 0 and "Example: featctl datasets prepare movielens-100k" in result.stdout
