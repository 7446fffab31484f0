"""Benchmark ``featctl coverage`` against a straightforward pandas-merge implementation, in one run.

Data is generated on the fly (seeded, not timed) into a temporary folder:

- a catalogue of ``--items`` items (Parquet: id int64 with gaps, name, summary; 0.5% with no text);
- ``--interactions`` interactions (Parquet: user_id, item_id) with Zipf-like item popularity, plus a few
  hundred rows whose item is not in the catalogue;
- a store with two text sets written through the real store writer, in parts of 100k rows:
  ``item_text`` (97% of the catalogue, 0.5% failed "empty text", ~1% stale, a few identical vectors,
  a last part superseding some stale rows) and ``item_text_l12`` (~60%, popular items first: the tail
  is missing).

Each implementation then runs in a fresh child process (so peak RSS, VmHWM, is its own):

1. featctl: ``coverage(CoverageConfig(...))``, the report;
2. pandas: ``pd.read_parquet`` + merges/groupby for the same figures, staleness by rendering and
   hashing the catalogue with featctl's own Template/content_hash, vector health on stacked numpy.

Both must agree on every figure compared (and with what the generator planted), else the run fails.
Targets for featctl (full size, this 2-core machine): report in <= 15 s with <= 4 GB peak RSS.

Usage::

    .venv/bin/python bench/coverage.py                  # 1M items, 10M interactions (about 2 minutes)
    .venv/bin/python bench/coverage.py --quick          # 100k items, 1M interactions
    .venv/bin/python bench/coverage.py --keep /tmp/cov  # keep (and later reuse) the generated data
    .venv/bin/python bench/coverage.py --phases         # also time featctl's phases in another child

Results go to bench/results/coverage.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rss import peak_rss_mib  # bench/rss.py: run as scripts, bench/ is on the path

import featctl
from featctl.pipeline.plan import content_hash, recipe_hash
from featctl.pipeline.templates import Template
from featctl.stores.feature_set import part_schema
from featctl.stores.store import open_store

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "coverage.json"

TEMPLATE = "name: {name}\nsummary: {summary}"
ITEM_COL, USER_COL, CATALOG_ID = "item_id", "user_id", "id"
PART_ROWS = 100_000
GENERATOR_VERSION = 1  # bump when the generated data changes, so --keep folders are regenerated

TARGET_SECONDS = 15.0  # featctl coverage() wall time, at most (full size)
TARGET_PEAK_GB = 4.0   # featctl child peak RSS in GB (1e9 bytes), at most
HEADLINE = ("catalog.ratio", "interactions.ratio", "interactions.weighted_ratio", "missing.total",
            "missing.never_encoded", "missing.failed", "missing.stale")

# The two sets: name, model, share of stale rows, share of those refreshed by a later part, identical pairs.
# Which catalogue rows each set holds is drawn in generate(): 97% at random, or popular items first.
SETS = (
    {"name": "item_text", "model": "all-MiniLM-L6-v2", "stale": 0.01, "refresh": 0.2, "duplicates": 20},
    {"name": "item_text_l12", "model": "all-MiniLM-L12-v2", "stale": 0.002, "refresh": 0.0, "duplicates": 0},
)


# --------------------------------------------------------------------------- data generation

def words(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` pseudo-words (a few carry an HTML entity, which the renderer unescapes)."""
    syllables = np.array(["ka", "ri", "to", "mel", "an", "dor", "ve", "si", "lun", "qua", "th", "or", "pe", "zu",
                          "ne", "bra", "il", "os", "fen", "gra", "u", "sta", "li", "mo", "xe", "dra", "po", "ha"])
    out = ["".join(syllables[rng.integers(0, len(syllables), rng.integers(1, 4))]) for _ in range(n)]
    out[:3] = ["R&amp;D", "rock &amp; roll", "caf&eacute;"]
    return pa.array(out, pa.string())


def make_catalog(rng: np.random.Generator, n: int, path: Path) -> tuple[pa.Table, np.ndarray]:
    """Catalogue table (id, name, summary) and the mask of rows without any text."""
    ids = np.sort(rng.choice(int(n * 1.05) + 10, size=n, replace=False)).astype(np.int64) + 1
    vocab = words(rng, 4000)

    def pick() -> pa.Array:
        return vocab.take(pa.array(rng.integers(0, len(vocab), n)))

    name = pc.binary_join_element_wise(pick(), pick(), pa.array(ids).cast(pa.string()), " ")
    summary = pc.binary_join_element_wise(*(pick() for _ in range(rng.integers(4, 9))), " ")
    empty = rng.random(n) < 0.005
    nulls = pa.array(empty)
    table = pa.table({"id": pa.array(ids), "name": pc.if_else(nulls, pa.scalar(None, pa.string()), name),
                      "summary": pc.if_else(nulls, pa.scalar(None, pa.string()), summary)})
    pq.write_table(table, path, row_group_size=128 * 1024)
    return table, empty


def make_interactions(rng: np.random.Generator, ids: np.ndarray, rows: int, users: int,
                      path: Path) -> tuple[np.ndarray, int]:
    """Interactions with Zipf-like popularity; returns each catalogue row's popularity rank and the number
    of distinct item ids absent from the catalogue."""
    n = len(ids)
    weights = 1.0 / (np.arange(n, dtype=np.float64) + 10.0)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    perm = rng.permutation(n)  # rank -> catalogue row
    item = ids[perm[np.searchsorted(cdf, rng.random(rows), side="right").clip(0, n - 1)]]
    present = np.zeros(int(ids[-1]) + 1, bool)
    present[ids] = True
    gaps = np.flatnonzero(~present[1:]) + 1
    absent = np.concatenate([rng.choice(gaps, size=min(80, len(gaps)), replace=False),
                             ids[-1] + 1 + 7 * np.arange(20)])
    extra = min(300, rows // 10)
    item[rng.choice(rows, size=extra, replace=False)] = absent[rng.integers(0, len(absent), extra)]
    user = rng.integers(1, users + 1, rows, dtype=np.int64)
    pq.write_table(pa.table({USER_COL: user, ITEM_COL: item}), path, row_group_size=1 << 20)
    rank = np.empty(n, np.int64)
    rank[perm] = np.arange(n)
    outside = item >= len(present)
    outside[~outside] = ~present[item[~outside]]
    return rank, int(len(np.unique(item[outside])))


def set_entry(spec: dict[str, Any], dim: int, catalog: Path) -> dict[str, Any]:
    """A manifest entry like the one the embed runner writes for ``st:<model>``."""
    recipe = {"encoder": "st", "model": f"sentence-transformers/{spec['model']}", "revision": "main",
              "normalize": True, "max_length": 256, "prompt": "", "template": TEMPLATE, "dtype": "float32"}
    return {"entity": "item", "modality": "text", "encoder": f"st:{spec['model']}", "recipe": recipe,
            "recipe_hash": recipe_hash(recipe), "dtype": "float32", "id_type": "int64", "id_column": CATALOG_ID,
            "metric": "ip", "source": {"format": "parquet", "path": str(catalog.resolve())}, "query_prompt": "",
            "dim": dim}


def part_table(ids: np.ndarray, hashes: Sequence[str], failed: np.ndarray, dim: int, seed: Sequence[int],
               copies: Sequence[tuple[int, int]] = ()) -> pa.Table:
    """One part: random unit vectors (null where failed); ``copies`` (target, source) rows share a vector."""
    matrix = np.random.default_rng(list(seed)).standard_normal((len(ids), dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    for target, source in copies:
        matrix[target] = matrix[source]
    matrix[failed] = 0.0
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim, mask=pa.array(failed))
    errors = pa.array(np.where(failed, "empty text", None), pa.string())
    return pa.Table.from_arrays([pa.array(ids, pa.int64()), pa.array(hashes, pa.string()), vectors, errors],
                                schema=part_schema(pa.int64(), dim, "float32"))


def make_set(rng: np.random.Generator, spec: dict[str, Any], number: int, store: Path, catalog: Path,
             ids: np.ndarray, texts: list[str], empty: np.ndarray, chosen: np.ndarray,
             dim: int, seed: int) -> dict[str, int]:
    """Write one set (rows in catalogue order, then a refresh part); returns what was planted."""
    entry = set_entry(spec, dim, catalog)
    digest = entry["recipe_hash"]
    rows = np.flatnonzero(chosen)
    failed = empty[rows]
    hashes = [content_hash(digest, texts[r]) for r in rows]
    healthy = np.flatnonzero(~failed)
    stale = np.sort(rng.choice(healthy, size=int(len(rows) * spec["stale"]), replace=False))
    for k in stale:
        hashes[k] = content_hash(digest, texts[rows[k]] + " (edited)")
    # identical vectors: 20 pairs (t-1, t) and one triple (t-1, t, t+1), inside one part, fresh rows only
    usable = np.ones(len(rows), bool)
    usable[failed] = False
    usable[stale] = False
    candidates = [t for t in range(1, len(rows) - 1, 97)
                  if (t - 1) // PART_ROWS == (t + 1) // PART_ROWS and usable[t - 1:t + 2].all()]
    picked = sorted(rng.choice(candidates, size=min(spec["duplicates"] + 1, len(candidates)), replace=False)
                    ) if spec["duplicates"] else []
    copies = [(int(t), int(t) - 1) for t in picked]
    if picked:
        copies.append((int(picked[-1]) + 1, int(picked[-1]) - 1))
    refresh = np.sort(rng.choice(stale, size=int(len(stale) * spec["refresh"]), replace=False))
    with open_store(store).writer() as writer:
        for part, lo in enumerate(range(0, len(rows), PART_ROWS)):
            hi = min(lo + PART_ROWS, len(rows))
            local = [(t - lo, s - lo) for t, s in copies if lo <= t < hi]
            writer.commit(spec["name"], entry, [part_table(ids[rows[lo:hi]], hashes[lo:hi], failed[lo:hi], dim,
                                                           (seed, number, part), local)])
        if len(refresh):
            fresh = [content_hash(digest, texts[rows[k]]) for k in refresh]
            writer.commit(spec["name"], entry, [part_table(ids[rows[refresh]], fresh, np.zeros(len(refresh), bool),
                                                           dim, (seed, number, 999_999))])
    return {"stored_ids": int(len(rows)), "failed": int(failed.sum()), "stale": int(len(stale) - len(refresh)),
            "superseded_rows": int(len(refresh)), "identical_groups": len(picked),
            "identical_ids": 2 * len(picked) + 1 if picked else 0}


def generate(work: Path, items: int, interactions: int, users: int, dim: int, seed: int) -> dict[str, Any]:
    """Write catalogue, interactions and store under ``work``; returns the meta the children read."""
    started = time.perf_counter()
    params = {"items": items, "interactions": interactions, "users": users, "dim": dim, "seed": seed,
              "version": GENERATOR_VERSION}
    meta_path = work / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("params") == params:
            log.info("reusing the data generated in %s", work)
            return meta
    for name in ("catalog.parquet", "interactions.parquet", "store", "meta.json"):
        target = work / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    catalog_path, inter_path, store = work / "catalog.parquet", work / "interactions.parquet", work / "store"
    catalog, empty = make_catalog(rng, items, catalog_path)
    ids = catalog["id"].to_numpy()
    log.info("catalogue: %d items, max id %d (%.1f s)", items, ids[-1], time.perf_counter() - started)
    rank, absent = make_interactions(rng, ids, interactions, users, inter_path)
    log.info("interactions: %d rows, %d distinct ids not in the catalogue (%.1f s)", interactions, absent,
             time.perf_counter() - started)
    template = Template.parse(TEMPLATE, catalog.column_names)
    texts = [t for batch in catalog.to_batches(max_chunksize=PART_ROWS) for t in template.render(batch)]
    del catalog
    chosen = [rng.random(items) < 0.97,
              rng.random(items) < np.where(rank < 0.55 * items, 0.98, 0.13)]  # popular first, tail missing
    expected = {}
    for number, (spec, mask) in enumerate(zip(SETS, chosen)):
        planted = make_set(rng, spec, number, store, catalog_path, ids, texts, empty, mask, dim, seed)
        planted["never_encoded"] = items + absent - planted["stored_ids"]
        expected[spec["name"]] = planted
        log.info("set %s: %s (%.1f s)", spec["name"], planted, time.perf_counter() - started)
    meta = {"params": params, "catalog": str(catalog_path), "interactions": str(inter_path), "store": str(store),
            "sets": [s["name"] for s in SETS], "absent_ids": absent, "expected": expected,
            "generate_seconds": time.perf_counter() - started,
            "bytes": {"catalog": catalog_path.stat().st_size, "interactions": inter_path.stat().st_size,
                      "store": sum(p.stat().st_size for p in store.rglob("*.parquet"))}}
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


# --------------------------------------------------------------------------- the two implementations

def run_featctl(meta: dict[str, Any]) -> dict[str, Any]:
    """featctl's report (not saved to the store)."""
    from featctl.pipeline.coverage import CoverageConfig, coverage
    from featctl.pipeline.sources import SourceSpec

    config = CoverageConfig(store=meta["store"], interactions=SourceSpec(path=meta["interactions"]),
                            item_col=ITEM_COL, user_col=USER_COL, catalog=SourceSpec(path=meta["catalog"]),
                            catalog_id=CATALOG_ID, save=False)
    return coverage(config).to_dict()


def run_cli(meta: dict[str, Any]) -> dict[str, Any]:
    """``featctl coverage`` as a user runs it: a fresh process that also saves JSON and HTML under reports/."""
    command = [str(Path(sys.executable).with_name("featctl")), "coverage", "--store", meta["store"],
               "--interactions", meta["interactions"], "--item-col", ITEM_COL, "--catalog", meta["catalog"],
               "--id", CATALOG_ID, "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "sets": len(json.loads(done.stdout)["sets"])}


def featctl_figures(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compared figures of featctl's report, flat, per set."""
    out: dict[str, dict[str, Any]] = {}
    for s in report["sets"]:
        cat, inter, missing, vec, space = s["catalog"], s["interactions"], s["missing"], s["vectors"], s["id_space"]
        nic, norm = space["not_in_catalog"] or {}, vec["norm"] or {}
        f: dict[str, Any] = {
            "stored.ids": s["stored"]["ids"], "stored.vectors": s["stored"]["vectors"],
            "stored.failed": s["stored"]["failed"],
            "catalog.ids": cat["ids"], "catalog.covered": cat["covered"], "catalog.fresh": cat["fresh"],
            "catalog.ratio": cat["ratio"],
            "interactions.rows": inter["rows"], "interactions.ids": inter["ids"],
            "interactions.covered": inter["covered"], "interactions.covered_rows": inter["covered_rows"],
            "interactions.ratio": inter["ratio"], "interactions.weighted_ratio": inter["weighted_ratio"],
            "missing.total": missing["total"], "missing.never_encoded": missing["never_encoded"],
            "missing.stale": missing["stale"],
            "vectors.rows": vec["rows"], "vectors.nan_or_inf": vec["nan_or_inf"], "vectors.zero_norm": vec["zero_norm"],
            "vectors.norm_min": norm.get("min"), "vectors.norm_median": norm.get("median"),
            "vectors.norm_max": norm.get("max"),
            "vectors.identical_groups": vec["identical"]["groups"], "vectors.identical_ids": vec["identical"]["ids"],
            "id_space.ids": space["ids"], "id_space.max_id": space["max_id"], "id_space.gap": space["gap"],
            "id_space.not_in_catalog_ids": nic.get("ids"), "id_space.not_in_catalog_rows": nic.get("rows"),
        }
        f.update({f"missing.failed.{reason}": n for reason, n in missing["failed"].items()})
        for b in s["buckets"]:
            for key in ("ids", "covered", "interactions", "covered_interactions"):
                f[f"buckets.{b['name']}.{key}"] = b[key]
        out[s["name"]] = f
    return out


def run_pandas(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The same figures the straightforward way: read everything into pandas, merge, group, stack."""
    import pandas as pd

    manifest = json.loads((Path(meta["store"]) / "manifest.json").read_text(encoding="utf-8"))
    inter = pd.read_parquet(meta["interactions"], columns=[ITEM_COL])
    pop = inter[ITEM_COL].value_counts().rename_axis("id").reset_index(name="n")
    del inter
    # featctl ranks by count, then by the id as text; ties at a bucket boundary need the same order
    pop["key"] = pop["id"].astype(str)
    pop = pop.sort_values(["n", "key"], ascending=[False, True], ignore_index=True)
    before, total = pop["n"].cumsum() - pop["n"], pop["n"].sum()
    pop["bucket"] = np.select([before < 0.5 * total, before < 0.8 * total], ["head", "torso"], "tail")
    catalog = pd.read_parquet(meta["catalog"])
    status = catalog[["id"]].drop_duplicates().merge(pop[["id", "n", "bucket"]], on="id", how="outer",
                                                     indicator="where")
    status["in_catalog"] = status["where"] != "right_only"
    status["n"] = status["n"].fillna(0).astype(np.int64)
    status["bucket"] = status["bucket"].fillna("no interactions")
    rendered: dict[str, list[str]] = {}
    out: dict[str, dict[str, Any]] = {}
    for name in meta["sets"]:
        entry = manifest["sets"][name]
        template = entry["recipe"]["template"]
        if template not in rendered:
            parsed = Template.parse(template, list(catalog.columns))
            table = pa.Table.from_pandas(catalog[list(parsed.fields)], preserve_index=False)
            rendered[template] = [t for b in table.to_batches(max_chunksize=PART_ROWS) for t in parsed.render(b)]
        current = pd.DataFrame({"id": catalog["id"],
                                "current": [content_hash(entry["recipe_hash"], t) for t in rendered[template]]})
        folder = Path(meta["store"]) / "features" / name
        stored = pd.concat([pd.read_parquet(folder / p["file"]) for p in entry["parts"]], ignore_index=True)
        stored = stored.drop_duplicates("id", keep="last")
        s = status.merge(stored[["id", "content_hash", "error"]], on="id", how="left", indicator="encoded")
        s = s.merge(current, on="id", how="left")
        encoded = s["encoded"] == "both"
        failed = encoded & s["error"].notna()
        has = encoded & s["error"].isna()
        stale = has & s["current"].notna() & (s["content_hash"] != s["current"])
        never = ~encoded
        cat, seen = s["in_catalog"], s["n"] > 0
        f: dict[str, Any] = {
            "stored.ids": len(stored), "stored.vectors": int(stored["error"].isna().sum()),
            "stored.failed": int(stored["error"].notna().sum()),
            "catalog.ids": int(cat.sum()), "catalog.covered": int((cat & has).sum()),
            "catalog.fresh": int((cat & has & ~stale).sum()),
            "interactions.rows": int(s["n"].sum()), "interactions.ids": int(seen.sum()),
            "interactions.covered": int((seen & has).sum()), "interactions.covered_rows": int(s.loc[has, "n"].sum()),
            "missing.never_encoded": int(never.sum()), "missing.stale": int(stale.sum()),
            "id_space.not_in_catalog_ids": int((~cat & seen).sum()),
            "id_space.not_in_catalog_rows": int(s.loc[~cat, "n"].sum()),
        }
        f["catalog.ratio"] = f["catalog.covered"] / f["catalog.ids"]
        f["interactions.ratio"] = f["interactions.covered"] / f["interactions.ids"]
        f["interactions.weighted_ratio"] = f["interactions.covered_rows"] / f["interactions.rows"]
        reasons = s.loc[failed, "error"].value_counts()
        f.update({f"missing.failed.{reason}": int(n) for reason, n in reasons.items()})
        f["missing.total"] = f["missing.never_encoded"] + int(reasons.sum()) + f["missing.stale"]
        s["has"] = has
        s["covered_n"] = s["n"].where(has, 0)
        for bucket, g in s.groupby("bucket"):
            f.update({f"buckets.{bucket}.ids": len(g), f"buckets.{bucket}.covered": int(g["has"].sum()),
                      f"buckets.{bucket}.interactions": int(g["n"].sum()),
                      f"buckets.{bucket}.covered_interactions": int(g["covered_n"].sum())})
        known = pd.concat([s["id"], stored["id"]]).drop_duplicates()
        f["id_space.ids"], f["id_space.max_id"] = len(known), int(known.max())
        f["id_space.gap"] = f["id_space.max_id"] + 1 - f["id_space.ids"]
        f.update(pandas_vector_health(stored[stored["error"].isna()]["vector"]))
        out[name] = f
        del s, stored, current
    return out


def pandas_vector_health(vectors: Any) -> dict[str, Any]:
    """NaN/inf, zero norms, norm min/median/max and identical rows of a column of vectors.

    Identical rows by ``np.unique(axis=0)``; ``pd.DataFrame(matrix).duplicated()`` would be the pandas
    spelling, but over 128 float columns it is ~4x slower and would flatter featctl.
    """
    matrix = np.stack(vectors.to_numpy()).astype(np.float32, copy=False)
    finite = np.isfinite(matrix).all(axis=1)
    norms = np.linalg.norm(matrix[finite], axis=1).astype(np.float64)
    _, counts = np.unique(matrix, axis=0, return_counts=True)
    return {"vectors.rows": len(matrix), "vectors.nan_or_inf": int((~finite).sum()),
            "vectors.zero_norm": int((norms == 0).sum()),
            "vectors.norm_min": float(norms.min()) if len(norms) else None,
            "vectors.norm_median": float(np.median(norms)) if len(norms) else None,
            "vectors.norm_max": float(norms.max()) if len(norms) else None,
            "vectors.identical_groups": int((counts > 1).sum()), "vectors.identical_ids": int(counts[counts > 1].sum())}


# --------------------------------------------------------------------------- phase timers (--phases)

def run_phases(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """featctl's report with timers wrapped around its phases (the re-hashing thread's overlap the rest)."""
    from featctl.pipeline.coverage import figures, report, vectors
    from featctl.stores.feature_set import FeatureSet

    timings: dict[str, dict[str, Any]] = {}
    depth = [0]

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            slot = timings.setdefault(label, {"phase": label, "depth": depth[0], "calls": 0, "seconds": 0.0})
            depth[0] += 1
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                slot["seconds"] += time.perf_counter() - started
                slot["calls"] += 1
                depth[0] -= 1
        return wrapper

    targets = [(report, n) for n in ("load_columns", "_resolve_catalogs", "_current_hashes", "current_hashes",
                                     "current_hashes_in_child", "set_report", "vector_health")]
    targets += [(figures, n) for n in ("popularity", "catalog_summary", "build_status", "set_figures", "forms",
                                       "id_range")]
    targets += [(vectors, "_keys"), (vectors, "_identical"), (FeatureSet, "latest"), (Template, "render")]
    for owner, name in targets:
        if hasattr(owner, name):
            label = f"{getattr(owner, '__name__', owner).rsplit('.', 1)[-1]}.{name}"
            setattr(owner, name, timed(label, getattr(owner, name)))
    started = time.perf_counter()
    run_featctl(meta)
    total = time.perf_counter() - started
    return [{"phase": "coverage() total", "depth": 0, "calls": 1, "seconds": total}, *timings.values()]


# --------------------------------------------------------------------------- child processes

def child_main(kind: str, work: Path) -> None:
    """Run one implementation inside a child process; print one JSON line."""
    meta = json.loads((work / "meta.json").read_text(encoding="utf-8"))
    if kind == "pandas":
        import pandas  # noqa: F401 (imported before the clock starts, as featctl is)
    else:
        import featctl.pipeline.coverage  # noqa: F401
    started = time.perf_counter()
    if kind == "featctl":
        report = run_featctl(meta)
        seconds = time.perf_counter() - started
        out: dict[str, Any] = {"figures": featctl_figures(report),
                               "warnings": {s["name"]: s["warnings"] for s in report["sets"]}}
    elif kind == "pandas":
        out = {"figures": run_pandas(meta)}
        seconds = time.perf_counter() - started
    else:
        out = {"phases": run_phases(meta)}
        seconds = time.perf_counter() - started
    out.update(peak_rss_mib(children=True), seconds=seconds)
    print(json.dumps(out, default=str))


def run_child(kind: str, work: Path) -> dict[str, Any]:
    """A fresh interpreter running one implementation; adds its whole wall time (start-up included)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--child-work", str(work)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}): {proc.stderr.strip()[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = wall
    return out


# --------------------------------------------------------------------------- comparison and report

def same(key: str, a: Any, b: Any) -> bool:
    """Counts exactly, ratios to rounding; norms to 1e-6 (summing float32 products in another order or
    precision moves them by ~1e-7)."""
    if isinstance(a, float) or isinstance(b, float):
        tolerance = 1e-6 if key.startswith("vectors.norm") else 1e-12
        return a is not None and b is not None and math.isclose(a, b, rel_tol=tolerance, abs_tol=1e-15)
    return a == b


def compare(left: dict[str, dict[str, Any]], right: dict[str, dict[str, Any]]) -> list[str]:
    """Every figure on which the two implementations differ, as lines."""
    problems = []
    for name in sorted(set(left) | set(right)):
        a, b = left.get(name, {}), right.get(name, {})
        for key in sorted(set(a) | set(b)):
            if not same(key, a.get(key), b.get(key)):
                headline = any(key.startswith(h) for h in HEADLINE)
                problems.append(f"{'HEADLINE ' if headline else ''}{name} {key}: featctl {a.get(key)!r} "
                                f"vs pandas {b.get(key)!r}")
    return problems


def check_truth(figures: dict[str, dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    """Figures that differ from what the generator planted."""
    problems = []
    for name, planted in meta["expected"].items():
        f = figures.get(name, {})
        pairs = {"stored.ids": planted["stored_ids"], "stored.failed": planted["failed"],
                 "missing.failed.empty text": planted["failed"], "missing.stale": planted["stale"],
                 "missing.never_encoded": planted["never_encoded"],
                 "vectors.identical_groups": planted["identical_groups"],
                 "vectors.identical_ids": planted["identical_ids"],
                 "catalog.ids": meta["params"]["items"], "interactions.rows": meta["params"]["interactions"],
                 "id_space.not_in_catalog_ids": meta["absent_ids"]}
        problems += [f"{name} {key}: featctl {f.get(key)!r}, planted {want!r}"
                     for key, want in pairs.items() if f.get(key) != want]
    return problems


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"seconds": [r["seconds"] for r in runs], "median_seconds": statistics.median(r["seconds"] for r in runs),
            "process_seconds": [r["process_seconds"] for r in runs],
            "peak_gb": max(r["peak_mib"] for r in runs) * 2**20 / 1e9,
            "peak_mib": [r["peak_mib"] for r in runs]}


def print_report(result: dict[str, Any]) -> None:
    p, fc, pd_ = result["params"], result["featctl"], result["pandas"]
    print(f"\n== featctl coverage benchmark: {p['items']:,} catalogue items, {p['interactions']:,} interactions, "
          f"{len(result['sets'])} sets (dim {p['dim']}), {os.cpu_count()} cores, {result['repeats']} repeat(s) ==")
    print(f"data: catalogue {result['bytes']['catalog'] / 1e6:.0f} MB, interactions "
          f"{result['bytes']['interactions'] / 1e6:.0f} MB, store {result['bytes']['store'] / 1e6:.0f} MB "
          f"(generated in {result['generate_seconds']:.0f} s)")
    print("\n| implementation | seconds (median) | runs | child process wall | peak RSS |")
    print("|---|---|---|---|---|")
    for label, s in (("featctl coverage()", fc), ("pandas merge baseline", pd_)):
        print(f"| {label} | {s['median_seconds']:.2f} | " + ", ".join(f"{x:.2f}" for x in s["seconds"])
              + f" | {statistics.median(s['process_seconds']):.2f} s | {s['peak_gb']:.2f} GB |")
    print(f"\nratio pandas/featctl: {result['ratio']:.2f}x (above 1: featctl is faster)   (peak RSS pandas/featctl "
          f"{pd_['peak_gb'] / fc['peak_gb']:.2f}x)")
    print("\n| set | catalogue | interactions (distinct) | weighted | never encoded | failed | stale | identical |")
    print("|---|---|---|---|---|---|---|---|")
    for name, f in result["figures"].items():
        failed = sum(v for k, v in f.items() if k.startswith("missing.failed."))
        print(f"| {name} | {f['catalog.ratio']:.4f} | {f['interactions.ratio']:.4f} | "
              f"{f['interactions.weighted_ratio']:.4f} | {f['missing.never_encoded']:,} | {failed:,} | "
              f"{f['missing.stale']:,} | {f['vectors.identical_groups']} groups / {f['vectors.identical_ids']} ids |")
    if result.get("phases"):
        print("\nfeatctl phases (separate child, timers around the library's functions):")
        for ph in result["phases"]:
            print(f"    {'  ' * ph['depth']}{ph['phase']:<{40 - 2 * ph['depth']}} {ph['seconds']:7.2f} s"
                  f"  ({ph['calls']} call{'s' if ph['calls'] != 1 else ''})")
    for line in result["disagreements"] + result["truth_mismatches"]:
        print(f"    MISMATCH: {line}")
    print("\n| measure | value | target | met |")
    print("|---|---|---|---|")
    for row in result["summary"]:
        print(f"| {row['measure']} | {row['value']} | {row['target']} | {'PASS' if row['met'] else 'FAIL'} |")
    print(f"\nresults: {RESULTS.relative_to(ROOT)}")


def settle(work: Path) -> None:
    """Flush the generator's writes and read every input once, so the first timed child neither competes
    with write-back nor pays for a cold page cache that later children would not."""
    os.sync()
    for path in sorted(work.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                while fh.read(1 << 24):
                    pass


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=None, help="catalogue items (default 1,000,000)")
    parser.add_argument("--interactions", type=int, default=None, help="interaction rows (default 10,000,000)")
    parser.add_argument("--users", type=int, default=None, help="distinct users (default items / 10)")
    parser.add_argument("--dim", type=int, default=128, help="vector dimension (default 128)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 100k items, 1M interactions")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each implementation (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="data generator seed (default 0)")
    parser.add_argument("--keep", metavar="DIR", help="generate the data into DIR and keep it; reused when "
                                                      "DIR already holds data generated with the same options")
    parser.add_argument("--phases", action="store_true", help="also time featctl's phases (one more child run)")
    parser.add_argument("--quiet", "-q", action="store_true", help="do not log progress to stderr")
    parser.add_argument("--child", choices=("featctl", "pandas", "phases"), help=argparse.SUPPRESS)
    parser.add_argument("--child-work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.items = args.items or (100_000 if args.quick else 1_000_000)
    args.interactions = args.interactions or (1_000_000 if args.quick else 10_000_000)
    args.users = args.users or max(1, args.items // 10)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args.child, Path(args.child_work))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="featctl-bench-coverage-"))
    try:
        meta = generate(work, args.items, args.interactions, args.users, args.dim, args.seed)
        settle(work)
        runs: dict[str, list[dict[str, Any]]] = {"featctl": [], "pandas": []}
        for i in range(args.repeats):
            for kind in ("featctl", "pandas") if i % 2 == 0 else ("pandas", "featctl"):
                out = run_child(kind, work)
                runs[kind].append(out)
                log.info("repeat %d %-7s %.2f s, peak %.0f MiB", i + 1, kind, out["seconds"], out["peak_mib"])
        cli = run_cli(meta)
        log.info("featctl coverage (command line, saving JSON and HTML) %.2f s", cli["seconds"])
        phases = run_child("phases", work)["phases"] if args.phases else None
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    featctl_f, pandas_f = runs["featctl"][-1]["figures"], runs["pandas"][-1]["figures"]
    disagreements = compare(featctl_f, pandas_f)
    truth = check_truth(featctl_f, meta)
    fc, pd_ = summarise(runs["featctl"]), summarise(runs["pandas"])
    full = args.items >= 1_000_000 and args.interactions >= 10_000_000
    scale = "" if full else " (targets are for 1M items / 10M interactions)"
    summary = [
        {"measure": "featctl coverage() seconds" + scale, "value": f"{fc['median_seconds']:.2f}",
         "target": f"<= {TARGET_SECONDS:g}", "met": fc["median_seconds"] <= TARGET_SECONDS},
        {"measure": "featctl coverage command, end to end" + scale, "value": f"{cli['seconds']:.2f}",
         "target": f"<= {TARGET_SECONDS:g}", "met": cli["seconds"] <= TARGET_SECONDS},
        {"measure": "featctl peak RSS" + scale, "value": f"{fc['peak_gb']:.2f} GB",
         "target": f"<= {TARGET_PEAK_GB:g} GB", "met": fc["peak_gb"] <= TARGET_PEAK_GB},
        {"measure": "figures agree, featctl vs pandas", "value": f"{len(disagreements)} differ of "
         f"{sum(len(f) for f in featctl_f.values())}", "target": "0 differ", "met": not disagreements},
        {"measure": "figures match what the generator planted", "value": f"{len(truth)} differ",
         "target": "0 differ", "met": not truth},
    ]
    result = {
        "params": meta["params"], "sets": meta["sets"], "bytes": meta["bytes"], "expected": meta["expected"],
        "generate_seconds": meta["generate_seconds"], "repeats": args.repeats,
        "featctl": fc, "pandas": pd_, "cli": cli, "ratio": pd_["median_seconds"] / fc["median_seconds"],
        "figures": featctl_f, "featctl_warnings": runs["featctl"][-1]["warnings"], "phases": phases,
        "disagreements": disagreements, "truth_mismatches": truth, "summary": summary,
        "targets_apply": full, "kept": str(work) if args.keep else None,
        "environment": {"python": platform.python_version(), "featctl": featctl.__version__,
                        "cpu_count": os.cpu_count(), "loadavg_end": os.getloadavg(), "platform": platform.platform()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(result)
    if disagreements or truth:
        print("\nFAIL: the implementations disagree (see MISMATCH lines above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
