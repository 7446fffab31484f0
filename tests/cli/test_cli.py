"""The command line, driven through Typer's CliRunner as a user would type it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featctl.cli import app
from tests.conftest import REPO, store_snapshot, write_tsv

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_embed_ls_info_compact_json(catalogue: Path, store: Path) -> None:
    result = cli("embed", "--source", catalogue, "--store", store, "--json", "--part-rows", "4")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"set", "rows", "encoded", "skipped", "failed", "seconds"} <= set(out)
    assert (out["set"], out["rows"], out["encoded"], out["skipped"], out["failed"]) == ("item_text", 6, 6, 0, 0)

    listed = json.loads(cli("ls", "--store", store, "--json").stdout)
    assert [(s["name"], s["ids"], s["dim"], s["parts"]) for s in listed] == [("item_text", 6, 384, 2)]

    info = json.loads(cli("info", "item_text", "--store", store, "--json", "--verify").stdout)
    assert info["vectors"] == 6 and info["problems"] == [] and info["bytes"] > 0
    assert info["recipe"]["template"] == "name: {name}\ntags: {tags}\nsummary: {summary}"

    again = json.loads(cli("embed", "--source", catalogue, "--store", store, "--json").stdout)
    assert (again["encoded"], again["skipped"]) == (0, 6)

    compacted = json.loads(cli("compact", "item_text", "--store", store, "--json").stdout)
    assert (compacted["parts_before"], compacted["parts_after"], compacted["rows_after"]) == (2, 1, 6)


def test_human_output(catalogue: Path, store: Path) -> None:
    result = cli("embed", "--source", catalogue, "--store", store, "--entity", "item", "--name", "items")
    assert result.exit_code == 0
    assert result.stdout.startswith("items: 6 rows — 6 encoded, 0 skipped, 0 failed in ")
    table = cli("ls", "--store", store).stdout
    assert "items" in table and "384" in table
    info = cli("info", "items", "--store", store).stdout
    assert "ids 6 · vectors 6 · failed 0" in info and "part-000001.parquet" in info


def test_store_from_environment(catalogue: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATCTL_STORE", str(store))
    assert cli("embed", "--source", catalogue, "--text", "{name}").exit_code == 0
    assert (store / "manifest.json").exists()


def test_user_text_from_sql(tmp_path: Path, store: Path) -> None:
    inter = write_tsv(tmp_path / "interactions.tsv", ["user_id", "item_id", "comment"],
                      [[1, 10, "loved the dogfights"], [1, 11, ""], [2, 10, "too slow for me"], [3, 12, ""]])
    sql = (f"SELECT user_id, string_agg(comment, ' ') FILTER (WHERE comment <> '') AS comments "
           f"FROM read_csv('{inter}', delim='\t', header=true, all_varchar=true) GROUP BY user_id ORDER BY user_id")
    result = cli("embed", "--sql", sql, "--entity", "user", "--text", "{comments}", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["set"], out["rows"], out["encoded"], out["failures"]) == ("user_text", 3, 2, {"empty text": 1})


def _bad_inputs(tmp_path: Path, catalogue: Path) -> list[tuple[list[str], str]]:
    dup = write_tsv(tmp_path / "dup.tsv", ["id", "name"], [[1, "a"], [1, "b"], [2, "c"]])
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(b"id\tname\n1\tMis\xe9rables\n")
    return [
        (["--source", tmp_path / "missing.tsv"], "source file not found: "),
        (["--source", catalogue, "--id", "item"], "unknown column 'item' in --id; available columns: id, name, tags"),
        (["--source", catalogue, "--text", "{title}"], "unknown column 'title' in --text template"),
        (["--source", dup], "1 id(s) appear more than once with different content: 1; "),
        (["--source", latin], "line 2 is not valid utf-8"),
        (["--source", catalogue, "--text", "{name}"], "different recipe (template: "),
        (["--source", catalogue, "--dtype", "float16"], "different recipe (dtype: 'float32' → 'float16')"),
        (["--source", catalogue, "--encoder", "nope:model"], "unknown encoder 'nope:'"),
        (["--source", catalogue, "--encoder", "st:all-MiniLM-L6-v2?pooling=max"], "has no option 'pooling'"),
        (["--source", catalogue, "--entity", "shop"], "--entity must be one of item, user"),
        (["--source", catalogue, "--sql", "select 1"], "give exactly one of --source FILE or --sql QUERY"),
    ]


def test_bad_input_gets_one_line_exit_1_and_an_unchanged_store(tmp_path: Path, catalogue: Path, store: Path) -> None:
    assert cli("embed", "--source", catalogue, "--store", store).exit_code == 0
    before = store_snapshot(store)
    for args, message in _bad_inputs(tmp_path, catalogue):
        result = cli("embed", *args, "--store", store)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.stderr
        assert store_snapshot(store) == before, args
    missing = cli("info", "nope", "--store", store)
    assert missing.exit_code == 1 and "no feature set named 'nope'" in missing.stderr


def test_bad_input_creates_no_store(tmp_path: Path, catalogue: Path) -> None:
    dup = write_tsv(tmp_path / "dup.tsv", ["id", "name"], [[1, "a"], [1, "b"]])
    result = cli("embed", "--source", dup, "--store", tmp_path / "fresh")
    assert result.exit_code == 1 and not (tmp_path / "fresh").exists()


def test_help_shows_an_example() -> None:
    for command in ("embed", "ls", "info", "compact"):
        result = cli(command, "--help")
        assert result.exit_code == 0 and "Example: featctl" in result.stdout


def test_sample_catalogue_embeds(store: Path) -> None:
    result = cli("embed", "--source", REPO / "data" / "anime.tsv", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["rows"] >= 200 and out["encoded"] + out["failed"] == out["rows"]
