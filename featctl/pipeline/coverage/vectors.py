"""Vector health of a feature set: NaN/inf, zero norms, the norm distribution, identical vectors.

Reads the latest vector of every id part by part, in bounded batches, keeping only a norm and a
16-byte key per row, so a set of millions of vectors is checked in a few hundred megabytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featctl.errors import StoreError, first_line
from featctl.stores import fs as store_fs
from featctl.stores.feature_set import FeatureSet

log = logging.getLogger(__name__)

BINS = 20
READ_ROWS = 65536


def vector_health(fs: FeatureSet, latest: pa.Table, examples: int = 5) -> dict[str, Any]:
    """Health counts over the latest usable vector of every id of ``fs`` (``latest`` from ``fs.latest()``)."""
    usable = latest.filter(pc.is_null(latest["error"]))
    weights = np.random.default_rng(0).integers(0, 2**64, size=(fs.dim, 2), dtype=np.uint64, endpoint=False)
    norms: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    ids: list[pa.Array] = []
    hashes: list[pa.Array] = []
    bad = 0
    for number, path in enumerate(fs.part_paths()):
        picked = usable.filter(pc.equal(usable["part"], number))
        if not picked.num_rows:
            continue
        rows = picked["row"].to_numpy()
        start = 0
        for batch in _vector_batches(fs, path):
            lo, hi = np.searchsorted(rows, [start, start + batch.num_rows])
            if hi > lo:
                raw = _values(batch.column(0), fs.dim)[rows[lo:hi] - start]
                matrix = raw.astype(np.float32, copy=False)
                finite = np.isfinite(matrix).all(axis=1)
                bad += int((~finite).sum())
                norm = np.full(len(matrix), np.nan)
                kept = matrix if finite.all() else matrix[finite]
                norm[finite] = np.sqrt(np.einsum("ij,ij->i", kept, kept, dtype=np.float64))
                norms.append(norm)
                keys.append(_keys(raw, weights))
            start += batch.num_rows
        ids.append(picked["id"].combine_chunks())
        hashes.append(picked["content_hash"].combine_chunks())
    all_norms = np.concatenate(norms) if norms else np.zeros(0)
    finite_norms = all_norms[np.isfinite(all_norms)]
    report: dict[str, Any] = {
        "rows": int(len(all_norms)), "dim": fs.dim, "dtype": fs.dtype, "nan_or_inf": bad,
        "zero_norm": int((finite_norms == 0).sum()), "norm": None, "histogram": None,
        "identical": _identical(np.concatenate(keys) if keys else np.zeros(0, "S16"),
                                pa.concat_arrays(ids) if ids else pa.array([], fs.id_type),
                                pa.concat_arrays(hashes) if hashes else pa.array([], pa.string()), examples),
    }
    if len(finite_norms):
        report["norm"] = {"min": float(finite_norms.min()), "median": float(np.median(finite_norms)),
                          "max": float(finite_norms.max())}
        low, high = report["norm"]["min"], report["norm"]["max"]
        pad = max(high - low, 1e-3 * max(abs(high), 1.0)) / 2  # unit-norm sets differ only by rounding
        counts, edges = np.histogram(finite_norms, bins=BINS, range=((low + high) / 2 - pad, (low + high) / 2 + pad))
        report["histogram"] = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
    return report


def _vector_batches(fs: FeatureSet, path: str) -> Iterator[pa.RecordBatch]:
    """The vector column of one part in bounded batches; a part that is not what the manifest says
    is a :class:`StoreError`, never a traceback."""
    try:
        part = store_fs.parquet_file(path)
        kind = part.schema_arrow.field("vector").type
        if not pa.types.is_fixed_size_list(kind) or kind.list_size != fs.dim:
            raise ValueError(f"its vector column is {kind}, not {fs.dim}-wide vectors")
        yield from part.iter_batches(batch_size=READ_ROWS, columns=["vector"])
    except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
        raise StoreError(f"cannot read part {path} of set '{fs.name}' ({first_line(exc)}); "
                         f"run featctl info {fs.name} --verify") from None


def _values(column: pa.FixedSizeListArray, dim: int) -> np.ndarray:
    """A fixed-size-list column as an (n, dim) matrix of its stored dtype, null slots included."""
    flat = column.values.slice(column.offset * dim, len(column) * dim)
    return flat.to_numpy(zero_copy_only=False).reshape(-1, dim)


def _keys(raw: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A 128-bit key per row from its exact bits: two random linear hashes mod 2**64.

    Equal rows get equal keys; two different rows share one with probability about 2**-66, so
    among a million vectors a false "identical" is a one-in-a-hundred-million event.
    """
    bits = raw.view(np.uint16 if raw.dtype == np.float16 else np.uint32)
    out = np.empty((len(bits), 2), dtype=np.uint64)
    step = max(1, (1 << 22) // bits.shape[1])  # bounds the uint64 copy to 32 MB
    with np.errstate(over="ignore"):
        for lo in range(0, len(bits), step):
            out[lo:lo + step] = bits[lo:lo + step].astype(np.uint64) @ weights
    return out.view("S16").reshape(-1)


def _identical(digests: np.ndarray, ids: pa.Array, hashes: pa.Array, examples: int) -> dict[str, Any]:
    """Groups of different ids sharing one vector; a group whose ids share a content hash had one text."""
    empty = {"groups": 0, "ids": 0, "same_content_groups": 0, "examples": []}
    if not len(digests):
        return empty
    _, inverse, counts = np.unique(digests, return_inverse=True, return_counts=True)
    shared = np.flatnonzero(counts[inverse] > 1)
    if not len(shared):
        return empty
    order = shared[np.argsort(inverse[shared], kind="stable")]
    groups = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
    groups.sort(key=len, reverse=True)
    content = hashes.to_numpy(zero_copy_only=False)
    return {
        "groups": len(groups),
        "ids": int(len(shared)),
        "same_content_groups": sum(1 for g in groups if len(set(content[g])) == 1),
        "examples": [ids.take(pa.array(g[:examples])).to_pylist() for g in groups[:examples]],
    }
