"""Shared fixtures: small real catalogue files, a store folder, the shipped MiniLM model, an S3 server (moto)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featctl.encoders.base import Encoder
from featctl.encoders.registry import register

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


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Model-file digests go to a temporary cache, not the user's ~/.cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


class HashEncoder(Encoder):
    """A fast deterministic plugin encoder (vectors derived from a hash of the text) for tests of the
    runner's mechanics; it can be told to fail on chosen texts or after a number of calls."""

    prefix = "hash"
    dim = 8
    calls: list[list[str]] = []
    fail_texts: set[str] = set()
    interrupt_after: int | None = None
    broken: str | None = None

    def __init__(self, model: str, **options: object) -> None:
        self.recipe = {"encoder": "hash", "model": model}
        self.batch_size = int(options.get("batch_size", 2))

    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        HashEncoder.calls.append(list(inputs))
        if HashEncoder.interrupt_after is not None and len(HashEncoder.calls) > HashEncoder.interrupt_after:
            raise KeyboardInterrupt
        if HashEncoder.broken:
            raise RuntimeError(HashEncoder.broken)
        bad = [t for t in inputs if t in HashEncoder.fail_texts]
        if bad:
            raise ValueError(f"cannot encode {bad[0]!r}")
        return np.array([hash_vector(t) for t in inputs], dtype=np.float32)

    @classmethod
    def parse_options(cls, raw: Mapping[str, object]) -> dict[str, object]:
        return dict(raw)


def hash_vector(text: str) -> np.ndarray:
    digest = hashlib.sha256(text.encode()).digest()
    return np.frombuffer(digest[:32], dtype=np.uint32).astype(np.float32) / 2**32


register("hash", HashEncoder)


@pytest.fixture
def hash_encoder() -> type[HashEncoder]:
    HashEncoder.calls, HashEncoder.fail_texts, HashEncoder.interrupt_after, HashEncoder.broken = [], set(), None, None
    return HashEncoder


OPENAI_KEY = "sk-proj-Zq81x0secretvalue"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    """A real OpenAI-compatible server on 127.0.0.1, with the key and base URL in the environment."""
    from tests.openai_server import FakeOpenAI

    with FakeOpenAI(api_key=OPENAI_KEY) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """An S3 server (moto) on 127.0.0.1; tests that use it are skipped where moto is not installed."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Credentials and the endpoint in the environment, as a user would set them; a boto3 client."""
    boto3 = pytest.importorskip("boto3")
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.client("s3")


@pytest.fixture
def bucket(aws: Any) -> str:
    name = f"featctl-{uuid.uuid4().hex[:12]}"
    aws.create_bucket(Bucket=name)
    return name
