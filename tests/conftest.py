"""Shared fixtures: small real catalogue files, a store folder, the shipped MiniLM model."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def write_tsv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


CATALOGUE = [
    [1, "Star Drifters", "space,western", "Bounty hunters chase a fugitive across the rings of Saturn."],
    [2, "Kitchen Tales", "cooking,slice of life", "A retired chef opens a tiny ramen stall in a quiet town."],
    [3, "Iron Vanguard", "mecha,war", "Teen pilots defend a colony with giant robots."],
    [4, "Café Ōkami", "romance,comedy", "A wolf spirit works the night shift at a Tokyo café &amp; bakery."],
    [5, "Ghost Lantern", "horror,mystery", "A lantern maker sees the dead in every flame she lights."],
    [7, "Court Kings", "sports,basketball", "An underdog team fights its way to the national finals."],
]


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    return write_tsv(tmp_path / "items.tsv", ["id", "name", "tags", "summary"], CATALOGUE)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture(scope="session")
def minilm():
    """The SentenceTransformer users get for st:all-MiniLM-L6-v2, loaded the way they load it."""
    from featctl.encoders.registry import create_encoder

    return create_encoder("st:all-MiniLM-L6-v2").model


def manifest_bytes(store: Path) -> bytes | None:
    path = store / "manifest.json"
    return path.read_bytes() if path.exists() else None


def store_snapshot(store: Path) -> dict[str, bytes]:
    """Every file of a store but the lock, to show that a failed command changed nothing."""
    if not store.exists():
        return {}
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def read_manifest(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text())


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
