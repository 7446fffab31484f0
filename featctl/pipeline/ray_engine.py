"""The Ray engine: the driver plans and commits, a Ray Data actor pool encodes.

The driver does everything the local engine does except encoding: it scans the source, diffs it
against the store under the writer lock, renders the rows to encode, and puts them into Ray's
object store one part (``part_rows`` rows) per block. ``map_batches`` runs a pool of
:class:`EncodeActor`; each builds its encoder once and turns a block into a finished part table
with :class:`~featctl.pipeline.encode.PartEncoder` (or ``stream_parts`` for paid APIs), exactly as
the local engine would. The driver commits each part as it arrives, through the same writer, so a
crash leaves every committed part in place and a rerun encodes only the rest. An actor that dies
is restarted by Ray and its block is encoded again; only returned parts are ever committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
from collections import Counter
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa

from featctl.encoders.base import Encoder, StreamingEncoder
from featctl.encoders.registry import parse_spec, register
from featctl.errors import (
    FeatctlError,
    RayEngineError,
    RayNotInstalledError,
    RayResourcesError,
    RecipeMismatchError,
    WorkerRecipeError,
    first_line,
)
from featctl.pipeline.config import EmbedConfig
from featctl.pipeline.encode import PartEncoder, Progress, Row, Silent, Tally
from featctl.pipeline.plan import Plan
from featctl.pipeline.runner import build_encoder, chunks
from featctl.pipeline.stream import stream_parts
from featctl.stores.feature_set import FeatureSet, part_schema
from featctl.stores.store import StoreWriter

log = logging.getLogger(__name__)

STATS = "_featctl_stats"  # a column of per-part counts (JSON in the part's first row), dropped before commit
ACTOR_CPUS = 1  # what Ray Data reserves for each actor of a pool that names no num_cpus
RATE_OPTIONS = ("rpm", "tpm")  # an API's limits, shared out between the workers
_EXCEPTION_LINE = re.compile(r"^\w[\w.]*(?:Error|Exception|Interrupt): .*$", re.MULTILINE)


def require_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or one line saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayNotInstalledError(exc.name or "ray") from None
    return ray


def connect(config: EmbedConfig) -> bool:
    """Start a local Ray or connect to ``--ray-address``; True if this call did (and must shut it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    verbose = log.isEnabledFor(logging.INFO)
    quiet = {"logging_level": logging.INFO if verbose else logging.ERROR, "log_to_driver": verbose}
    try:
        if config.ray_address is None:
            # Local workers import this very featctl, whether installed or a source checkout.
            path = _pythonpath()
            ray.init(runtime_env={"env_vars": {"PYTHONPATH": path}} if path else None, include_dashboard=False,
                     **quiet)
        else:
            _check_reachable(config.ray_address)  # Ray itself would retry an unreachable head for minutes
            ray.init(address=config.ray_address, **quiet)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError...: one line, whatever Ray raised
        where = f"the Ray cluster at {config.ray_address}" if config.ray_address else "a local Ray"
        raise RayEngineError(f"cannot start or reach {where} ({first_line(exc)}); check --ray-address "
                             "(ray status on the head node shows it) or leave it out for a local Ray") from None
    return True


@contextlib.contextmanager
def session(config: EmbedConfig) -> Iterator[None]:
    """Ray connected and big enough for the pool before anything is read or locked; a Ray this
    started is shut down when the block ends."""
    ray = require_ray()
    started = connect(config)
    try:
        check_resources(config.workers or 1, config.gpus_per_worker or 0.0, config.ray_address is None)
        yield
    finally:
        if started:
            ray.shutdown()


def check_resources(workers: int, gpus_per_worker: float, local: bool) -> None:
    """Refuse a pool a local Ray cannot schedule: Ray Data would only log a warning and wait forever. A
    remote cluster may have an autoscaler that adds the nodes, so there it is a warning."""
    ray = require_ray()
    need = {"CPU": float(workers * ACTOR_CPUS), "GPU": workers * gpus_per_worker}
    have = {k: float(v) for k, v in ray.cluster_resources().items() if k in need}
    if any(need[k] > have.get(k, 0.0) + 1e-9 for k in need):
        error = RayResourcesError(workers, gpus_per_worker, need, have)
        if local:
            raise error
        log.warning("%s (waiting: an autoscaler may add them)", error)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Raise OSError if ``HOST:PORT`` does not accept a connection (``auto`` is not checked)."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


def _pythonpath() -> str:
    import featctl

    root = os.path.dirname(os.path.dirname(os.path.abspath(featctl.__file__)))
    if os.path.basename(root) in ("site-packages", "dist-packages"):
        return os.environ.get("PYTHONPATH", "")  # installed: workers find it as this process did
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)


class EncodeActor:
    """One Ray actor: builds its encoder once, then turns each block of rows into a part table."""

    def __init__(self, encoder_cls: type[Encoder], config: EmbedConfig, recipe: dict[str, Any],
                 id_type: pa.DataType, repeated: frozenset[str], stored: dict[str, np.ndarray]) -> None:
        register(parse_spec(config.encoder)[0], encoder_cls)  # a class registered at run time by the caller
        self.fatal: str | None = None  # a FeatctlError here is sent back as data: Ray keeps only its text
        try:
            self.encoder = build_encoder(_per_worker(config))
        except FeatctlError as exc:
            self.fatal = str(exc)
            return
        if self.encoder.recipe != recipe:  # another model folder or featctl: its vectors would not match the hashes
            self.fatal = str(WorkerRecipeError(socket.gethostname(), recipe, self.encoder.recipe))
            return
        self.parts = PartEncoder(self.encoder, config.dtype, id_type, repeated, Silent(), Tally())
        self.parts.cache.update(stored)
        self._usage: Counter[str] = Counter()

    def __call__(self, block: pa.Table) -> pa.Table:
        rows: list[Row] = list(zip(block["id"].to_pylist(), block["content_hash"].to_pylist(),
                                   block["text"].to_pylist()))
        if self.fatal is not None:
            return _stats_table({"fatal": self.fatal})
        tally = self.parts.tally = Tally()
        try:
            if isinstance(self.encoder, StreamingEncoder):
                table = pa.concat_tables(stream_parts(iter(rows), self.encoder, self.parts, len(rows)))
            else:
                table = self.parts.encode(rows)
        except FeatctlError as exc:  # the encoder is broken: the driver stops the run with this line
            self.fatal = str(exc)
            return _stats_table({"fatal": self.fatal})
        usage = Counter(dict(getattr(self.encoder, "usage", None) or {}))
        spent, self._usage = usage - self._usage, usage
        stats = json.dumps({"encoded": tally.encoded, "reused": tally.reused, "texts": tally.texts,
                            "usage": dict(spent)})
        return table.append_column(STATS, pa.array([stats] + [None] * (table.num_rows - 1), pa.string()))


def _stats_table(stats: dict[str, Any]) -> pa.Table:
    return pa.table({STATS: pa.array([json.dumps(stats)], pa.string())})


def _per_worker(config: EmbedConfig) -> EmbedConfig:
    """The config an actor builds its encoder from: an API's rate limits divided between the workers."""
    workers = config.workers or 1
    options = {k: (float(v) / workers if k in RATE_OPTIONS and v is not None else v)
               for k, v in config.encoder_options.items()}
    return dataclasses.replace(config, encoder_options=options)


def encode_and_commit(rows: Iterator[Row], plan: Plan, encoder: Encoder, writer: StoreWriter, name: str,
                      entry: dict[str, Any], existing: FeatureSet | None, replace: bool, config: EmbedConfig,
                      progress: Progress, tally: Tally) -> None:
    """Encode ``rows`` on Ray and commit each finished part, as the local engine's stage does."""
    ray = require_ray()
    with contextlib.ExitStack() as stack:
        if connect(config):
            stack.callback(ray.shutdown)
        refs = [ray.put(_block(part, plan.id_type)) for part in chunks(rows, config.part_rows)]
        stored = existing.vectors_by_hash(set(plan.stored)) if existing is not None and plan.stored else {}
        if not log.isEnabledFor(logging.INFO):  # featctl draws its own bar; Ray Data's would fight it
            logging.getLogger("ray.data").setLevel(logging.ERROR)
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = context.print_on_execution_start = False
        workers = min(config.workers or 1, len(refs))  # an actor without a part would only load a model
        check_resources(workers, config.gpus_per_worker or 0.0, config.ray_address is None)
        dataset = ray.data.from_arrow_refs(refs).map_batches(
            EncodeActor, batch_size=None, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=config.gpus_per_worker or None, zero_copy_batch=True,
            fn_constructor_args=(type(encoder), config, encoder.recipe, plan.id_type, plan.repeated, stored),
        )  # Ray Data's actor pools restart a dead actor and retry its block (max_restarts=-1, max_task_retries=-1)
        first = True
        results = _results(dataset)
        stack.callback(results.close)  # on any error: stop the pool now, not when garbage is collected
        for table in results:
            table, stats = _split(table, plan.id_type, config.dtype)
            if first:  # the driver never loads the model: the dimension comes with the first part
                dim = table.schema.field("vector").type.list_size
                if existing is not None and entry.get("dim") not in (None, dim):
                    raise RecipeMismatchError(name, {"dim": (entry["dim"], dim)})
                entry = {**entry, "dim": dim}
            writer.commit(name, entry, [table], drop_old=replace and first)
            first = False
            tally.parts += 1
            tally.encoded += stats["encoded"]
            tally.reused += stats["reused"]
            tally.texts += stats["texts"]
            tally.usage.update(stats["usage"])
            tally.failures.update(e for e in table["error"].to_pylist() if e is not None)
            progress.advance(table.num_rows)


def _results(dataset: Any) -> Iterator[pa.Table]:
    """Finished parts in the order they finish; an actor's FeatctlError becomes one line here."""
    try:
        yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1)
    except FeatctlError:
        raise
    except Exception as exc:  # Ray wraps what an actor raised: find featctl's own message
        raise RayEngineError(_reason(exc)) from None


def _reason(exc: BaseException) -> str:
    """What failed on a worker: Ray keeps only the text of the traceback, so take its last exception line."""
    lines = [m.group(0) for m in _EXCEPTION_LINE.finditer(str(exc))]
    what = lines[-1] if lines else first_line(exc)
    return f"encoding on Ray failed ({what}); committed parts are kept: run again to resume"


def _block(part: list[Row], id_type: pa.DataType) -> pa.Table:
    return pa.table({"id": pa.array([r[0] for r in part], id_type),
                     "content_hash": pa.array([r[1] for r in part], pa.string()),
                     "text": pa.array([r[2] for r in part], pa.string())})


def _split(table: pa.Table, id_type: pa.DataType, dtype: str) -> tuple[pa.Table, dict[str, Any]]:
    """(the part table in the store's schema, its summed counts)."""
    stats: dict[str, Any] = {"encoded": 0, "reused": 0, "texts": 0, "usage": Counter()}
    for text in table[STATS].drop_null().to_pylist():
        one = json.loads(text)
        if "fatal" in one:
            raise RayEngineError(one["fatal"])
        for key in ("encoded", "reused", "texts"):
            stats[key] += one[key]
        stats["usage"].update(one["usage"])
    table = table.drop_columns([STATS]).combine_chunks()
    dim = table.schema.field("vector").type.list_size
    return table.cast(part_schema(id_type, dim, dtype)), stats
