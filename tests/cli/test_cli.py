"""The command line, driven through Typer's CliRunner as a user would type it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    jsonl = tmp_path / "latin.jsonl"
    jsonl.write_bytes(b'{"id": 1, "name": "ok"}\n{"id": 2, "name": "Mis\xe9rables"}\n')
    twice = tmp_path / "twice.csv"
    twice.write_text("id,x,x\n1,a,b\n")
    return [
        (["--source", tmp_path / "missing.tsv"], "file not found: "),
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
        (["--source", catalogue, "--batch-size", "0"], "batch_size=0 is invalid: expected a positive integer"),
        (["--source", catalogue, "--encoding", "klingon"], "unknown text --encoding 'klingon'"),
        (["--source", catalogue, "--encoding", "rot13"], "unknown text --encoding 'rot13'"),
        (["--source", catalogue, "--encoding", "utf-16"], "cannot read as tsv"),
        (["--source", catalogue, "--text", ""], "--text is empty"),
        (["--sql", "SELECT * FROM nope_table"], "--sql query failed in DuckDB: Catalog Error"),
        (["--source", jsonl], "line 2 is not valid utf-8 (byte(s) e9 at column 23); JSON Lines must be UTF-8"),
        (["--source", twice], "column name(s) 'x' appear more than once"),
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


def test_sample_catalogue_embeds(store: Path, minilm) -> None:
    import csv
    import html

    from featctl import open_store

    result = cli("embed", "--source", REPO / "data" / "anime.tsv", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    with open(REPO / "data" / "anime.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert (out["rows"], out["encoded"], out["failed"]) == (len(rows), len(rows), 0) and len(rows) >= 200

    # Awkward rows: an HTML entity, an empty summary, non-ASCII names, a title used twice.
    picked = [r for r in rows if "&amp;" in r["summary"]][:1] + [r for r in rows if not r["summary"]][:1] + \
        [r for r in rows if not r["name"].isascii()][:2]
    names = [r["name"] for r in rows]
    picked += [r for r in rows if names.count(r["name"]) > 1]
    texts = ["\n".join(f"{k}: {html.unescape(r[k])}" for k in ("name", "tags", "type", "summary") if r[k])
             for r in picked]
    matrix, mask = open_store(store).feature_set("item_text").vectors([int(r["id"]) for r in picked])
    assert mask.all() and len(picked) >= 6
    np.testing.assert_allclose(matrix, minilm.encode(texts, normalize_embeddings=True), atol=1e-5)


def test_store_problems_are_one_line(tmp_path: Path, catalogue: Path, store: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a store")
    result = cli("embed", "--source", catalogue, "--store", afile)
    assert result.exit_code == 1 and result.stderr == f"error: store path {afile} is a file, not a folder; " \
        "pass another --store\n"
    assert cli("embed", "--source", catalogue, "--store", store, "--part-rows", "4").exit_code == 0
    compact = cli("compact", "item_text", "--store", store, "--part-rows", "0")
    assert compact.exit_code == 1 and "--part-rows must be at least 1" in compact.stderr
    next((store / "features" / "item_text").glob("part-000002.parquet")).unlink()
    verify = cli("info", "item_text", "--store", store, "--verify")
    assert verify.exit_code == 1
    assert verify.stderr.startswith("error: set 'item_text' has damaged parts: part-000002.parquet: missing;")
    listing = json.loads(cli("ls", "--store", store, "--json").stdout)
    assert listing[0]["name"] == "item_text" and "cannot read part" in listing[0]["error"]


def test_tsv_quotes_are_ordinary_characters(tmp_path: Path, store: Path) -> None:
    source = tmp_path / "q.tsv"
    source.write_text('id\tname\n1\t"Weird" Al\n2\tsay "hi\n3\tplain\n', encoding="utf-8")
    result = cli("embed", "--source", source, "--store", store, "--text", "{name}", "--encoder", "hash:v1", "--json")
    assert result.exit_code == 0, result.output
    from featctl import open_store
    from tests.conftest import hash_vector

    matrix, mask = open_store(store).feature_set("item_text").vectors([1, 2, 3])
    assert mask.all() and np.allclose(matrix[0], hash_vector('"Weird" Al')) and np.allclose(
        matrix[1], hash_vector('say "hi'))
