"""Dataset adapters: turn a public recommender dataset into featctl-ready TSV files.

An adapter reads a dataset's own files (or downloads them) and writes ``items.tsv``, ``users.tsv``
and ``interactions.tsv`` with a header row, ready for ``featctl embed --source`` and
``featctl coverage --interactions``. TSV here has no quoting (the way featctl reads it), so tabs and
line breaks inside values are written as spaces; quotes and commas are kept as they are.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featctl.errors import DatasetDownloadError, DatasetError, DatasetLineError, UnknownDatasetError, first_line
from featctl.stores.files import write_text_atomic

log = logging.getLogger(__name__)

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
DOWNLOAD_TIMEOUT = 60.0  # seconds without data before a download gives up
ML100K_FILES = ("u.data", "u.item", "u.user", "u.genre")
TMDB_SIBLING = "movielens-100k-tmdb"
_LINE_BREAKS = re.compile(r"[\t\r\n]+")
_INTEGER = r"^[0-9]+$"


@dataclass(frozen=True)
class PrepareResult:
    """What an adapter wrote: file name → rows (header not counted), where it read from, warnings."""

    name: str
    out: str
    files: dict[str, int] = field(default_factory=dict)
    side_data: bool = False
    warnings: tuple[str, ...] = ()
    source: str = ""
    tmdb: str | None = None
    downloaded: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data


@dataclass(frozen=True)
class DatasetAdapter:
    """A named dataset and the function that prepares it."""

    name: str
    description: str
    prepare: Callable[[str, str | None, str | None, str | None], PrepareResult]


def list_datasets() -> list[DatasetAdapter]:
    """The known adapters, by name."""
    return [ADAPTERS[name] for name in sorted(ADAPTERS)]


def prepare_dataset(name: str, out: str, source: str | None = None, tmdb: str | None = None,
                    url: str | None = None) -> PrepareResult:
    """Prepare dataset ``name`` into folder ``out`` from ``source`` (downloaded from ``url`` when None)."""
    adapter = ADAPTERS.get(name)
    if adapter is None:
        raise UnknownDatasetError(name, ADAPTERS)
    if source is not None and url is not None:
        raise DatasetError("give --from (a local copy) or --url (a download), not both")
    if os.path.exists(out) and not os.path.isdir(out):
        raise DatasetError(f"--out {out} is a file, not a folder; pass a folder to write the TSV files into")
    os.makedirs(out, exist_ok=True)
    return adapter.prepare(out, source, tmdb, url)


# --- movielens-100k -------------------------------------------------------------------------------

def prepare_movielens_100k(out: str, source: str | None, tmdb: str | None, url: str | None) -> PrepareResult:
    """ml-100k (u.data, u.item, u.user, u.genre) plus optional TMDB side data (overview, poster)."""
    downloaded = False
    if source is None:
        source, downloaded = _fetch_ml100k(url or ML100K_URL, os.path.join(out, "raw"))
    source = os.path.abspath(source)
    _check_ml100k_folder(source)
    tmdb = _side_data_folder(source, tmdb)
    warnings: list[str] = []

    genres = _read_genres(os.path.join(source, "u.genre"))
    items = _read_items(os.path.join(source, "u.item"), genres)
    users = _read_table(os.path.join(source, "u.user"), "|", ["user_id", "age", "gender", "occupation", "zip"],
                        integers=("user_id", "age"))
    ratings = _read_table(os.path.join(source, "u.data"), "\t", ["user_id", "item_id", "rating", "timestamp"],
                          integers=("user_id", "item_id", "rating", "timestamp"))
    _check_unique(os.path.join(source, "u.item"), items["item_id"], "item")
    _check_unique(os.path.join(source, "u.user"), users.column("user_id").to_pylist(), "user")

    header = ["item_id", "title", "year", "genres"]
    columns = [items["item_id"], items["title"], items["year"], items["genres"]]
    if tmdb is not None:
        overviews = _read_overviews(os.path.join(tmdb, "items.csv"), warnings)
        posters = [os.path.join(tmdb, "posters", f"{i}.jpg") for i in items["item_id"]]
        column = [overviews.get(i, "") for i in items["item_id"]]
        header += ["overview", "poster"]
        columns += [column, posters]
        empty = sum(1 for text in column if not text)
        if empty:
            warnings.append(f"{empty:,} of {len(column):,} items have no overview in {tmdb}/items.csv")
        missing = sum(1 for p in posters if not os.path.isfile(p))
        if missing:
            warnings.append(f"{missing:,} of {len(posters):,} poster files do not exist in {tmdb}/posters "
                            "(their paths are written anyway; an image embedder reports them as missing)")

    known_users, known_items = set(users.column("user_id").to_pylist()), set(items["item_id"])
    strays = sum(1 for u, i in zip(ratings.column("user_id").to_pylist(), ratings.column("item_id").to_pylist())
                 if u not in known_users or i not in known_items)
    if strays:
        warnings.append(f"{strays:,} interactions name a user or item that u.user / u.item do not have")

    files: dict[str, int] = {}
    cleaned = _write_tsv(os.path.join(out, "items.tsv"), header, columns)
    cleaned += _write_tsv(os.path.join(out, "users.tsv"), users.column_names,
                          [users.column(n).to_pylist() for n in users.column_names])
    cleaned += _write_tsv(os.path.join(out, "interactions.tsv"), ratings.column_names,
                          [ratings.column(n).to_pylist() for n in ratings.column_names])
    files.update({"items.tsv": len(items["item_id"]), "users.tsv": users.num_rows,
                  "interactions.tsv": ratings.num_rows})
    if cleaned:
        warnings.append(f"{cleaned:,} value(s) held tabs or line breaks, written as spaces (TSV has no quoting)")
    for warning in warnings:
        log.info(warning)
    log.info("movielens-100k: wrote %s into %s", files, out)
    return PrepareResult(name="movielens-100k", out=os.path.abspath(out), files=files, side_data=tmdb is not None,
                         warnings=tuple(warnings), source=source, tmdb=tmdb, downloaded=downloaded)


def _check_ml100k_folder(source: str) -> None:
    if not os.path.isdir(source):
        raise DatasetError(f"source folder not found: {source} (check --from; it should be the unpacked ml-100k "
                           "folder with u.data, u.item, u.user and u.genre, or leave out --from to download it)")
    for name in ML100K_FILES:
        if not os.path.isfile(os.path.join(source, name)):
            raise DatasetError(f"{source}: required file {name} is missing; --from must be the unpacked ml-100k "
                               f"folder (with {', '.join(ML100K_FILES)})")


def _side_data_folder(source: str, tmdb: str | None) -> str | None:
    """``--tmdb`` when given (it must hold items.csv), else the sibling movielens-100k-tmdb when present."""
    if tmdb is None:
        sibling = os.path.join(os.path.dirname(source), TMDB_SIBLING)
        if not os.path.isfile(os.path.join(sibling, "items.csv")):
            return None
        log.info("using side data found next to the source: %s", sibling)
        return sibling
    tmdb = os.path.abspath(tmdb)
    if not os.path.isdir(tmdb):
        raise DatasetError(f"side data folder not found: {tmdb} (check --tmdb)")
    if not os.path.isfile(os.path.join(tmdb, "items.csv")):
        raise DatasetError(f"{tmdb}: required file items.csv is missing; --tmdb must be the movielens-100k-tmdb "
                           "folder (items.csv and posters/)")
    return tmdb


def _read_table(path: str, delimiter: str, names: list[str], integers: Sequence[str] = ()) -> pa.Table:
    """A headerless latin-1 file as string columns, blank lines dropped; a line with the wrong number of
    fields, or a non-integer in ``integers``, raises DatasetLineError with its line number."""
    import pyarrow.csv as pacsv

    bad: list[tuple[int, str]] = []

    def invalid(row: Any) -> str:
        if not bad:
            bad.append((row.number, f"expected {row.expected_columns} fields separated by {delimiter!r}, "
                                    f"found {row.actual_columns}"))
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            # one thread and no skipped blank lines: table row i is line i + 1 of the file
            read_options=pacsv.ReadOptions(column_names=names, encoding="latin-1", use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False, ignore_empty_lines=False,
                                             invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        raise DatasetError(f"{path}: cannot read: {first_line(exc)}") from None
    if bad:
        raise DatasetLineError(path, *bad[0])
    blank = functools.reduce(pc.and_, [pc.equal(table.column(n), "") for n in names])
    for name in integers:
        ok = pc.or_(blank, pc.match_substring_regex(table.column(name), _INTEGER))
        if not pc.all(ok).as_py():
            row = pc.index(ok, False).as_py()
            value = table.column(name)[row].as_py()
            raise DatasetLineError(path, row + 1, f"{name} must be a whole number, found {value!r}")
    table = table.filter(pc.invert(blank))
    for name in integers:
        table = table.set_column(names.index(name), name, pc.cast(table.column(name), pa.int64()))
    return table


def _read_genres(path: str) -> list[str]:
    """Genre names in flag order (by their index in u.genre)."""
    table = _read_table(path, "|", ["name", "index"], integers=("index",))
    by_index = {int(i): n for n, i in zip(table.column("name").to_pylist(), table.column("index").to_pylist())}
    if not by_index or sorted(by_index) != list(range(len(by_index))) or len(by_index) != table.num_rows:
        raise DatasetError(f"{path}: genre indexes must be 0, 1, 2, … each once (found "
                           f"{sorted(int(i) for i in table.column('index').to_pylist())}); fix the file")
    return [by_index[i] for i in range(len(by_index))]


def _read_items(path: str, genres: list[str]) -> dict[str, list[Any]]:
    """u.item as columns item_id, title, year, genres."""
    flags = [f"g{i}" for i in range(len(genres))]
    names = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *flags]
    table = _read_table(path, "|", names, integers=("item_id",))
    for i, flag in enumerate(flags):
        ok = pc.is_in(table.column(flag), value_set=pa.array(["0", "1"]))
        if not pc.all(ok).as_py():
            row = pc.index(ok, False).as_py()
            item = table.column("item_id")[row].as_py()
            raise DatasetError(f"{path}: item {item}: the flag of genre '{genres[i]}' must be 0 or 1, found "
                               f"{table.column(flag)[row].as_py()!r}; fix that line")
    titles = table.column("title").to_pylist()
    dates = table.column("release_date").to_pylist()
    marks = [table.column(f).to_pylist() for f in flags]
    return {
        "item_id": table.column("item_id").to_pylist(),
        "title": titles,
        "year": [_year(t, d) for t, d in zip(titles, dates)],
        "genres": [", ".join(g for g, m in zip(genres, row) if m == "1") for row in zip(*marks)],
    }


def _year(title: str, release_date: str) -> int | None:
    """The film's year from its title, "Toy Story (1995)", else from the release date, "01-Jan-1995"."""
    found = re.findall(r"\((\d{4})\)", title) or re.findall(r"\b(\d{4})\b", release_date)
    return int(found[-1]) if found else None


def _read_overviews(path: str, warnings: list[str]) -> dict[int, str]:
    """TMDB overviews by movie_id; duplicate rows of an id are dropped (the first is kept)."""
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(include_columns=["movie_id", "overview"],
                                                 column_types={"movie_id": pa.string(), "overview": pa.string()},
                                                 strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError) as exc:
        raise DatasetError(f"{path}: cannot read the columns movie_id and overview: {first_line(exc)}; "
                           "it should be the items.csv of movielens-100k-tmdb") from None
    overviews: dict[int, str] = {}
    differing = 0
    for row, (raw_id, text) in enumerate(zip(table.column("movie_id").to_pylist(),
                                             table.column("overview").to_pylist())):
        if not re.fullmatch(r"[0-9]+(\.0*)?", raw_id.strip()):
            raise DatasetError(f"{path}: row {row + 1}: movie_id must be a whole number, found {raw_id!r}; "
                               "fix that row")
        movie_id = int(float(raw_id))
        if movie_id in overviews:
            differing += overviews[movie_id] != text
            continue
        overviews[movie_id] = text
    dropped = table.num_rows - len(overviews)
    if dropped:
        log.info("%s: dropped %d duplicate movie_id row(s)", path, dropped)
    if differing:
        warnings.append(f"{differing:,} duplicate movie_id row(s) in {path} differ from the first row of their "
                        "id; the first was kept")
    return overviews


def _check_unique(path: str, ids: list[int], what: str) -> None:
    seen: set[int] = set()
    repeated = sorted({i for i in ids if i in seen or seen.add(i)})
    if repeated:
        shown = ", ".join(str(i) for i in repeated[:10])
        raise DatasetError(f"{path}: {len(repeated)} {what} id(s) appear more than once: {shown}; "
                           "each id must have one line")


def _write_tsv(path: str, header: Sequence[str], columns: Sequence[Sequence[Any]]) -> int:
    """Write a header and columns as TSV, atomically; returns how many values had tabs or line breaks."""
    cleaned = 0

    def text(value: Any) -> str:
        nonlocal cleaned
        value = "" if value is None else str(value)
        fixed = _LINE_BREAKS.sub(" ", value)
        cleaned += fixed != value
        return fixed

    lines = ["\t".join(header)]
    lines.extend("\t".join(text(v) for v in row) for row in zip(*columns))
    write_text_atomic(path, "\n".join(lines) + "\n")
    return cleaned


# --- download -------------------------------------------------------------------------------------

def _fetch_ml100k(url: str, raw: str) -> tuple[str, bool]:
    """Download and unpack the ml-100k zip into ``raw``; reuse an earlier complete unpack."""
    folder = os.path.join(raw, "ml-100k")
    if all(os.path.isfile(os.path.join(folder, n)) for n in ML100K_FILES):
        log.info("using the copy downloaded before: %s", folder)
        return folder, False
    os.makedirs(raw, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".download-", dir=raw)
    try:
        archive = os.path.join(staging, "ml-100k.zip")
        log.info("downloading %s", url)
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "featctl"})
            with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response, open(archive, "wb") as fh:
                shutil.copyfileobj(response, fh, 1 << 20)
        except urllib.error.HTTPError as exc:
            raise DatasetDownloadError(url, f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise DatasetDownloadError(url, str(exc.reason)) from None
        except TimeoutError:
            raise DatasetDownloadError(url, f"no data for {DOWNLOAD_TIMEOUT:g} s") from None
        except (ValueError, OSError) as exc:
            raise DatasetDownloadError(url, first_line(exc)) from None
        unpacked = os.path.join(staging, "unpacked")
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(unpacked)  # extractall drops absolute paths and '..' from member names
        except zipfile.BadZipFile as exc:
            raise DatasetDownloadError(url, f"not a zip file ({first_line(exc)})") from None
        found = [d for d, _, files in os.walk(unpacked) if "u.data" in files]
        if not found:
            raise DatasetDownloadError(url, "the zip has no u.data (is it the ml-100k zip?)")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(min(found, key=len), folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder, True


ADAPTERS: dict[str, DatasetAdapter] = {
    "movielens-100k": DatasetAdapter(
        "movielens-100k",
        "MovieLens 100K: 100,000 ratings of 1,682 movies by 943 users; with TMDB side data, overviews and posters",
        prepare_movielens_100k,
    ),
}
