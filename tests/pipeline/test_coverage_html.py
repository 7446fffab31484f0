"""The coverage HTML page: self-contained, escaped, with plots, and readable in a real headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from featctl.pipeline.coverage.html import render_html

EVIL = "<script>alert(1)</script>"


def _report() -> dict[str, Any]:
    edges = [0.9 + 0.01 * i for i in range(21)]
    counts = [0, 0, 1, 0, 0, 2, 3, 5, 8, 13, 21, 30, 40, 45, 30, 15, 8, 2, 1, 0]
    item = {
        "name": "item_text", "entity": "item", "modality": "text", "encoder": "st:all-MiniLM-L6-v2",
        "dim": 384, "dtype": "float32", "id_type": "string",
        "stored": {"ids": 226, "vectors": 224, "failed": 2},
        "catalog": {"path": "data/anime.tsv", "id_column": "id", "origin": "set source", "rows": 228, "ids": 227,
                    "covered": 224, "ratio": 224 / 227, "fresh": 223, "fresh_ratio": 223 / 227,
                    "empty_ids": 0, "duplicate_ids": 1, "duplicate_examples": ["a17"]},
        "interactions": {"column": "item_id", "rows": 6938, "empty_ids": 0, "ids": 220, "covered": 218,
                         "ratio": 218 / 220, "covered_rows": 6900, "weighted_ratio": 6900 / 6938},
        "buckets": [
            {"name": "head", "ids": 40, "covered": 40, "ratio": 1.0, "interactions": 3469,
             "covered_interactions": 3469, "weighted_ratio": 1.0},
            {"name": "torso", "ids": 60, "covered": 59, "ratio": 59 / 60, "interactions": 2081,
             "covered_interactions": 2060, "weighted_ratio": 2060 / 2081},
            {"name": "tail", "ids": 120, "covered": 119, "ratio": 119 / 120, "interactions": 1388,
             "covered_interactions": 1371, "weighted_ratio": 1371 / 1388},
            {"name": "no interactions", "ids": 7, "covered": 6, "ratio": 6 / 7, "interactions": 0,
             "covered_interactions": 0, "weighted_ratio": None},
        ],
        "missing": {"total": 4, "never_encoded": 1, "failed": {"empty text": 1, "rejected by the API": 1},
                    "stale": 1, "stale_note": None,
                    "examples": {"never_encoded": ["a999"], "failed": {"empty text": [EVIL],
                                                                        "rejected by the API": ["a12"]},
                                 "stale": ["a42"]}},
        "vectors": {"rows": 224, "dim": 384, "dtype": "float32", "nan_or_inf": 0, "zero_norm": 0,
                    "norm": {"min": 0.92, "median": 1.03, "max": 1.08},
                    "histogram": {"edges": edges, "counts": counts},
                    "identical": {"groups": 1, "ids": 2, "same_content_groups": 1, "examples": [["a67", "a72"]]}},
        "id_space": {"id_type": "string", "ids": 229, "max_id": None, "gap": None,
                     "not_in_catalog": {"ids": 2, "rows": 10, "examples": ["a500", "a501"]},
                     "forms": {"interactions": {"text": 220}, "stored": {"text": 226}},
                     "mismatches": [{"source": "catalog", "kind": "padded with spaces", "ids": 3, "rows": 3,
                                     "examples": [[" a3", "a3"], ["a4 ", "a4"]],
                                     "fix": "strip spaces from the catalogue's id column"}]},
        "warnings": ["1 catalogue id (0.4%) was never encoded: run featctl embed again",
                     f"1 id failed to encode (empty text), e.g. {EVIL}",
                     "1 group of 2 ids share one vector (same content)"],
    }
    user = {
        "name": "user_text", "entity": "user", "modality": "text", "encoder": "openai:text-embedding-3-small",
        "dim": 1536, "dtype": "float16", "id_type": "int64",
        "stored": {"ids": 500, "vectors": 500, "failed": 0},
        "catalog": None,
        "interactions": {"column": "user_id", "rows": 6938, "empty_ids": 0, "ids": 510, "covered": 497,
                         "ratio": 497 / 510, "covered_rows": 6800, "weighted_ratio": 6800 / 6938},
        "buckets": [
            {"name": "head", "ids": 50, "covered": 50, "ratio": 1.0, "interactions": 3469,
             "covered_interactions": 3469, "weighted_ratio": 1.0},
            {"name": "torso", "ids": 150, "covered": 148, "ratio": 148 / 150, "interactions": 2081,
             "covered_interactions": 2050, "weighted_ratio": 2050 / 2081},
            {"name": "tail", "ids": 310, "covered": 299, "ratio": 299 / 310, "interactions": 1388,
             "covered_interactions": 1281, "weighted_ratio": 1281 / 1388},
        ],
        "missing": {"total": 13, "never_encoded": 13, "failed": {}, "stale": None,
                    "stale_note": "not checked: no catalogue to compare content with",
                    "examples": {"never_encoded": [501, 502, 503], "failed": {}, "stale": []}},
        "vectors": {"rows": 500, "dim": 1536, "dtype": "float16", "nan_or_inf": 0, "zero_norm": 0,
                    "norm": {"min": 1.0, "median": 1.0, "max": 1.0}, "histogram": None,
                    "identical": {"groups": 0, "ids": 0, "same_content_groups": 0, "examples": []}},
        "id_space": {"id_type": "int64", "ids": 513, "max_id": 515, "gap": 3, "not_in_catalog": None,
                     "forms": {"interactions": {"integer": 500, "decimal": 10}, "stored": {"integer": 500}},
                     "mismatches": [{"source": "interactions", "kind": "decimal", "ids": 10, "rows": 42,
                                     "examples": [["12.0", 12], ["7.0", 7]],
                                     "fix": "cast user_id to integer before exporting the log"}]},
        "warnings": ["13 users in the interaction log (2.5%) have no vector"],
    }
    return {"schema": 1, "created_at": "2026-11-23T04:30:00+00:00", "store": "/abs/featstore",
            "interactions": {"path": "data/interactions.tsv", "rows": 6938}, "sets": [item, user]}


def test_page_is_self_contained_escaped_and_has_plots():
    page = render_html(_report())
    assert page.startswith("<!DOCTYPE html>")
    assert "featctl coverage report" in page
    assert "/abs/featstore" in page and "2026-11-23T04:30:00+00:00" in page and "data/interactions.tsv" in page
    # nothing is fetched: no external scripts, stylesheets, images or fonts (SVG xmlns URIs are only names)
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page
    assert not re.search(r"""url\(\s*["']?(?!#)""", page)  # only the SVGs' own clip paths: url(#id)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    for name in ("item_text", "user_text"):
        assert name in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert EVIL not in page
    assert page.count("<svg") >= 3
    # summary formatting: percentages with one decimal, an em dash for the user set's missing catalogue
    assert "98.7%" in page and "—" in page
    assert "strip spaces from the catalogue&#39;s id column" in page
    assert "not checked: no catalogue to compare content with" in page


def test_page_renders_without_optional_parts():
    report = _report()
    report["interactions"] = None
    report["sets"][0]["vectors"]["histogram"] = {"edges": [], "counts": []}
    report["sets"][0]["buckets"] = []
    page = render_html(report)
    assert "no interaction log" in page
    assert "No norm histogram" in page
    assert render_html({"schema": 1, "created_at": "x", "store": "/s", "interactions": None, "sets": []})


def test_svg_is_deterministic():
    assert render_html(_report()) == render_html(_report())


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Chromium not installed: apt-get install chromium")


def open_in_chromium(html: Path, tmp_path: Path) -> tuple[str, Path]:
    """The page's DOM after a headless Chromium rendered it, and a screenshot of it (skips without Chromium)."""
    browser = _browser()
    png = tmp_path / "coverage.png"
    url = html.as_uri()
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([*common, "--window-size=1280,2400", f"--screenshot={png}", url],
                   check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout
    return dom, png


def assert_drawn(png: Path) -> None:
    """A white page with things drawn on it, not a blank one."""
    from PIL import Image

    with Image.open(png) as img:
        assert img.size == (1280, 2400)
        colours = img.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 20
    count, most_common = max(colours)
    assert most_common == (255, 255, 255) and count < 0.97 * 1280 * 2400


def test_page_renders_in_headless_chromium(tmp_path: Path):
    html = tmp_path / "coverage.html"
    html.write_text(render_html(_report()), encoding="utf-8")
    dom, png = open_in_chromium(html, tmp_path)
    for text in ("featctl coverage report", "item_text", "user_text", "coverage by popularity"):
        assert text in dom.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # still text, never an element
    assert_drawn(png)
