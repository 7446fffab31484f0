"""Benchmark ``featctl embed --engine ray`` against the local engine, measured in one run.

Every figure is a ratio against the local engine measured by the same invocation, on the same
synthetic texts, with the same model and batch size, each run on a fresh store:

1. throughput: rows/s of the local engine, and of Ray with 1 and with 2 workers (each run end to
   end as a user sees it: plan, actor start, model load, encode, commit), as ratios to local;
2. Ray's overhead: the same three on a one-row input give the fixed cost (Ray Data startup, actor
   start, model load in the actor); the rest, spread over the rows, is Ray's cost per row (ms);
3. a check that each Ray store holds the same ids and vectors as the local one (max abs diff).

Ray is started once, before anything is timed (its start-up time is reported on its own), and one
untimed one-row run of each engine warms the caches first. The local engine then reuses the model
loaded in this process, as any long-lived process would; each Ray run starts fresh actors that each
load it, and that is part of what "fixed" counts (a one-shot CLI run would pay one model load locally too).

Usage::

    .venv/bin/python bench/ray.py               # 4,000 rows (about 10 minutes on 2 cores)
    .venv/bin/python bench/ray.py --rows 200    # smoke test

Results go to bench/results/ray.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# This file is named ray.py: with bench/ first on the path, `import ray` would import it, not Ray.
sys.path[:] = [str(BENCH.parent)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # this checkout

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import ray  # noqa: E402

import featctl  # noqa: E402

log = logging.getLogger(__name__)

ROOT = BENCH.parent
RESULTS = ROOT / "bench" / "results" / "ray.json"
ENCODER = "st:all-MiniLM-L6-v2"
TARGET_MAX_DIFF = 1e-5  # Ray vs local vectors, max abs difference, at most


def write_source(path: Path, n: int) -> Path:
    """A Parquet source of ``n`` synthetic texts (the generator of bench/embed.py)."""
    sys.path.append(str(BENCH))  # Ray is imported by now
    from embed import synthetic_texts  # bench/embed.py

    pq.write_table(pa.table({"id": pa.array(range(1, n + 1), pa.int64()), "text": list(synthetic_texts(n))}), path)
    return path


def run(source: Path, store: Path, args: argparse.Namespace, workers: int | None) -> tuple[float, Any]:
    """Wall time of one ``featctl.embed`` on a fresh store (local when ``workers`` is None), and its result."""
    ray_options = {"engine": "ray", "workers": workers} if workers else {}
    config = featctl.EmbedConfig(source=featctl.SourceSpec(str(source)), store=str(store), encoder=args.encoder,
                                 text="{text}", part_rows=args.part_rows,
                                 encoder_options={"batch_size": args.batch_size}, **ray_options)
    started = time.perf_counter()
    result = featctl.embed(config)
    return time.perf_counter() - started, result


def max_diff(a: Path, b: Path) -> float:
    """Max abs difference between two stores' vectors; inf if their ids differ."""
    left = featctl.open_store(a).feature_set("item_text").to_arrow().sort_by("id")
    right = featctl.open_store(b).feature_set("item_text").to_arrow().sort_by("id")
    if left["id"].to_pylist() != right["id"].to_pylist():
        return float("inf")
    return float(np.abs(np.stack(left["vector"].to_numpy(zero_copy_only=False))
                        - np.stack(right["vector"].to_numpy(zero_copy_only=False))).max())


def bench(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    big, tiny = write_source(work / "rows.parquet", args.rows), write_source(work / "one.parquet", 1)
    engines: dict[str, int | None] = {"local": None, **{f"ray_{w}w": w for w in args.workers}}
    report: dict[str, Any] = {"rows": args.rows, "engines": {}}
    for name, workers in (("local", None), ("ray", 1)):  # untimed: the first of each pays cold imports and caches
        run(tiny, work / f"warm-{name}", args, workers)
    for name, workers in engines.items():
        fixed, _ = run(tiny, work / f"{name}-one", args, workers)
        seconds, result = run(big, work / name, args, workers)
        assert (result.encoded, result.failed) == (args.rows, 0), result
        report["engines"][name] = {"workers": workers, "seconds": seconds, "rows_per_s": args.rows / seconds,
                                   "one_row_seconds": fixed, "parts": result.parts_written}
        log.info("%s: %.1f s, %.1f rows/s (one row: %.1f s)", name, seconds, args.rows / seconds, fixed)
    local = report["engines"]["local"]
    for row in report["engines"].values():  # throughput once the pool runs: the one-row run's time taken out
        row["marginal_rows_per_s"] = (args.rows - 1) / max(row["seconds"] - row["one_row_seconds"], 1e-9)
    for name, row in report["engines"].items():
        row["vs_local"] = row["rows_per_s"] / local["rows_per_s"]
        row["marginal_vs_local"] = row["marginal_rows_per_s"] / local["marginal_rows_per_s"]
        if row["workers"]:
            row["fixed_overhead_s"] = row["one_row_seconds"] - local["one_row_seconds"]
            marginal = (row["seconds"] - row["one_row_seconds"]) - (local["seconds"] - local["one_row_seconds"])
            row["overhead_ms_per_row"] = 1000 * (row["seconds"] - local["seconds"]) / args.rows
            row["marginal_overhead_ms_per_row"] = 1000 * marginal / max(args.rows - 1, 1)
            row["max_abs_diff_vs_local"] = max_diff(work / "local", work / name)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"\n{report['rows']:,} rows, {report['encoder']}, batch {report['batch_size']}, "
          f"part {report['part_rows']} rows, {report['environment']['cpu_count']} cores "
          f"(Ray start {report['ray_init_seconds']:.1f} s, not counted)")
    print(f"{'engine':<10} {'seconds':>8} {'rows/s':>8} {'vs local':>9} {'marg rows/s':>11} {'vs local':>9} "
          f"{'fixed s':>8} {'ms/row':>7} {'marg ms/row':>11} {'max diff':>9}")
    for name, row in report["engines"].items():
        extra = (f"{row['fixed_overhead_s']:>8.1f} {row['overhead_ms_per_row']:>7.2f} "
                 f"{row['marginal_overhead_ms_per_row']:>11.2f} {row['max_abs_diff_vs_local']:>9.1e}"
                 if row["workers"] else f"{'':>8} {'':>7} {'':>11} {'':>9}")
        print(f"{name:<10} {row['seconds']:>8.1f} {row['rows_per_s']:>8.1f} {row['vs_local']:>9.2f} "
              f"{row['marginal_rows_per_s']:>11.1f} {row['marginal_vs_local']:>9.2f} {extra}")
    print("marg rows/s: (rows - 1) / (seconds - the one-row run's seconds), throughput once running; fixed s: a "
          "one-row run's extra time over local (Ray Data start, actors, model load in each actor; local reuses "
          "its loaded model); ms/row: all extra time per row; marg ms/row: extra time per row beyond the fixed part")
    diffs = [r["max_abs_diff_vs_local"] for r in report["engines"].values() if r["workers"]]
    print(f"vectors equal local within {TARGET_MAX_DIFF:g}: {'yes' if max(diffs) <= TARGET_MAX_DIFF else 'NO'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000, help="synthetic texts (default %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray pool sizes (default 1 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per model call (default %(default)s)")
    parser.add_argument("--part-rows", type=int, default=None,
                        help="rows per part, i.e. per Ray block (default: rows / 8, so 2 workers share the work)")
    parser.add_argument("--encoder", default=ENCODER, help="encoder spec (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = parser.parse_args(argv)
    args.part_rows = args.part_rows or max(1, args.rows // 8)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    import torch

    started = time.perf_counter()
    # Workers import this checkout's featctl; Ray gives each actor one CPU (its torch uses one thread).
    ray.init(include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}})
    ray_init = time.perf_counter() - started
    work = Path(tempfile.mkdtemp(prefix="featctl-bench-ray-"))
    try:
        report = bench(work, args)
    finally:
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report.update(encoder=args.encoder, batch_size=args.batch_size, part_rows=args.part_rows,
                  ray_init_seconds=ray_init, environment={
                      "python": platform.python_version(), "ray": ray.__version__, "torch": torch.__version__,
                      "local_torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                      "loadavg_end": os.getloadavg(), "featctl": featctl.__version__})
    print_report(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
