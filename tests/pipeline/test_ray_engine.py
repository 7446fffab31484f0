"""--engine ray: the same store as the local engine, encoded by a Ray Data actor pool.

One local Ray (2 CPUs) serves the whole module; each run starts its own actor pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from featctl import EmbedConfig, SourceSpec, embed, open_store
from featctl.cli import app
from featctl.encoders.registry import register
from featctl.errors import FeatctlError, RayEngineError, RayResourcesError
from featctl.pipeline.batch_api import embed_batch
from featctl.pipeline.estimate import estimate
from featctl.stores import fs
from tests.conftest import OPENAI_KEY, REPO, HashEncoder, hash_vector, write_tsv

ray = pytest.importorskip("ray")
cli = CliRunner()


class FailingHash(HashEncoder):
    """The hash encoder, failing on every text that contains its model name."""

    prefix = "failing"

    def __init__(self, model: str, **options: object) -> None:
        super().__init__(model, **options)
        self.bad = model

    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        if any(self.bad in t for t in inputs):
            raise ValueError(f"cannot encode a text with {self.bad!r}")
        return np.array([hash_vector(t) for t in inputs], dtype=np.float32)


class DyingHash(HashEncoder):
    """The hash encoder whose worker process dies, once, on the batch holding ``victim``."""

    prefix = "dying"
    victim = "row 23"

    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        marker = self.recipe["model"]
        if self.victim in inputs and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os._exit(1)  # a real crash: no exception, no cleanup
        return np.array([hash_vector(t) for t in inputs], dtype=np.float32)


class BrokenHash(HashEncoder):
    prefix = "broken"

    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        raise RuntimeError("CUDA out of memory")


class WorkerSideHash(HashEncoder):
    """The hash encoder whose recipe names the model files it finds: the workers see another copy."""

    prefix = "workerside"

    def __init__(self, model: str, **options: object) -> None:
        super().__init__(model, **options)
        self.recipe = {**self.recipe, "files": os.environ.get("FEATCTL_TEST_MODEL_FILES", "driver copy")}


for _cls in (FailingHash, DyingHash, BrokenHash, WorkerSideHash):
    register(_cls.prefix, _cls)


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                                      "FEATCTL_TEST_MODEL_FILES": "worker copy"}})
    yield
    ray.shutdown()


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail the test, instead of hanging it, if the block runs past ``seconds``."""
    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s: the run hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def config(source: Path, store: Path | str, **kwargs: Any) -> EmbedConfig:
    kwargs.setdefault("text", "{name}. {tags}. {summary}")
    return EmbedConfig(source=SourceSpec(path=str(source)), store=str(store), **kwargs)


def run(source: Path, store: Path | str, **kwargs: Any):
    return embed(config(source, store, **kwargs))


def stored_rows(store: Path | str, name: str = "item_text") -> dict[object, tuple[str, list[float] | None, str | None]]:
    """Every row of every committed part, by id; fails on an id stored twice."""
    rows: dict[object, tuple[str, list[float] | None, str | None]] = {}
    feature_set = open_store(str(store)).feature_set(name)
    for path in feature_set.part_paths():
        for r in fs.read_table(path).to_pylist():
            assert r["id"] not in rows, f"id {r['id']} stored twice"
            rows[r["id"]] = (r["content_hash"], r["vector"], r["error"])
    return rows


def assert_same_store(a: Path | str, b: Path | str, atol: float = 0.0) -> None:
    left, right = stored_rows(a), stored_rows(b)
    assert sorted(left) == sorted(right)
    for key, (digest, vector, error) in left.items():
        assert (digest, error) == (right[key][0], right[key][2]), key
        assert (vector is None) == (right[key][1] is None), key
        if vector is not None:
            np.testing.assert_allclose(vector, right[key][1], atol=atol, rtol=0)


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """30 rows: repeated texts, two empty ones, three the failing encoder refuses."""
    rows = [[i, f"title {i % 11}", "tag", "" if i in (4, 17) else f"summary {i % 13}"] for i in range(30)]
    for i in (5, 6, 21):
        rows[i][3] = "BAD summary"
    rows[4][1] = rows[4][2] = rows[17][1] = rows[17][2] = ""
    return write_tsv(tmp_path / "mixed.tsv", ["id", "name", "tags", "summary"], rows)


def test_store_equals_local_with_failures_and_rerun_encodes_nothing(mixed: Path, tmp_path: Path) -> None:
    local = run(mixed, tmp_path / "local", encoder="failing:BAD", part_rows=7)
    on_ray = run(mixed, tmp_path / "ray", encoder="failing:BAD", part_rows=7, engine="ray", workers=2)
    assert_same_store(tmp_path / "local", tmp_path / "ray")
    assert (on_ray.rows, on_ray.encoded, on_ray.failed, on_ray.parts_written) == (30, 25, 5, 5)
    assert on_ray.failures == local.failures == {"encoder error: cannot encode a text with 'BAD'": 3,
                                                 "empty text": 2}
    # no text repeats, so nothing is copied; the 25 good texts and the 3 refused ones are each sent once
    assert (local.encoded, local.reused, local.texts_encoded) == (on_ray.encoded, on_ray.reused,
                                                                 on_ray.texts_encoded) == (25, 0, 28)
    manifest = open_store(tmp_path / "ray").load_manifest()["sets"]["item_text"]
    expected = open_store(tmp_path / "local").load_manifest()["sets"]["item_text"]
    assert {k: v for k, v in manifest.items() if k not in ("parts", "created_at", "updated_at", "next_part")} == \
        {k: v for k, v in expected.items() if k not in ("parts", "created_at", "updated_at", "next_part")}

    again = run(mixed, tmp_path / "ray", encoder="failing:BAD", part_rows=7, engine="ray", workers=2)
    # the encoder's refusals are not final (it may be fixed), so only they are tried again, as locally
    assert (again.encoded, again.skipped, again.failed, again.parts_written) == (0, 27, 3, 1)


def test_minilm_vectors_equal_the_local_engine(catalogue: Path, tmp_path: Path) -> None:
    run(catalogue, tmp_path / "local", encoder="st:all-MiniLM-L6-v2", part_rows=4)
    result = run(catalogue, tmp_path / "ray", encoder="st:all-MiniLM-L6-v2", part_rows=4, engine="ray", workers=1)
    assert (result.rows, result.encoded, result.failed, result.parts_written) == (6, 6, 0, 2)
    assert_same_store(tmp_path / "local", tmp_path / "ray", atol=1e-5)
    info = open_store(tmp_path / "ray").feature_set("item_text").summary()
    assert (info["dim"], info["ids"], info["vectors"]) == (384, 6, 6)
    again = run(catalogue, tmp_path / "ray", encoder="st:all-MiniLM-L6-v2", part_rows=4, engine="ray", workers=1)
    assert (again.encoded, again.skipped, again.parts_written) == (0, 6, 0)


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    source = write_tsv(tmp_path / "rows.tsv", ["id", "name"], [[i, f"row {i}"] for i in range(40)])
    marker = tmp_path / "died"
    result = run(source, tmp_path / "store", text="{name}", encoder=f"dying:{marker}", part_rows=5,
                 engine="ray", workers=2)
    assert marker.exists(), "the worker never died: the test proves nothing"
    assert (result.rows, result.encoded, result.failed, result.parts_written) == (40, 40, 0, 8)
    rows = stored_rows(tmp_path / "store")  # row by row: each id once, with its own vector
    assert sorted(rows) == list(range(40))
    for i, (_, vector, error) in rows.items():
        assert error is None
        np.testing.assert_array_equal(np.array(vector, np.float32), hash_vector(f"row {i}"))


def test_a_crash_after_committed_parts_resumes_with_the_rest_through_the_cli(tmp_path: Path) -> None:
    source = write_tsv(tmp_path / "rows.tsv", ["id", "name"], [[i, f"row {i}"] for i in range(20)])

    class Crash:
        def start(self, total: int) -> None:
            pass

        def advance(self, rows: int) -> None:
            raise KeyboardInterrupt  # the driver dies right after its first commit

    config = EmbedConfig(source=SourceSpec(path=str(source)), store=str(tmp_path / "s"), text="{name}",
                         encoder="hash:x", part_rows=5, engine="ray", workers=1)
    with pytest.raises(KeyboardInterrupt):
        embed(config, progress=Crash())
    assert len(stored_rows(tmp_path / "s")) == 5
    args = ["embed", "--source", str(source), "--store", str(tmp_path / "s"), "--text", "{name}", "--encoder",
            "hash:x", "--engine", "ray", "--workers", "1", "--part-rows", "5", "--batch-size", "2", "--json"]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["encoded"], out["skipped"], out["parts_written"]) == (15, 5, 3)
    assert sorted(stored_rows(tmp_path / "s")) == list(range(20))


def test_an_encoder_broken_on_the_workers_is_one_line(mixed: Path, tmp_path: Path) -> None:
    with pytest.raises(FeatctlError, match="the encoder failed on each of the first .* CUDA out of memory"):
        run(mixed, tmp_path / "s", encoder="broken:x", engine="ray", workers=1, part_rows=30)
    assert not (tmp_path / "s" / "manifest.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--engine", "spark"], "--engine must be one of local, ray, got 'spark'"),
    (["--workers", "2"], "--workers only apply to --engine ray"),
    (["--engine", "ray", "--workers", "0"], "--workers must be at least 1, got 0"),
    (["--engine", "ray", "--gpus-per-worker", "-1"], "--gpus-per-worker must be >= 0"),
    (["--engine", "ray", "--gpus-per-worker", "1.5"], "--gpus-per-worker above 1 must be a whole number of GPUs"),
    (["--engine", "ray", "--ray-address", "head"], "--ray-address must be auto or HOST:PORT"),
    (["--engine", "ray", "--ray-address", "ray://head:10001"], "Ray Data does not run over Ray Client (ray://)"),
    (["--engine", "ray", "--batch-api"], "--batch-api does not run on --engine ray"),
])
def test_bad_options_are_one_line(catalogue: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = cli.invoke(app, ["embed", "--source", str(catalogue), "--store", str(tmp_path / "s"), *args])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_without_ray_the_cli_says_how_to_install_it(catalogue: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    result = cli.invoke(app, ["embed", "--source", str(catalogue), "--store", str(tmp_path / "s"), "--engine", "ray"])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: --engine ray needs Ray Data, which is not installed (ray); install it "
                                     "with pip install 'featctl[ray]', or use --engine local")


def test_the_library_refuses_the_batch_api_on_ray(catalogue: Path, tmp_path: Path) -> None:
    on_ray = config(catalogue, tmp_path / "s", encoder="openai:text-embedding-3-small", engine="ray")
    for call in (lambda: embed_batch(on_ray), lambda: estimate(on_ray, batch_api=True)):
        with pytest.raises(FeatctlError, match="^--batch-api does not run on --engine ray"):
            call()
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("options, missing, hint", [
    ({"gpus_per_worker": 1}, "1 GPU (it has 0)", "drop --gpus-per-worker (this cluster has no GPU)"),
    ({"workers": 3}, "3 CPU (it has 2)", "pass --workers 2 or fewer"),
])
def test_a_pool_the_cluster_cannot_run_fails_fast_in_one_line(mixed: Path, tmp_path: Path, options: dict[str, Any],
                                                             missing: str, hint: str) -> None:
    with deadline(60), pytest.raises(RayResourcesError) as caught:
        run(mixed, tmp_path / "s", encoder="hash:x", engine="ray", **options)
    message = str(caught.value)
    assert missing in message and hint in message and "\n" not in message, message
    assert not (tmp_path / "s" / "manifest.json").exists()
    assert run(mixed, tmp_path / "s", encoder="hash:x", engine="ray").encoded == 28  # nothing left locked


def test_a_worker_with_another_recipe_stops_the_run_before_anything_is_stored(mixed: Path, tmp_path: Path) -> None:
    assert "FEATCTL_TEST_MODEL_FILES" not in os.environ  # only the workers see the other copy
    with deadline(120), pytest.raises(RayEngineError) as caught:
        run(mixed, tmp_path / "s", encoder="workerside:x", engine="ray", workers=2, part_rows=7)
    message = str(caught.value)
    assert "files: 'driver copy' on the driver, 'worker copy' on the worker" in message, message
    assert "\n" not in message
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_openai_on_ray_stores_and_bills_what_the_local_engine_does(server, tmp_path: Path) -> None:
    texts = [f"catalogue entry {i}: {'a heist in space' if i % 3 else 'a quiet cooking drama'}" for i in range(40)]
    source = write_tsv(tmp_path / "items.tsv", ["id", "text"], [[i + 1, t] for i, t in enumerate(texts)])
    key = tmp_path / "key"
    key.write_text(OPENAI_KEY)  # the workers are other processes: the key and server go in options
    options = {"base_url": server.base_url, "api_key_file": str(key), "dimensions": 32, "max_inputs": 5}
    common: dict[str, Any] = {"text": "{text}", "encoder": "openai:text-embedding-3-small",
                              "encoder_options": options, "part_rows": 10}
    local = run(source, tmp_path / "local", **common)
    assert sorted(server.embedded) == sorted(texts)
    server.reset()
    on_ray = run(source, tmp_path / "ray", engine="ray", workers=2, **common)
    assert sorted(server.embedded) == sorted(texts)  # each text sent once, by one worker
    assert_same_store(tmp_path / "local", tmp_path / "ray")
    assert sorted(stored_rows(tmp_path / "ray")) == list(range(1, 41))
    assert (on_ray.rows, on_ray.encoded, on_ray.reused, on_ray.texts_encoded, on_ray.failed) == (40, 40, 0, 40, 0)
    assert on_ray.usage == local.usage and on_ray.usage["requests"] == 8 and on_ray.usage["tokens"] > 0


def test_an_s3_store_on_ray_equals_the_local_engine_and_a_rerun_encodes_nothing(mixed: Path, tmp_path: Path,
                                                                                bucket: str) -> None:
    uri = f"s3://{bucket}/store"
    local = run(mixed, tmp_path / "local", encoder="hash:x", part_rows=7)
    on_ray = run(mixed, uri, encoder="hash:x", part_rows=7, engine="ray", workers=2)
    assert_same_store(tmp_path / "local", uri)
    assert (on_ray.rows, on_ray.encoded, on_ray.reused, on_ray.texts_encoded, on_ray.failed, on_ray.parts_written) \
        == (local.rows, local.encoded, local.reused, local.texts_encoded, local.failed, local.parts_written) \
        == (30, 28, 0, 28, 2, 5)
    again = run(mixed, uri, encoder="hash:x", part_rows=7, engine="ray", workers=2)
    assert (again.encoded, again.texts_encoded, again.skipped, again.failed, again.parts_written) == (0, 0, 30, 0, 0)
