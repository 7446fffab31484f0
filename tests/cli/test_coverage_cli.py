"""``featctl coverage`` as a user types it: tables, JSON, gates, HTML, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from featctl.cli import app
from tests.conftest import store_snapshot
from tests.pipeline.test_coverage import scenario  # noqa: F401  (the fixture)
from tests.pipeline.test_coverage_html import assert_drawn, open_in_chromium

runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, ["coverage", *(str(a) for a in args)])


def _args(s: dict[str, Path]) -> list[object]:
    return ["--store", s["store"], "--interactions", s["interactions"], "--catalog", s["catalog"]]


def test_json_report_is_printed_and_saved(scenario: dict[str, Path]) -> None:  # noqa: F811
    result = cli(*_args(scenario), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["schema"] == 1 and [s["name"] for s in report["sets"]] == ["item_text"]
    item = report["sets"][0]
    assert (item["catalog"]["ratio"], item["interactions"]["ratio"]) == (8 / 11, 8 / 13)
    assert item["interactions"]["weighted_ratio"] == 93 / 105
    assert item["missing"]["failed"] == {"empty text": 1} and item["vectors"]["nan_or_inf"] == 0
    saved = sorted(p.name for p in (scenario["store"] / "reports").iterdir())
    assert len(saved) == 2 and saved[0].endswith(".html") and saved[1].endswith(".json")


def test_terminal_report_lists_missing_ids_and_warnings(scenario: dict[str, Path]) -> None:  # noqa: F811
    result = cli(*_args(scenario), "--list-missing", "2", "--no-save")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "72.7% (8/11)" in out and "88.6% (93/105)" in out
    assert "never encoded 5 · failed (empty text) 1 · stale 1" in out
    assert "never encoded: 99, 10" in out and "failed (empty text): 6" in out and "stale: 3" in out
    assert "! 3 of 11 catalogue ids have no vector" in out and "tail" in out
    assert not (scenario["store"] / "reports").exists()


def test_gates_fail_with_one_line_after_the_report(scenario: dict[str, Path]) -> None:  # noqa: F811
    result = cli(*_args(scenario), "--min", "95%", "--no-save")
    assert result.exit_code == 1 and "item_text" in result.stdout
    assert result.stderr.startswith("error: feature set 'item_text' covers 72.7% of the catalogue (8 of 11), "
                                    "below the minimum 95.0% (--min)") and result.stderr.count("\n") == 1
    weighted = cli(*_args(scenario), "--min-weighted", "0.9", "--no-save", "--json")
    assert weighted.exit_code == 1 and "88.6% of the interactions (93 of 105)" in weighted.stderr
    assert cli(*_args(scenario), "--min", "0.5", "--min-weighted", "0.8", "--no-save").exit_code == 0


def test_bad_input_is_one_line_and_changes_nothing(scenario: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    before = store_snapshot(scenario["store"])
    cases = [
        ([*_args(scenario), "--item-col", "movie"], "unknown column 'movie' in --item-col of"),
        ([*_args(scenario), "--id", "sku"], "available columns: id, name, summary"),
        ([*_args(scenario), "--min", "1.5"], "--min '1.5' is not a ratio; write e.g. 0.95 or 95%"),
        ([*_args(scenario), "--set", "nope"], "no feature set named 'nope'; sets in this store: item_text"),
        (["--store", scenario["store"], "--interactions", tmp_path / "gone.tsv"],
         "(check the path passed to --interactions)"),
        (["--store", scenario["store"], "--id", "sku"], "--id names the id column of --catalog FILE; pass --catalog"),
        ([*_args(scenario), "--html", tmp_path / "nowhere" / "r.html"], "no such folder for the file"),
        ([*_args(scenario), "--html", tmp_path], "is a folder, not a file"),
        (["--store", tmp_path / "empty"], "has no feature sets yet; create one with featctl embed"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 1 and result.stderr.startswith("error: "), (args, result.output)
        assert message in result.stderr and result.stderr.count("\n") == 1, (args, result.stderr)
    assert store_snapshot(scenario["store"]) == before
    assert not (tmp_path / "empty").exists()


def test_html_page_of_a_real_report_renders_in_chromium(scenario: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    page = tmp_path / "report.html"
    result = cli(*_args(scenario), "--html", page, "--no-save")
    assert result.exit_code == 0 and str(page) in result.stdout
    text = page.read_text()
    assert "item_text" in text and text.count("<svg") >= 3 and "<script" not in text
    dom, png = open_in_chromium(page, tmp_path)
    assert "item_text" in dom and "Coverage by popularity bucket" in dom and "72.7%" in dom
    assert_drawn(png)
