"""Features for a trainer: read from the store once, aligned to the trainer's ids, with a mask of the missing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featctl.errors import CoverageTooLowError, FeatureEntityError, TrainInputError
from featctl.stores.feature_set import vector_matrix
from featctl.stores.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Features:
    """``vectors[k]`` belongs to the trainer's index ``k``; rows where ``mask`` is False have no vector (zeros)."""

    name: str
    entity: str
    vectors: np.ndarray
    mask: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def missing(self) -> int:
        return int((~self.mask).sum())

    def coverage(self, index: np.ndarray) -> tuple[int, int]:
        """(covered, total) over ``index``, the entity index of every interaction."""
        return int(self.mask[index].sum()), len(index)


def load_features(store: Store, name: str, entity: str, ids: pa.Array, option: str) -> Features:
    """Vectors of set ``name`` for ``ids`` (text, as the trainer indexes them); refuses a set of another entity."""
    fs = store.feature_set(name)
    if fs.entry.get("entity") != entity:
        raise FeatureEntityError(name, str(fs.entry.get("entity")), entity, option)
    table = fs.to_arrow()
    stored = table["id"].cast(pa.string())
    positions = pc.index_in(ids, value_set=stored)
    mask = positions.is_valid().to_numpy(zero_copy_only=False)
    vectors = np.zeros((len(ids), fs.dim), dtype=np.float32)
    if mask.any():
        found = positions.filter(positions.is_valid()).to_numpy()
        vectors[mask] = vector_matrix(table["vector"], fs.dim)[found].astype(np.float32)
    if not np.isfinite(vectors).all():
        bad = int((~np.isfinite(vectors).all(axis=1)).sum())
        raise TrainInputError(f"feature set '{name}' has {bad} vector(s) with NaN or inf values; re-embed them "
                              "(featctl coverage lists them under vector health)")
    log.info("%s: %d of %d %ss have a vector", name, int(mask.sum()), len(ids), entity)
    return Features(name, entity, vectors, mask)


def gate(features: Features, index: np.ndarray, min_coverage: float) -> None:
    """Refuse to train when fewer than ``min_coverage`` of the interactions have a vector for their entity."""
    if not 0.0 <= min_coverage <= 1.0:
        raise TrainInputError(f"--min-coverage must be a ratio between 0 and 1, not {min_coverage}")
    covered, total = features.coverage(index)
    if total and covered < min_coverage * total:
        raise CoverageTooLowError(features.name, "training interactions", covered, total, "--min-coverage",
                                  min_coverage)
