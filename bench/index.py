"""Benchmark ``featctl index`` (FAISS) against exact ``IndexFlatIP`` search measured in the same run.

Data is generated on the fly (seeded, not timed) into a temporary folder: ``--n`` clustered vectors
(``--centres`` centres ~ N(0, 1), points = centre + ``--noise`` x N(0, 1), L2-normalised, metric inner
product) written as a feature set through the real store writer in parts of 100k rows (int64 ids with
gaps, shuffled), plus ``--queries`` held-out query vectors from the same distribution.

Each step runs in a fresh child process, so its peak RSS (VmHWM) is its own:

1. exact: ``faiss.IndexFlatIP`` over the same vectors: build, bytes, ground-truth top-10, latency, throughput;
2. per kind in ``--kinds`` (default ``auto``): ``build_index(IndexConfig(kind=...))`` (rebuilt each time);
3. per kind: ``load_index`` (tuned search parameters applied), recall@10 against exact on the held-out
   queries, single-query latency and batched throughput.

Single queries: one query per ``search`` call, k=10, ``faiss.omp_set_num_threads(1)`` for both exact and
approximate. Batched: all queries in one call with every thread. Goal for ``auto`` (1M x 384, this
2-core machine): recall@10 >= 0.95, single-query p50 <= 5 ms, batched >= 20x the exact throughput.

Usage::

    .venv/bin/python bench/index.py                       # 1M x 384, auto (several minutes)
    .venv/bin/python bench/index.py --quick               # 100k vectors
    .venv/bin/python bench/index.py --kinds auto,hnsw,ivf-pq --keep /tmp/idx

Results go to bench/results/index.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rss import peak_rss_mib  # bench/rss.py: run as scripts, bench/ is on the path

import featctl
from featctl.pipeline.plan import recipe_hash
from featctl.stores.feature_set import part_schema
from featctl.stores.store import open_store

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "index.json"

SET_NAME = "bench_vectors"
PART_ROWS = 100_000
K = 10
GENERATOR_VERSION = 1  # bump when the generated data changes, so --keep folders are regenerated
KINDS = ("auto", "flat", "hnsw", "ivf-pq")

TARGET_RECALL = 0.95   # recall@10 of auto on held-out queries, at least
TARGET_P50_MS = 5.0    # single-query p50 of auto, at most
TARGET_SPEEDUP = 20.0  # batched throughput of auto / exact, at least
FULL_N = 1_000_000


# --------------------------------------------------------------------------- data generation

def draw(rng: np.random.Generator, centres: np.ndarray, rows: int, noise: float) -> np.ndarray:
    """``rows`` unit vectors: a random centre plus isotropic noise, normalised."""
    x = centres[rng.integers(0, len(centres), rows)]
    x += np.float32(noise) * rng.standard_normal(x.shape, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def set_entry(params: dict[str, Any]) -> dict[str, Any]:
    """A manifest entry like the one the embed runner writes (``new_entry`` in featctl/pipeline/runner.py)."""
    recipe = {"encoder": "st", "model": "bench", "revision": "main", "normalize": True, "max_length": 256,
              "prompt": "", "template": "{text}", "dtype": "float32", "generator": params}
    return {"entity": "item", "modality": "text", "encoder": "st:bench", "recipe": recipe,
            "recipe_hash": recipe_hash(recipe), "dtype": "float32", "id_type": "int64", "id_column": "id",
            "metric": "ip", "source": {}, "query_prompt": "", "dim": params["dim"]}


def generate(work: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Write the store, vectors.npy (row order of the set), ids.npy and queries.npy; returns the meta."""
    meta_path = work / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("params") == params:
            log.info("reusing the data generated in %s", work)
            return meta
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    n, dim, seed = params["n"], params["dim"], params["seed"]
    rng = np.random.default_rng([seed, 0])
    centres = rng.standard_normal((params["centres"], dim), dtype=np.float32)
    ids = rng.choice(int(n * 1.25) + 10, size=n, replace=False).astype(np.int64)  # gaps, in random order
    np.save(work / "ids.npy", ids)
    np.save(work / "queries.npy", draw(np.random.default_rng([seed, 2]), centres, params["queries"],
                                       params["noise"]))
    matrix = np.lib.format.open_memmap(work / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    entry = set_entry(params)
    schema = part_schema(pa.int64(), dim, "float32")
    with open_store(work / "store").writer() as writer:
        for part, lo in enumerate(range(0, n, PART_ROWS)):
            hi = min(lo + PART_ROWS, n)
            x = draw(np.random.default_rng([seed, 1, part]), centres, hi - lo, params["noise"])
            matrix[lo:hi] = x
            part_ids = pa.array(ids[lo:hi])
            table = pa.Table.from_arrays(
                [part_ids, part_ids.cast(pa.string()), pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim),
                 pa.nulls(hi - lo, pa.string())], schema=schema)
            writer.commit(SET_NAME, entry, [table])
    matrix.flush()
    del matrix
    store = work / "store"
    meta = {"params": params, "store": str(store), "generate_seconds": time.perf_counter() - started,
            "store_bytes": sum(p.stat().st_size for p in store.rglob("*.parquet"))}
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    log.info("generated %d x %d vectors in %.1f s", n, dim, meta["generate_seconds"])
    return meta


# --------------------------------------------------------------------------- measuring

def single_latency(index: Any, queries: np.ndarray) -> dict[str, Any]:
    """One query per search call on one thread: p50/p99/mean in ms."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for q in queries[:5]:  # warm-up
            index.search(q[None], K)
        times = []
        for q in queries:
            started = time.perf_counter()
            index.search(q[None], K)
            times.append(time.perf_counter() - started)
    finally:
        faiss.omp_set_num_threads(threads)
    ms = np.array(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "queries": len(ms), "threads": 1}


def batched(index: Any, queries: np.ndarray, min_seconds: float = 2.0) -> tuple[dict[str, Any], np.ndarray]:
    """All queries in one search call, every thread; repeated until ``min_seconds`` (5 calls at most)."""
    import faiss

    index.search(queries[:16], K)  # warm-up
    rates, labels, spent = [], None, 0.0
    while len(rates) < 5 and (spent < min_seconds or len(rates) < 1):
        started = time.perf_counter()
        _, labels = index.search(queries, K)
        seconds = time.perf_counter() - started
        spent += seconds
        rates.append(len(queries) / seconds)
    return {"qps": statistics.median(rates), "runs_qps": rates, "queries": len(queries),
            "threads": faiss.omp_get_max_threads()}, labels


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top-k ids found (ids, not rows)."""
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / truth.shape[1] for f, t in zip(found, truth)]))


# --------------------------------------------------------------------------- child processes

def npy_chunks(path: Path, rows: int) -> Iterator[np.ndarray]:
    """A 2-d .npy file, ``rows`` rows at a time, read (not memory-mapped: mapped pages would count as RSS)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        (n, dim), _, dtype = read_header(fh)
        for lo in range(0, n, rows):
            yield np.fromfile(fh, dtype=dtype, count=min(rows, n - lo) * dim).reshape(-1, dim)


def child_exact(work: Path, meta: dict[str, Any], exact_single: int) -> dict[str, Any]:
    """Exact IndexFlatIP: build, measure, save the ground truth (as ids)."""
    import faiss

    queries, ids = np.load(work / "queries.npy"), np.load(work / "ids.npy")
    started = time.perf_counter()
    index = faiss.IndexFlatIP(queries.shape[1])
    for chunk in npy_chunks(work / "vectors.npy", PART_ROWS):
        index.add(chunk)
    build = time.perf_counter() - started
    build_peak = peak_rss_mib(children=True)["peak_mib"]
    single = single_latency(index, queries[:exact_single])
    batch, labels = batched(index, queries)
    np.save(work / "truth.npy", ids[labels])
    size = int(faiss.serialize_index(index).size)  # a copy of the index (or two, while its buffer grows): last
    return {"build_seconds": build, "build_peak_mib": build_peak, "bytes": size, "single": single, "batched": batch}


PHASES = ("finite_vectors", "_build", "_tune", "save_index")  # index_build's steps, timed where they exist


def child_build(meta: dict[str, Any], kind: str, memory: str) -> dict[str, Any]:
    """``build_index`` of one kind, always rebuilt; its main steps timed by wrapping the module's functions."""
    from featctl.pipeline import index_build
    from featctl.pipeline.index_build import IndexConfig, build_index

    phases: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
        return wrapper

    for name in PHASES:
        if callable(getattr(index_build, name, None)):
            setattr(index_build, name, timed(name, getattr(index_build, name)))
    started = time.perf_counter()
    result = build_index(IndexConfig(set=SET_NAME, store=meta["store"], kind=kind, memory=memory, rebuild=True))
    wall = time.perf_counter() - started
    return {"wall_seconds": wall, "phases": phases, "result": result.to_dict()}


def child_eval(work: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """``load_index`` and search: recall@10 against exact, single-query latency, batched throughput."""
    import faiss

    from featctl.stores.indexes import load_index

    queries, truth = np.load(work / "queries.npy"), np.load(work / "truth.npy")
    started = time.perf_counter()
    loaded = load_index(meta["store"], SET_NAME)
    load_seconds = time.perf_counter() - started
    if loaded is None:
        raise RuntimeError("load_index returned None after a build")
    single = single_latency(loaded.index, queries)
    batch, labels = batched(loaded.index, queries)
    row_ids = loaded.ids.to_numpy(zero_copy_only=False)
    found = np.where(labels >= 0, row_ids[labels.clip(0)], -1)
    folder = Path(meta["store"]) / "indexes" / SET_NAME
    return {"load_seconds": load_seconds, "recall_at_10": recall_at_k(found, truth), "single": single,
            "batched": batch, "index_class": type(faiss.downcast_index(loaded.index)).__name__,
            "file_bytes": (folder / "index.faiss").stat().st_size, "ids_bytes": (folder / "ids.parquet").stat().st_size,
            "missing_results": int((labels < 0).sum()), "info": loaded.info}


def child_main(args: argparse.Namespace) -> None:
    """Run one step inside a child process; print one JSON line."""
    work = Path(args.child_work)
    meta = json.loads((work / "meta.json").read_text(encoding="utf-8"))
    import faiss  # noqa: F401 (imported before any clock starts)
    if args.child == "exact":
        out = child_exact(work, meta, args.exact_single)
    elif args.child == "build":
        out = child_build(meta, args.child_kind, args.memory)
    else:
        out = child_eval(work, meta)
    out.update(peak_rss_mib(children=True))
    print(json.dumps(out, default=str))


def run_child(args: argparse.Namespace, step: str, work: Path, kind: str = "") -> dict[str, Any]:
    """A fresh interpreter running one step; adds its whole wall time (start-up included)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", step, "--child-work", str(work),
           "--child-kind", kind or "auto", "--memory", args.memory, "--exact-single", str(args.exact_single)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{step} {kind} child failed ({proc.returncode}): {proc.stderr.strip()[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = wall
    return out


# --------------------------------------------------------------------------- report

def row(label: str, exact: dict[str, Any], m: dict[str, Any], build: dict[str, Any]) -> dict[str, Any]:
    """One kind's figures next to exact's."""
    return {"label": label, "kind": m["info"]["kind"], "params": m["info"]["params"],
            "build_seconds": m["info"].get("build_seconds"), "build_wall_seconds": build["wall_seconds"],
            "build_peak_gb": build["peak_mib"] * 2**20 / 1e9, "eval_peak_gb": m["peak_mib"] * 2**20 / 1e9,
            "bytes": m["file_bytes"], "recall_at_10": m["recall_at_10"],
            "recall_reported": m["info"].get("recall_at_10"), "p50_ms": m["single"]["p50_ms"],
            "p99_ms": m["single"]["p99_ms"], "qps": m["batched"]["qps"],
            "latency_speedup": exact["single"]["p50_ms"] / m["single"]["p50_ms"],
            "throughput_ratio": m["batched"]["qps"] / exact["batched"]["qps"], "load_seconds": m["load_seconds"],
            "phases": build.get("phases", {})}


def print_report(result: dict[str, Any]) -> None:
    p, ex = result["params"], result["exact"]
    print(f"\n== featctl index benchmark: {p['n']:,} x {p['dim']} float32, {p['centres']:,} centres (noise "
          f"{p['noise']:g}), {p['queries']:,} held-out queries, k={K}, {os.cpu_count()} cores, faiss "
          f"{result['environment']['faiss']} ==")
    print(f"store {result['store_bytes'] / 1e9:.2f} GB (generated in {result['generate_seconds']:.0f} s); single "
          f"queries: 1 thread, exact timed on {ex['single']['queries']} queries; batched: "
          f"{ex['batched']['threads']} threads, {p['queries']:,} queries per call")
    print("\n| index | params | build s (reported / wall) | build peak RSS | bytes | recall@10 (held-out / "
          "reported) | p50 ms | p99 ms | p50 speed-up | batched q/s | throughput ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| exact IndexFlatIP | - | {ex['build_seconds']:.1f} | {ex['build_peak_mib'] * 2**20 / 1e9:.2f} GB | "
          f"{ex['bytes'] / 1e9:.2f} GB | 1.000 | {ex['single']['p50_ms']:.2f} | {ex['single']['p99_ms']:.2f} | 1.0x | "
          f"{ex['batched']['qps']:,.0f} | 1.0x |")
    for r in result["rows"]:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        reported = "-" if r["recall_reported"] is None else f"{r['recall_reported']:.3f}"
        built = "-" if r["build_seconds"] is None else f"{r['build_seconds']:.1f}"
        print(f"| {r['label']} | {params} | {built} / {r['build_wall_seconds']:.1f} | {r['build_peak_gb']:.2f} GB | "
              f"{r['bytes'] / 1e9:.2f} GB | {r['recall_at_10']:.3f} / {reported} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['latency_speedup']:,.0f}x | {r['qps']:,.0f} | {r['throughput_ratio']:,.1f}x |")
    print("\nbuild_index time by step (read vectors / build: train + add / tune search parameter / save), load_index:")
    for r in result["rows"]:
        steps = " / ".join(f"{r['phases'][name]:.1f}" if name in r["phases"] else "-" for name in PHASES)
        print(f"    {r['label']:<28} {steps} s; load {r['load_seconds']:.1f} s")
    if result["summary"]:
        print("\n| goal for auto | value | target | met |")
        print("|---|---|---|---|")
        for s in result["summary"]:
            print(f"| {s['measure']} | {s['value']} | {s['target']} | {'PASS' if s['met'] else 'FAIL'} |")
    print(f"\nresults: {RESULTS.relative_to(ROOT)}")


def goals(auto: dict[str, Any], full: bool) -> list[dict[str, Any]]:
    scale = "" if full else f" (targets are for {FULL_N:,} vectors)"
    return [
        {"measure": "recall@10, held-out queries" + scale, "value": f"{auto['recall_at_10']:.3f}",
         "target": f">= {TARGET_RECALL}", "met": auto["recall_at_10"] >= TARGET_RECALL},
        {"measure": "single-query p50" + scale, "value": f"{auto['p50_ms']:.2f} ms",
         "target": f"<= {TARGET_P50_MS:g} ms", "met": auto["p50_ms"] <= TARGET_P50_MS},
        {"measure": "batched throughput / exact" + scale, "value": f"{auto['throughput_ratio']:.1f}x",
         "target": f">= {TARGET_SPEEDUP:g}x", "met": auto["throughput_ratio"] >= TARGET_SPEEDUP},
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="vectors in the set (default 1,000,000)")
    parser.add_argument("--dim", type=int, default=384, help="dimension (default 384)")
    parser.add_argument("--centres", type=int, default=1000, help="cluster centres (default 1,000)")
    parser.add_argument("--noise", type=float, default=1.0, help="noise scale relative to the centres (default 1)")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (default 1,000)")
    parser.add_argument("--kinds", default="auto", help=f"comma-separated, of {', '.join(KINDS)} (default auto)")
    parser.add_argument("--memory", default="4GB", help="memory budget passed to build_index (default 4GB)")
    parser.add_argument("--exact-single", type=int, default=100,
                        help="queries timed one by one against exact search (default 100)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 100k vectors")
    parser.add_argument("--seed", type=int, default=0, help="data generator seed (default 0)")
    parser.add_argument("--keep", metavar="DIR", help="generate the data into DIR and keep it; reused when "
                                                      "DIR already holds data generated with the same options")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per child process (default 3600)")
    parser.add_argument("--quiet", "-q", action="store_true", help="do not log progress to stderr")
    parser.add_argument("--child", choices=("exact", "build", "eval"), help=argparse.SUPPRESS)
    parser.add_argument("--child-work", help=argparse.SUPPRESS)
    parser.add_argument("--child-kind", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.n = args.n or (100_000 if args.quick else FULL_N)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown or not args.kinds:
        parser.error(f"--kinds: unknown {unknown}; choose from {', '.join(KINDS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    import faiss

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    params = {"n": args.n, "dim": args.dim, "centres": args.centres, "noise": args.noise, "queries": args.queries,
              "seed": args.seed, "version": GENERATOR_VERSION}
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="featctl-bench-index-"))
    load_start = os.getloadavg()
    try:
        meta = generate(work, params)
        os.sync()
        exact = run_child(args, "exact", work)
        log.info("exact: build %.1f s, p50 %.1f ms, %.0f q/s batched, peak %.0f MiB", exact["build_seconds"],
                 exact["single"]["p50_ms"], exact["batched"]["qps"], exact["peak_mib"])
        rows, runs = [], {}
        for kind in args.kinds:
            build = run_child(args, "build", work, kind)
            log.info("%s: built %s", kind, {k: v for k, v in build["result"].items() if k != "set_fingerprint"})
            measured = run_child(args, "eval", work, kind)
            r = row(kind if kind != "auto" else f"featctl auto -> {measured['info']['kind']}", exact, measured, build)
            log.info("%s: recall@10 %.3f, p50 %.2f ms, %.0f q/s", kind, r["recall_at_10"], r["p50_ms"], r["qps"])
            rows.append(r)
            runs[kind] = {"build": build, "eval": measured}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    auto = next((r for r, k in zip(rows, args.kinds) if k == "auto"), None)
    summary = goals(auto, args.n >= FULL_N) if auto else []
    result = {
        "params": params, "kinds": args.kinds, "memory": args.memory, "store_bytes": meta["store_bytes"],
        "generate_seconds": meta["generate_seconds"], "exact": exact, "rows": rows, "runs": runs,
        "summary": summary, "targets_apply": args.n >= FULL_N, "kept": str(work) if args.keep else None,
        "environment": {"python": platform.python_version(), "featctl": featctl.__version__,
                        "faiss": faiss.__version__, "cpu_count": os.cpu_count(), "loadavg_start": load_start,
                        "loadavg_end": os.getloadavg(), "platform": platform.platform()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(result)
    return 0 if all(s["met"] for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
