"""Dataset adapters on real files: a small synthetic ml-100k, a download over loopback HTTP, bad inputs,
and the real MovieLens 100K with its TMDB side data when shared/data is there."""

from __future__ import annotations

import csv
import functools
import http.server
import os
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from featctl.errors import DatasetDownloadError, DatasetError, DatasetLineError, UnknownDatasetError
from featctl.pipeline.datasets import ML100K_FILES, list_datasets, prepare_dataset
from featctl.pipeline.sources import Source, SourceSpec

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
CHILDREN = "Children's"


def flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES)


U_ITEM = [
    f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
    f"{flags('Animation', CHILDREN, 'Comedy')}",
    f"2|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/x|{flags('Drama', 'Musical')}",
    f"3|unknown||||{flags('unknown')}",
    f"4|Richard III (1995)|22-Jan-1996||http://us.imdb.com/y|{flags('Drama', 'War')}",
    f"5|Shiloh|01-Jan-1997|||{flags(CHILDREN)}",
]
U_USER = ["1|24|M|technician|85711", "2|53|F|other|94043", "3|23|M|writer|T8H1N"]
U_DATA = ["1\t1\t5\t874965758", "1\t2\t3\t876893171", "2\t3\t4\t888550871", "3\t1\t1\t881250949",
          "3\t5\t2\t891717742"]

OVERVIEW_1 = 'Led by Woody, Andy\'s toys live happily; "Buzz" arrives, and\tthen'
TMDB_ROWS = [  # movie_id, title, year, overview; item 3 has none, item 1 appears twice (an exact copy)
    ["1", "Toy Story (1995)", "1995.0", OVERVIEW_1],
    ["2", "Misérables, Les (1995)", "1995.0", "Henri Fortin reads \"Les Misérables\",\nand sees his own life."],
    ["1", "Toy Story (1995)", "1995.0", OVERVIEW_1],
    ["4", "Richard III (1995)", "1995.0", "Shakespeare's king, in 1930s England."],
    ["5", "Shiloh (1997)", "1997.0", ""],
]


def write_ml100k(folder: Path, *, item_lines: list[str] | None = None, data_lines: list[str] | None = None,
                 user_lines: list[str] | None = None) -> Path:
    """A small ml-100k folder in the original formats (u.item in latin-1, u.genre with a trailing blank line)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n", encoding="latin-1")
    (folder / "u.item").write_bytes(("\n".join(item_lines or U_ITEM) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("\n".join(user_lines or U_USER) + "\n", encoding="latin-1")
    (folder / "u.data").write_text("\n".join(data_lines or U_DATA) + "\n", encoding="latin-1")
    return folder


def write_tmdb(folder: Path, posters: tuple[int, ...] = (1, 2, 5)) -> Path:
    (folder / "posters").mkdir(parents=True, exist_ok=True)
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["movie_id", "title", "year", "overview", "original_language"])
        writer.writerows([*row, "en"] for row in TMDB_ROWS)
    for item in posters:
        (folder / "posters" / f"{item}.jpg").write_bytes(b"\xff\xd8\xff")
    return folder


def read_back(path: Path) -> list[dict[str, str]]:
    """Rows as featctl's own source reader sees them."""
    source = Source(SourceSpec(str(path)))
    return pa.Table.from_batches(list(source.batches()), schema=source.schema).to_pylist()


@pytest.fixture
def ml(tmp_path: Path) -> Path:
    return write_ml100k(tmp_path / "ml-100k")


def test_items_users_interactions_value_by_value(ml: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "nested"
    result = prepare_dataset("movielens-100k", str(out), source=str(ml))
    assert result.files == {"items.tsv": 5, "users.tsv": 3, "interactions.tsv": 5}
    assert (result.name, result.out, result.side_data, result.tmdb) == ("movielens-100k", str(out), False, None)
    assert (result.source, result.downloaded, result.warnings) == (str(ml), False, ())
    assert read_back(out / "items.tsv") == [
        {"item_id": "1", "title": "Toy Story (1995)", "year": "1995", "genres": "Animation, Children's, Comedy"},
        {"item_id": "2", "title": "Misérables, Les (1995)", "year": "1995", "genres": "Drama, Musical"},
        {"item_id": "3", "title": "unknown", "year": "", "genres": "unknown"},
        {"item_id": "4", "title": "Richard III (1995)", "year": "1995", "genres": "Drama, War"},
        {"item_id": "5", "title": "Shiloh", "year": "1997", "genres": "Children's"},
    ]
    assert read_back(out / "users.tsv") == [
        dict(zip(["user_id", "age", "gender", "occupation", "zip"], line.split("|"))) for line in U_USER]
    assert read_back(out / "interactions.tsv") == [
        dict(zip(["user_id", "item_id", "rating", "timestamp"], line.split("\t"))) for line in U_DATA]
    assert "Misérables".encode() in (out / "items.tsv").read_bytes()  # written as UTF-8
    assert sorted(os.listdir(out)) == ["interactions.tsv", "items.tsv", "users.tsv"]  # no temporary files


def test_tmdb_side_data_adds_overview_and_poster_for_every_item(ml: Path, tmp_path: Path) -> None:
    tmdb = write_tmdb(tmp_path / "side")
    out = tmp_path / "out"
    result = prepare_dataset("movielens-100k", str(out), source=str(ml), tmdb=str(tmdb))
    assert result.side_data and result.tmdb == str(tmdb) and result.files["items.tsv"] == 5
    rows = read_back(out / "items.tsv")
    assert list(rows[0]) == ["item_id", "title", "year", "genres", "overview", "poster"]
    # quotes and commas survive as they are; a tab or a line break becomes a space (TSV has no quoting)
    assert [r["overview"] for r in rows] == [
        OVERVIEW_1.replace("\t", " "), "Henri Fortin reads \"Les Misérables\", and sees his own life.", "",
        "Shakespeare's king, in 1930s England.", ""]
    assert [r["poster"] for r in rows] == [str(tmdb / "posters" / f"{i}.jpg") for i in range(1, 6)]
    assert any("2 of 5 items have no overview" in w for w in result.warnings)
    assert any("2 of 5 poster files do not exist" in w for w in result.warnings)
    assert any("2 value(s) held tabs or line breaks" in w for w in result.warnings)


def test_sibling_tmdb_folder_is_found_next_to_the_source(tmp_path: Path) -> None:
    source = write_ml100k(tmp_path / "data" / "movielens-100k")
    tmdb = write_tmdb(tmp_path / "data" / "movielens-100k-tmdb")
    result = prepare_dataset("movielens-100k", str(tmp_path / "out"), source=str(source))
    assert result.side_data and result.tmdb == str(tmdb)
    assert read_back(tmp_path / "out" / "items.tsv")[1]["poster"] == str(tmdb / "posters" / "2.jpg")


def test_list_datasets() -> None:
    assert [a.name for a in list_datasets()] == ["movielens-100k"]
    assert "MovieLens 100K" in list_datasets()[0].description


# --- download over real HTTP on loopback ---------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, and its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def zip_folder(folder: Path, archive: Path, prefix: str = "ml-100k") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"{prefix}/{path.name}")
    return archive


def test_download_unpacks_into_raw_and_reuses_it(ml: Path, tmp_path: Path, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    zip_folder(ml, root / "ml-100k.zip")
    out = tmp_path / "out"
    result = prepare_dataset("movielens-100k", str(out), url=f"{base}/ml-100k.zip")
    raw = out / "raw" / "ml-100k"
    assert result.downloaded and result.source == str(raw) and not result.side_data
    assert sorted(os.listdir(out / "raw")) == ["ml-100k"]  # the zip and the staging folder are gone
    assert all((raw / name).is_file() for name in ML100K_FILES)
    assert result.files == {"items.tsv": 5, "users.tsv": 3, "interactions.tsv": 5}
    assert read_back(out / "items.tsv")[1]["title"] == "Misérables, Les (1995)"
    (root / "ml-100k.zip").unlink()  # a second run does not download again
    again = prepare_dataset("movielens-100k", str(out), url=f"{base}/ml-100k.zip")
    assert not again.downloaded and again.files == result.files


def test_download_failures_name_the_url_and_the_reason(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    (root / "bad.zip").write_bytes(b"this is not a zip")
    cases = {f"{base}/missing.zip": "HTTP 404", f"{base}/bad.zip": "not a zip file"}
    with zipfile.ZipFile(root / "empty.zip", "w") as zf:
        zf.writestr("other/readme.txt", "hello")
    cases[f"{base}/empty.zip"] = "the zip has no u.data"
    for url, reason in cases.items():
        with pytest.raises(DatasetDownloadError) as err:
            prepare_dataset("movielens-100k", str(tmp_path / "out"), url=url)
        assert str(err.value).startswith(f"cannot download {url}: {reason}") and "--url" in str(err.value)
    assert os.listdir(tmp_path / "out" / "raw") == []  # nothing half-written is left
    with pytest.raises(DatasetDownloadError, match=r"cannot download http://127\.0\.0\.1:9/x\.zip: "):
        prepare_dataset("movielens-100k", str(tmp_path / "out"), url="http://127.0.0.1:9/x.zip")


# --- bad inputs ------------------------------------------------------------------------------------

def test_missing_folder_and_files_are_named(ml: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    with pytest.raises(DatasetError, match=r"source folder not found: .*/nope \(check --from"):
        prepare_dataset("movielens-100k", out, source=str(tmp_path / "nope"))
    for name in ML100K_FILES:
        folder = write_ml100k(tmp_path / f"without-{name}")
        (folder / name).unlink()
        with pytest.raises(DatasetError, match=rf"required file {name} is missing; --from must be"):
            prepare_dataset("movielens-100k", out, source=str(folder))
    with pytest.raises(DatasetError, match=r"side data folder not found: .*/none \(check --tmdb\)"):
        prepare_dataset("movielens-100k", out, source=str(ml), tmdb=str(tmp_path / "none"))
    with pytest.raises(DatasetError, match=r"required file items.csv is missing"):
        prepare_dataset("movielens-100k", out, source=str(ml), tmdb=str(ml))


def test_malformed_lines_give_file_and_line_number(tmp_path: Path) -> None:
    short = write_ml100k(tmp_path / "a", item_lines=[*U_ITEM[:3], "4|Richard III (1995)|22-Jan-1996", *U_ITEM[4:]])
    with pytest.raises(DatasetLineError) as err:
        prepare_dataset("movielens-100k", str(tmp_path / "out"), source=str(short))
    assert str(err.value).startswith(f"{short / 'u.item'}: line 4: expected 24 fields separated by '|', found 3;")
    data = write_ml100k(tmp_path / "b", data_lines=[*U_DATA[:2], "", "2\t3\tfour\t888550871"])
    with pytest.raises(DatasetLineError, match=r"u\.data: line 4: rating must be a whole number, found 'four'"):
        prepare_dataset("movielens-100k", str(tmp_path / "out"), source=str(data))
    flag = write_ml100k(tmp_path / "c", item_lines=[U_ITEM[0].replace("|0|0|0|1|", "|0|0|0|x|", 1)])
    with pytest.raises(DatasetError, match=r"item 1: the flag of genre 'Animation' must be 0 or 1, found 'x'"):
        prepare_dataset("movielens-100k", str(tmp_path / "out"), source=str(flag))
    twice = write_ml100k(tmp_path / "d", user_lines=[*U_USER, "2|30|F|artist|12345"])
    with pytest.raises(DatasetError, match=r"u\.user: 1 user id\(s\) appear more than once: 2;"):
        prepare_dataset("movielens-100k", str(tmp_path / "out"), source=str(twice))


def test_unknown_name_and_conflicting_options(ml: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownDatasetError, match=r"unknown dataset 'ml-1m'; known datasets: movielens-100k"):
        prepare_dataset("ml-1m", str(tmp_path / "out"), source=str(ml))
    with pytest.raises(DatasetError, match="not both"):
        prepare_dataset("movielens-100k", str(tmp_path / "out"), source=str(ml), url="http://127.0.0.1:9/x.zip")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        prepare_dataset("movielens-100k", str(tmp_path / "file"), source=str(ml))


# --- the real MovieLens 100K ----------------------------------------------------------------------

real = pytest.mark.skipif(not (SHARED_DATA / "movielens-100k" / "u.data").is_file()
                          or not (SHARED_DATA / "movielens-100k-tmdb" / "items.csv").is_file(),
                          reason="shared/data/movielens-100k(-tmdb) is not on this machine")


@pytest.fixture(scope="module")
def real_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("ml100k")
    return out, prepare_dataset("movielens-100k", str(out), source=str(SHARED_DATA / "movielens-100k"))


@real
def test_real_movielens_100k_with_tmdb(real_out: tuple[Path, object]) -> None:
    out, result = real_out
    tmdb = SHARED_DATA / "movielens-100k-tmdb"
    assert result.files == {"items.tsv": 1682, "users.tsv": 943, "interactions.tsv": 100_000}
    assert result.side_data and result.tmdb == str(tmdb.resolve())
    items = read_back(out / "items.tsv")
    assert len(items) == 1682 and len(read_back(out / "users.tsv")) == 943
    assert len(read_back(out / "interactions.tsv")) == 100_000
    assert sum(1 for r in items if r["overview"] == "") == 18
    assert [r["poster"] for r in items] == [str(tmdb.resolve() / "posters" / f"{i}.jpg") for i in range(1, 1683)]
    assert sum(1 for r in items if os.path.isfile(r["poster"])) == 1663
    assert (items[0]["title"], items[0]["genres"], items[0]["year"]) == (
        "Toy Story (1995)", "Animation, Children's, Comedy", "1995")
    assert items[542]["title"] == "Misérables, Les (1995)" and items[266]["year"] == ""


@real
def test_real_overviews_match_items_csv(real_out: tuple[Path, object]) -> None:
    out, _ = real_out
    with open(SHARED_DATA / "movielens-100k-tmdb" / "items.csv", newline="", encoding="utf-8") as fh:
        want: dict[str, str] = {}
        for row in csv.DictReader(fh):
            want.setdefault(row["movie_id"], re.sub(r"[\t\r\n]+", " ", row["overview"]))
    got = {r["item_id"]: r["overview"] for r in read_back(out / "items.tsv")}
    assert got == want and sum('"' in text for text in got.values()) > 100
