"""featctl: precompute recommender features once, serve them to every trainer from a versioned store.

Python API::

    import featctl
    result = featctl.embed(featctl.EmbedConfig(source=featctl.SourceSpec("data/anime.tsv")))
    vectors, mask = featctl.open_store().feature_set("item_text").vectors([1, 2, 3])
    report = featctl.coverage(featctl.CoverageConfig(interactions=featctl.SourceSpec("data/interactions.tsv")))
    featctl.check_coverage(report, min_ratio=0.95)   # raises CoverageTooLowError below 95%
    run = featctl.train(featctl.TrainConfig("lightgcn", featctl.InteractionsConfig(featctl.SourceSpec(
        "data/interactions.tsv")), item_features="item_text", lightgcn=featctl.LightGCNParams(fusion="concat")))
"""

from __future__ import annotations

from featctl.errors import FeatctlError
from featctl.pipeline.batch_api import embed_batch
from featctl.pipeline.compact import compact
from featctl.pipeline.config import EmbedConfig, EmbedResult
from featctl.pipeline.coverage import CoverageConfig, CoverageReport, check_coverage, coverage, require_coverage
from featctl.pipeline.datasets import PrepareResult, prepare_dataset
from featctl.pipeline.estimate import Estimate, estimate
from featctl.pipeline.index_build import IndexConfig, IndexResult, build_index
from featctl.pipeline.neighbors import NeighborsConfig, NeighborsResult, neighbors
from featctl.pipeline.runner import embed
from featctl.pipeline.sources import SourceSpec
from featctl.stores.feature_set import FeatureSet
from featctl.stores.indexes import LoadedIndex, load_index
from featctl.stores.store import Store, open_store

__version__ = "0.1.0"

# The trainers import torch; they load on first use, so `import featctl` (and every other command) stays fast.
_LAZY = {"TrainConfig": "featctl.models.train", "TrainResult": "featctl.models.train", "train": "featctl.models.train",
         "InteractionsConfig": "featctl.models.data", "LightGCNParams": "featctl.models.lightgcn",
         "Schedule": "featctl.models.fit", "AblateConfig": "featctl.models.ablate", "ablate": "featctl.models.ablate"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'featctl' has no attribute {name!r}")

__all__ = ["CoverageConfig", "CoverageReport", "EmbedConfig", "EmbedResult", "FeatctlError", "FeatureSet",
           "IndexConfig", "IndexResult", "LoadedIndex", "NeighborsConfig", "NeighborsResult", "SourceSpec", "Store",
           "build_index", "check_coverage", "compact", "coverage", "embed", "load_index", "neighbors", "open_store",
           "require_coverage", "__version__", "PrepareResult", "prepare_dataset", "Estimate", "estimate",
           "embed_batch", *_LAZY]
