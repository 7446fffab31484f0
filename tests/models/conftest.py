"""The sample store the trainer tests read: MiniLM vectors of the sample catalogue and user bios."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from featctl.pipeline.config import EmbedConfig
from featctl.pipeline.runner import embed
from featctl.pipeline.sources import SourceSpec
from tests.conftest import REPO

DATA = REPO / "data"


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """item_text (MiniLM over the catalogue) and user_text (MiniLM over the bios; 15 are empty)."""
    root = tmp_path_factory.mktemp("sample") / "store"
    embed(EmbedConfig(source=SourceSpec(str(DATA / "anime.tsv")), store=str(root)))
    embed(EmbedConfig(source=SourceSpec(str(DATA / "users.tsv")), store=str(root), name="user_text",
                      entity="user", id_column="user_id", text="{bio}"))
    return root


@pytest.fixture
def store(sample_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(sample_store, copy)
    return copy
