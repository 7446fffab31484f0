"""featctl: precompute recommender features once, serve them to every trainer from a versioned store.

Python API::

    import featctl
    result = featctl.embed(featctl.EmbedConfig(source=featctl.SourceSpec("data/anime.tsv")))
    vectors, mask = featctl.open_store().feature_set("item_text").vectors([1, 2, 3])
"""

from __future__ import annotations

from featctl.errors import FeatctlError
from featctl.pipeline.compact import compact
from featctl.pipeline.config import EmbedConfig, EmbedResult
from featctl.pipeline.runner import embed
from featctl.pipeline.sources import SourceSpec
from featctl.stores.feature_set import FeatureSet
from featctl.stores.store import Store, open_store

__version__ = "0.1.0"

__all__ = ["EmbedConfig", "EmbedResult", "FeatctlError", "FeatureSet", "SourceSpec", "Store", "compact",
           "embed", "open_store", "__version__"]
