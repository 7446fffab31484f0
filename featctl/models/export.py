"""``--export``: a trainer's learned user and item embeddings written back as feature sets.

The sets (``<model>_item``, ``<model>_user``) are ordinary sets: ``featctl neighbors`` and
``featctl index`` work on them, and the item set keeps the source of the item features it was trained
with, so neighbours are shown with the catalogue's columns.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from featctl.errors import TrainInputError
from featctl.pipeline.plan import content_hashes, recipe_hash
from featctl.stores.feature_set import part_schema
from featctl.stores.store import Store

log = logging.getLogger(__name__)

PART_ROWS = 100_000


def export_embeddings(store: Store, name: str, entity: str, ids: pa.Array, vectors: np.ndarray,
                      recipe: dict[str, Any], source: dict[str, Any] | None = None,
                      id_column: str = "id", lock_timeout: float = 60.0) -> str:
    """Replace set ``name`` with ``vectors`` (aligned to ``ids``); returns the set's name."""
    digest = recipe_hash(recipe)
    id_type = ids.type
    schema = part_schema(id_type, vectors.shape[1], "float32")
    texts = ids.cast(pa.string()).to_pylist()
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    tables = []
    for start in range(0, len(ids), PART_ROWS):
        stop = min(start + PART_ROWS, len(ids))
        tables.append(pa.Table.from_arrays([
            ids[start:stop], pa.array(content_hashes(digest, texts[start:stop]), pa.string()),
            column[start:stop], pa.nulls(stop - start, pa.string()),
        ], schema=schema))
    entry = {
        "entity": entity, "modality": "learned", "encoder": f"train:{recipe['model']}", "recipe": recipe,
        "recipe_hash": digest, "dtype": "float32", "id_type": str(id_type), "id_column": id_column,
        "metric": "ip", "dim": int(vectors.shape[1]), "query_prompt": "", "source": source or {},
    }
    with store.writer(lock_timeout) as writer:
        previous = writer.entry(name)
        if previous is not None and previous.get("modality") != "learned":
            raise TrainInputError(f"--export would replace set '{name}', which holds {previous.get('modality')} "
                                  "features, not trained embeddings; rename or remove that set first")
        writer.commit(name, entry, tables, drop_old=True)
    log.info("exported %d %s embeddings as set %s", len(ids), entity, name)
    return name
