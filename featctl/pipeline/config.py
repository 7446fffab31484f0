"""Configuration of an embed run: one frozen object built by the CLI or by Python callers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from featctl.errors import FeatctlError
from featctl.pipeline.images import DEFAULT_MAX_BYTES
from featctl.pipeline.sources import SourceSpec

DEFAULT_ENCODER = "st:all-MiniLM-L6-v2"
ENTITIES = ("item", "user")
DTYPES = ("float32", "float16")
ON_DUPLICATE = ("error", "first", "last")
ENGINES = ("local", "ray")
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d+$")


@dataclass(frozen=True)
class EmbedConfig:
    """Everything that decides what an embed run reads, encodes and writes."""

    source: SourceSpec
    store: str | None = None
    encoder: str = DEFAULT_ENCODER
    encoder_options: Mapping[str, Any] = field(default_factory=dict)
    id_column: str | None = None
    text: str | None = None
    image: str | None = None          # an image column: embed the files it names instead of text
    image_root: str | None = None     # folder image paths are relative to (default: the source's folder)
    max_image_bytes: int = DEFAULT_MAX_BYTES
    name: str | None = None
    entity: str = "item"
    dtype: str = "float32"
    on_duplicate: str = "error"
    part_rows: int = 10_000
    replace: bool = False
    lock_timeout: float = 60.0
    engine: str = "local"              # where encoding runs: this process, or a Ray cluster (Ray Data)
    ray_address: str | None = None     # None: start a local Ray; "auto" or "host:port": join that cluster
    workers: int | None = None         # Ray: encoder actors (default 1)
    gpus_per_worker: float | None = None  # Ray: GPUs each actor reserves (default 0)

    def __post_init__(self) -> None:
        for value, allowed, flag in ((self.entity, ENTITIES, "--entity"), (self.dtype, DTYPES, "--dtype"),
                                     (self.on_duplicate, ON_DUPLICATE, "--on-duplicate")):
            if value not in allowed:
                raise FeatctlError(f"{flag} must be one of {', '.join(allowed)}, got '{value}'")
        if self.image is not None and self.text is not None:
            raise FeatctlError("--image and --text make two different sets: embed them in two runs")
        if self.max_image_bytes < 1:
            raise FeatctlError(f"--max-image-bytes must be at least 1, got {self.max_image_bytes}")
        if self.part_rows < 1:
            raise FeatctlError(f"--part-rows must be at least 1, got {self.part_rows}")
        if self.lock_timeout < 0:
            raise FeatctlError(f"--lock-timeout must be >= 0, got {self.lock_timeout}")
        self._check_engine()

    def _check_engine(self) -> None:
        if self.engine not in ENGINES:
            raise FeatctlError(f"--engine must be one of {', '.join(ENGINES)}, got '{self.engine}'")
        if self.engine == "local":
            given = [flag for flag, value in (("--ray-address", self.ray_address), ("--workers", self.workers),
                                              ("--gpus-per-worker", self.gpus_per_worker)) if value is not None]
            if given:
                raise FeatctlError(f"{', '.join(given)} only apply to --engine ray; add --engine ray or leave them out")
            return
        if self.workers is not None and self.workers < 1:
            raise FeatctlError(f"--workers must be at least 1, got {self.workers}")
        gpus = self.gpus_per_worker
        if gpus is not None and gpus < 0:
            raise FeatctlError(f"--gpus-per-worker must be >= 0, got {gpus}")
        if gpus is not None and gpus > 1 and not float(gpus).is_integer():
            raise FeatctlError(f"--gpus-per-worker above 1 must be a whole number of GPUs, got {gpus:g}; Ray gives "
                               "an actor 1, 2, … GPUs or a fraction of one (0.5 shares a GPU between two workers)")
        address = self.ray_address
        if address is not None and address.startswith("ray://"):
            # Ray Data's executor needs a core worker in the driver, which Ray Client does not have
            # (ray-project/ray#42739, #48682): the driver has to run on the cluster.
            raise FeatctlError(f"--ray-address {address}: Ray Data does not run over Ray Client (ray://); run featctl "
                               "on the cluster with --ray-address auto, e.g. ray job submit --address "
                               "http://HEAD:8265 -- featctl embed ... --engine ray --ray-address auto")
        if address is not None and address != "auto" and not _HOST_PORT.match(address):
            raise FeatctlError(f"--ray-address must be auto or HOST:PORT (the head's GCS port), got '{address}'")

    def check_batch_api(self) -> None:
        """Refuse --batch-api where it cannot run: OpenAI's servers encode, so there is no Ray pool to use."""
        if self.engine == "ray":
            raise FeatctlError("--batch-api does not run on --engine ray: OpenAI's servers do the work; leave one out")

    @property
    def set_name(self) -> str:
        return self.name or f"{self.entity}_{'image' if self.image is not None else 'text'}"


@dataclass(frozen=True)
class EmbedResult:
    """What a run did; ``featctl embed --json`` prints it."""

    set: str
    rows: int
    encoded: int
    skipped: int
    failed: int
    seconds: float
    reused: int = 0
    texts_encoded: int = 0
    parts_written: int = 0
    store: str = ""
    failures: Mapping[str, int] = field(default_factory=dict)
    usage: Mapping[str, Any] = field(default_factory=dict)  # a paid API's requests, tokens and cost
    pending_batches: int = 0  # --batch-api: batches submitted and not yet ingested
    input: str = "text"  # what the rows hold: "text" or "image"

    def to_dict(self) -> dict[str, Any]:
        return {"set": self.set, "rows": self.rows, "encoded": self.encoded, "skipped": self.skipped,
                "failed": self.failed, "seconds": round(self.seconds, 3), "reused": self.reused,
                "texts_encoded": self.texts_encoded, "parts_written": self.parts_written,
                "store": self.store, "input": self.input, "failures": dict(self.failures),
                **({"usage": dict(self.usage)} if self.usage else {}),
                **({"pending_batches": self.pending_batches} if self.pending_batches else {})}
