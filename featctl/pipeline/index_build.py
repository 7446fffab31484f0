"""Building a FAISS index over a set's latest vectors, tuned until recall@10 reaches a target.

``auto`` picks like autofaiss: exact (flat) while small, HNSW while it fits the memory budget and
builds in reasonable time, IVF-PQ (with exact re-ranking when the vectors fit) beyond. The search
parameter (efSearch, or nprobe and the re-ranking factor) is raised until recall@10 against exact
search on sampled stored vectors reaches the target, and the measured recall is recorded.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featctl.errors import IndexBuildError, first_line
from featctl.stores.feature_set import FeatureSet, vector_matrix
from featctl.stores.indexes import (
    LoadedIndex,
    apply_search_params,
    index_folder,
    load_index,
    save_index,
    set_fingerprint,
)
from featctl.stores.store import open_store

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw", "ivf-pq")
FLAT_MAX = 50_000      # exact search is fast enough below this, and always right
HNSW_MAX = 200_000     # beyond, HNSW builds for minutes on a laptop and loses recall on clustered data
HNSW_M, HNSW_EF_CONSTRUCTION = 32, 80
EF_LADDER = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
K_FACTORS = (4, 8, 16, 32, 64, 128)  # PQ codes rank coarsely: re-rank k * factor exactly
IVF_MIN = 1_000
K = 10


@dataclass(frozen=True)
class IndexConfig:
    set: str
    store: str | None = None
    kind: str = "auto"
    memory: str = "4GB"
    rebuild: bool = False
    target_recall: float = 0.95
    queries: int = 500
    seed: int = 0
    lock_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise IndexBuildError(f"unknown --kind '{self.kind}'; use one of {', '.join(KINDS)}")
        parse_size(self.memory)
        if not 0 < self.target_recall <= 1:
            raise IndexBuildError(f"--recall must be in (0, 1], not {self.target_recall}")
        if self.queries < 1:
            raise IndexBuildError(f"--queries must be at least 1, not {self.queries}")


@dataclass(frozen=True)
class IndexResult:
    action: str   # built, added, up to date
    path: str
    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "path": self.path, **self.info}


def parse_size(text: str) -> int:
    """``4GB``, ``512MB``, ``1.5G`` or a number of bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise IndexBuildError(f"cannot read --memory '{text}'; write e.g. 4GB or 512MB")
    return int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2) or " "))


def choose_kind(n: int, dim: int, memory: int) -> str:
    """What ``auto`` builds for ``n`` vectors of ``dim`` floats within ``memory`` bytes."""
    vectors = n * dim * 4
    if n <= FLAT_MAX and vectors <= memory:
        return "flat"
    if n <= HNSW_MAX and vectors + n * HNSW_M * 8 <= memory:
        return "hnsw"
    return "ivf-pq"


def build_index(config: IndexConfig, progress: Callable[[str], None] | None = None) -> IndexResult:
    """Build (or extend, or keep) the index of a set; see the module docstring."""
    say = progress or (lambda message: None)
    store = open_store(config.store)
    fs = store.feature_set(config.set)
    with store.writer(config.lock_timeout) as writer:
        existing = None if config.rebuild else load_index(store.root, config.set)
        wanted = None if config.kind == "auto" else config.kind
        if existing and not existing.stale(fs) and wanted in (None, existing.info["kind"]):
            return IndexResult("up to date", index_folder(store.root, config.set), existing.info)
        say("reading vectors")
        ids, hashes, matrix, excluded = finite_vectors(fs)
        if not len(ids):
            raise IndexBuildError(f"set '{fs.name}' has no usable vectors to index")
        if existing and wanted in (None, existing.info["kind"]):
            added = _add_new_rows(existing, fs, ids, hashes, matrix, excluded)
            if added is not None:
                size = save_index(store.root, fs.name, existing.index, *added, check=writer.check_lease)
                return IndexResult("added", index_folder(store.root, fs.name), {**added[2], "bytes": size})
        kind = wanted or choose_kind(len(ids), fs.dim, parse_size(config.memory))
        started = time.perf_counter()
        say(f"building a {kind} index over {len(ids):,} vectors")
        # Recall is measured on stored vectors held out of the index until tuning is done: finding a
        # vector that is in the index is easier than finding the neighbours of one that is not.
        held_out = 0 if kind == "flat" or len(ids) < 2 else min(config.queries, max(1, len(ids) // 10))
        held = np.sort(np.random.default_rng(config.seed).choice(len(ids), held_out, replace=False))
        try:
            index, params = _build(kind, matrix, held, fs.entry["metric"], parse_size(config.memory))
            say("measuring recall against exact search")
            recall, params = _tune(index, kind, params, matrix, held, fs.entry["metric"], config.target_recall)
            _add_rows(index, matrix, held)
        except (RuntimeError, MemoryError) as exc:  # FAISS reports its failures as RuntimeError
            raise IndexBuildError(f"FAISS could not build a {kind} index of set '{fs.name}': {first_line(exc)}") \
                from None
        order = pa.array(np.concatenate([np.setdiff1d(np.arange(len(ids)), held), held]))
        ids, hashes = ids.take(order), hashes.take(order)
        info = {
            "set": fs.name, "kind": kind, "metric": fs.entry["metric"], "dim": fs.dim, "rows": len(ids),
            "params": params, "recall_at_10": recall, "recall_queries": len(held),
            "target_recall": config.target_recall, "build_seconds": round(time.perf_counter() - started, 3),
            "excluded_nonfinite": excluded, "set_fingerprint": set_fingerprint(fs), "added_rows": 0,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "faiss": _faiss_version(),
        }
        if recall < config.target_recall:
            log.warning("index of %s reaches recall@10 %.3f only (target %.2f)", fs.name, recall, config.target_recall)
        size = save_index(store.root, fs.name, index, ids, hashes, info, check=writer.check_lease)
    return IndexResult("built", index_folder(store.root, fs.name), {**info, "bytes": size})


def finite_vectors(fs: FeatureSet) -> tuple[pa.Array, pa.Array, np.ndarray, int]:
    """Ids, content hashes and vectors of the set, without the rows whose vector is not finite."""
    table = fs.to_arrow()
    matrix = vector_matrix(table["vector"], fs.dim)
    finite = np.isfinite(matrix).all(axis=1)
    keep = pa.array(finite)
    ids = table["id"].combine_chunks().filter(keep)
    hashes = table["content_hash"].combine_chunks().filter(keep)
    kept = matrix if finite.all() else matrix[finite]
    return ids, hashes, np.ascontiguousarray(kept), int((~finite).sum())


def _metric(metric: str) -> int:
    import faiss

    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def _add_rows(index: Any, matrix: np.ndarray, rows: np.ndarray, skip: np.ndarray | None = None) -> None:
    """Add ``matrix[rows]``, or with ``skip`` every row but those, in contiguous slices (no copy)."""
    if skip is None:
        if len(rows):
            index.add(np.ascontiguousarray(matrix[rows]))
        return
    edges = [-1, *skip.tolist(), len(matrix)]
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi > lo + 1:
            index.add(matrix[lo + 1:hi])


def _build(kind: str, matrix: np.ndarray, held: np.ndarray, metric: str, memory: int) -> tuple[Any, dict[str, Any]]:
    """An index over every row but ``held``, and its parameters before tuning."""
    import faiss

    n, dim = matrix.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)
        _add_rows(index, matrix, held, skip=held)
        return index, {}
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, _metric(metric))
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        _add_rows(index, matrix, held, skip=held)
        return index, {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": EF_LADDER[0]}
    if n < IVF_MIN:
        raise IndexBuildError(f"an ivf-pq index needs at least {IVF_MIN:,} vectors to train its quantizers "
                              f"(this set has {n:,}); use --kind flat or hnsw")
    nlist = int(min(max(16, 2 ** round(np.log2(np.sqrt(n)))), n // 39))
    nbits = min(8, int(np.log2(n // 39)))  # 2**nbits codewords, each trained on at least 39 points
    # 8 dimensions per sub-quantizer: FAISS trains and encodes those with SIMD (6 per sub-quantizer
    # trains ~8x slower), and 8 bytes of code per 64 bytes of vector keep enough detail to re-rank.
    m = next((m for m in (dim // 8, dim // 4, dim // 2, dim) if m and dim % m == 0), 1)
    refine = n * dim * 4 + n * m <= memory
    if n * m > memory:
        raise IndexBuildError(f"{n:,} vectors need at least {n * m / 2**30:.1f} GB even as IVF-PQ codes; "
                              "raise --memory")
    factory = f"IVF{nlist},PQ{m}x{nbits}" + (",RFlat" if refine else "")
    index = faiss.index_factory(dim, factory, _metric(metric))
    # Polysemous training serves Hamming pre-filtering, which search does not use, and doubles training.
    faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
    sample = min(n, max(64 * nlist, 2 ** nbits * 64))  # k-means needs tens of points per centroid, not all
    index.train(np.ascontiguousarray(matrix[np.sort(np.random.default_rng(0).choice(n, sample, replace=False))]))
    _add_rows(index, matrix, held, skip=held)
    return index, {"nlist": nlist, "m": m, "nbits": nbits, "refine": refine, "nprobe": 1,
                   "k_factor": K_FACTORS[0] if refine else 1}


def _tune(index: Any, kind: str, params: dict[str, Any], matrix: np.ndarray, held: np.ndarray, metric: str,
          target: float) -> tuple[float, dict[str, Any]]:
    """The cheapest search parameters whose recall@10 on the held-out rows clears the target (or the best)."""
    import faiss

    if kind == "flat" or not len(held):
        return 1.0, params
    # True neighbours among the indexed rows: an exact search over all rows, less the held-out ones.
    found = faiss.knn(matrix[held], matrix, min(len(matrix), K + len(held)), metric=_metric(metric))[1]
    skip = set(held.tolist())
    truth = [[r for r in hits if r not in skip][:K] for hits in found.tolist()]
    positions = np.setdiff1d(np.arange(len(matrix)), held)  # index row -> matrix row
    if kind == "hnsw":
        ladder = [{**params, "efSearch": ef} for ef in EF_LADDER]
    else:
        probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if p <= params["nlist"]]
        factors = K_FACTORS if params["refine"] else (1,)
        per_list, dim = len(matrix) / params["nlist"], matrix.shape[1]
        # Cheapest first: codes scanned in the probed lists, plus the vectors re-ranked exactly.
        ladder = sorted(({**params, "nprobe": p, "k_factor": f} for p in probes for f in factors),
                        key=lambda c: c["nprobe"] * per_list * c["m"] + K * c["k_factor"] * dim)
    best = (-1.0, params)
    for candidate in ladder:
        apply_search_params(index, kind, candidate)
        hits = index.search(np.ascontiguousarray(matrix[held]), K)[1]
        recall = float(np.mean([len(set(positions[h[h >= 0]].tolist()) & set(t)) / max(len(t), 1)
                                for h, t in zip(hits, truth)]))
        if recall > best[0]:
            best = (recall, candidate)
        # Stop once the recall's lower 95% bound clears the target, so that new queries meet it too.
        if recall - 2 * np.sqrt(recall * (1 - recall) / (len(held) * K)) >= target:
            return recall, candidate
    apply_search_params(index, kind, best[1])
    return best


def _add_new_rows(existing: LoadedIndex, fs: FeatureSet, ids: pa.Array, hashes: pa.Array, matrix: np.ndarray,
                  excluded: int) -> tuple[pa.Array, pa.Array, dict[str, Any]] | None:
    """When the set only gained ids since the build, add their vectors to the index as it is."""
    known = pc.is_in(ids, value_set=existing.ids)
    old = pc.index_in(existing.ids, value_set=ids)
    if old.null_count or pc.any(pc.not_equal(hashes.take(old), existing.hashes)).as_py():
        return None  # an id changed or left: only a rebuild removes its old vector
    new = np.flatnonzero(~known.to_numpy(zero_copy_only=False))
    existing.index.add(np.ascontiguousarray(matrix[new]))
    info = {**existing.info, "rows": existing.index.ntotal, "added_rows": existing.info.get("added_rows", 0) + len(new),
            "excluded_nonfinite": excluded, "set_fingerprint": set_fingerprint(fs)}
    return (pa.concat_arrays([existing.ids, ids.take(pa.array(new))]),
            pa.concat_arrays([existing.hashes, hashes.take(pa.array(new))]), info)


def _faiss_version() -> str:
    import faiss

    return str(faiss.__version__)
