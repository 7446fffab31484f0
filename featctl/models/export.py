"""``--export``: a trainer's learned user and item embeddings written back as feature sets.

The sets (``<model>_item``, ``<model>_user``) are ordinary sets: ``featctl neighbors`` and
``featctl index`` work on them, and the item set keeps the source of the item features it was trained
with, so neighbours are shown with the catalogue's columns. Both are written under one lock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from featctl.errors import TrainInputError
from featctl.pipeline.plan import content_hashes, recipe_hash
from featctl.stores.feature_set import part_schema
from featctl.stores.store import Store

log = logging.getLogger(__name__)

PART_ROWS = 100_000


@dataclass(frozen=True)
class Export:
    """One set to write: ``vectors[k]`` belongs to ``ids[k]``."""

    name: str
    entity: str
    ids: pa.Array
    vectors: np.ndarray
    recipe: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)
    id_column: str = "id"


def check_targets(manifest: dict[str, Any], names: Sequence[str]) -> None:
    """Refuse, before anything is trained or written, to replace a set that holds other features."""
    for name in names:
        previous = manifest.get("sets", {}).get(name)
        if previous is not None and previous.get("modality") != "learned":
            raise TrainInputError(f"--export would replace set '{name}', which holds {previous.get('modality')} "
                                  "features, not trained embeddings; rename or remove that set first")


def export_embeddings(store: Store, exports: Sequence[Export], lock_timeout: float = 60.0) -> list[str]:
    """Replace each set of ``exports``; returns their names."""
    with store.writer(lock_timeout) as writer:
        check_targets(writer.manifest, [e.name for e in exports])
        for export in exports:
            writer.commit(export.name, _entry(export), _tables(export), drop_old=True)
            log.info("exported %d %s embeddings as set %s", len(export.ids), export.entity, export.name)
    return [e.name for e in exports]


def _entry(export: Export) -> dict[str, Any]:
    return {
        "entity": export.entity, "modality": "learned", "encoder": f"train:{export.recipe['model']}",
        "recipe": export.recipe, "recipe_hash": recipe_hash(export.recipe), "dtype": "float32",
        "id_type": str(export.ids.type), "id_column": export.id_column, "metric": "ip",
        "dim": int(export.vectors.shape[1]), "query_prompt": "", "source": export.source,
    }


def _tables(export: Export) -> list[pa.Table]:
    digest = recipe_hash(export.recipe)
    dim = export.vectors.shape[1]
    schema = part_schema(export.ids.type, dim, "float32")
    texts = export.ids.cast(pa.string()).to_pylist()
    column = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(export.vectors, np.float32).ravel()), dim)
    tables = []
    for start in range(0, len(export.ids), PART_ROWS):
        stop = min(start + PART_ROWS, len(export.ids))
        tables.append(pa.Table.from_arrays([
            export.ids[start:stop], pa.array(content_hashes(digest, texts[start:stop]), pa.string()),
            column[start:stop], pa.nulls(stop - start, pa.string()),
        ], schema=schema))
    return tables
