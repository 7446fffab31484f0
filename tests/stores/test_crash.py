"""Crash safety: a real ``featctl embed`` killed with SIGKILL at different points mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from featctl import EmbedConfig, SourceSpec, embed, open_store
from tests.conftest import write_tsv

ROWS = 240
PART_ROWS = 20
TEXT = "{name}: {summary}"


def _catalogue(path: Path) -> Path:
    genres = ["space opera", "cooking", "mecha war", "ghost story", "high-school sports", "detective"]
    rows = [[i, f"Show {i}", f"A {genres[i % 6]} tale number {i} about {'friends ' * (i % 7)}and rivals."]
            for i in range(1, ROWS + 1)]
    return write_tsv(path, ["id", "name", "summary"], rows)


def _parts(store: Path) -> int:
    try:
        return len(json.loads((store / "manifest.json").read_text())["sets"]["item_text"]["parts"])
    except (OSError, ValueError, KeyError):
        return 0


def _start(source: Path, store: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "featctl", "embed", "--source", str(source), "--store", str(store),
           "--text", TEXT, "--part-rows", str(PART_ROWS), "--batch-size", "4"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after(proc: subprocess.Popen, store: Path, parts: int, extra: float) -> None:
    deadline = time.monotonic() + 240
    while _parts(store) < parts and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(extra)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_kill_9_at_several_points_loses_only_the_part_in_flight(tmp_path: Path, minilm) -> None:
    source = _catalogue(tmp_path / "items.tsv")
    store = tmp_path / "store"
    committed_before = 0
    for parts, extra in ((0, 0.0), (1, 0.0), (3, 0.037), (6, 0.11)):
        proc = _start(source, store)
        _kill_after(proc, store, parts, extra)
        fs_ids = 0
        if (store / "manifest.json").exists():
            fs = open_store(store).feature_set("item_text") if _parts(store) else None
            if fs is not None:
                assert fs.verify() == []
                fs_ids = fs.summary()["ids"]
                assert fs.to_arrow().num_rows == fs_ids  # every committed part reads back
        assert fs_ids >= committed_before
        committed_before = fs_ids

    assert 0 < committed_before < ROWS, "the kills should have landed mid-run"
    result = embed(EmbedConfig(source=SourceSpec(path=str(source)), store=str(store), text=TEXT,
                               part_rows=PART_ROWS))
    assert (result.skipped, result.encoded, result.failed) == (committed_before, ROWS - committed_before, 0)
    files = sorted(p.name for p in (store / "features" / "item_text").iterdir())
    assert files == [p["file"] for p in open_store(store).feature_set("item_text").entry["parts"]]

    fs = open_store(store).feature_set("item_text")
    ids = list(range(1, ROWS + 1))
    matrix, mask = fs.vectors(ids)
    assert mask.all() and fs.summary()["superseded_rows"] == 0
    texts = [line.split("\t") for line in source.read_text().splitlines()[1:]]
    direct = minilm.encode([f"{name}: {summary}" for _, name, summary in texts], normalize_embeddings=True)
    np.testing.assert_allclose(matrix, direct, atol=1e-5)
