"""Item inputs of the multimodal trainers: ID, text and image feature sets, and categorical tags.

Shared by ``mmgnn`` and ``moe``. Each modality is projected to the model's dimension; an item
without a vector gets a learned stand-in (never zeros that look like a real vector), and the mask
says which items had one. Scores are dot products times a learned temperature, so logits stay in
a range where the losses (always computed from logits) have useful gradients at initialisation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from featctl.errors import SourceFormatError, TrainInputError, first_line
from featctl.models.features import Features
from featctl.pipeline.sources import SourceSpec

log = logging.getLogger(__name__)

MODALITIES = ("id", "text", "image")
TAG_SEPARATORS = (",", "|", ";")


@dataclass(frozen=True)
class TagsConfig:
    """Categorical tags of items (genres, say): a multi-valued ``column`` of the ``items`` file."""

    items: SourceSpec
    column: str
    id_col: str = "item_id"


@dataclass(frozen=True)
class Tags:
    """Each item's tag indices in CSR form (``indptr`` over the trainer's items), and the tag names."""

    names: list[str]
    indices: np.ndarray
    indptr: np.ndarray

    @property
    def tagged(self) -> int:
        return int((np.diff(self.indptr) > 0).sum())


@dataclass(frozen=True)
class ItemInputs:
    """What an item is made of besides its ID: feature sets per modality, and tags."""

    features: dict[str, Features]
    tags: Tags | None = None


def parse_modalities(text: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"id,text,image"`` as a tuple in canonical order; unknown names fail."""
    names = [m.strip() for m in text.split(",")] if isinstance(text, str) else list(text or ())
    names = [m for m in names if m]
    unknown = [m for m in names if m not in MODALITIES]
    if unknown:
        raise TrainInputError(f"unknown modality '{unknown[0]}' in --modalities; choose from {', '.join(MODALITIES)}")
    return tuple(m for m in MODALITIES if m in names)


def check_modalities(wanted: tuple[str, ...], available: dict[str, str | None], model: str) -> tuple[str, ...]:
    """The modalities a run uses: ``wanted``, or ID plus every modality given a set; each needs its set."""
    given = tuple(m for m in MODALITIES if m == "id" or available.get(m))
    chosen = wanted or given
    for modality in chosen:
        if modality != "id" and not available.get(modality):
            option = "--item-features" if modality == "text" else "--image-features"
            raise TrainInputError(f"--modalities names {modality}, but no {modality} feature set was given; "
                                  f"pass {option} SET or drop {modality} from --modalities")
    if not chosen:
        raise TrainInputError(f"{model} needs at least one modality in --modalities (id, text, image)")
    return chosen


def load_tags(config: TagsConfig, items: pa.Array) -> Tags:
    """Read the tag column with DuckDB and index it to the trainer's item ids (text, as trainers index them)."""
    import duckdb

    from featctl.pipeline.coverage.inputs import load_columns

    con = duckdb.connect()
    try:
        _, as_text = load_columns(con, config.items, {"i": (config.id_col, "--items-id-col"),
                                                      "g": (config.column, "--item-tags")}, "raw")
        table = con.sql(f"SELECT {as_text['i']} AS id, CAST(g AS VARCHAR) AS tags FROM raw "
                        "WHERE i IS NOT NULL").to_arrow_table()
    except duckdb.Error as exc:
        raise SourceFormatError(f"{config.items.label}: cannot read the tags: {first_line(exc)}") from None
    finally:
        con.close()
    ids = table["id"].combine_chunks()
    if len(pc.unique(ids)) != len(ids):
        raise TrainInputError(f"{config.items.label}: item ids repeat in column '{config.id_col}' "
                              "(--items-id-col); each item needs one row of tags")
    positions = pc.index_in(items, value_set=ids).to_numpy(zero_copy_only=False)
    raw = table["tags"].to_pylist()
    names: dict[str, int] = {}
    lists = []
    for position in positions:
        text = raw[int(position)] if not np.isnan(position) and raw[int(position)] else ""
        for sep in TAG_SEPARATORS[1:]:
            text = text.replace(sep, TAG_SEPARATORS[0])
        tags = dict.fromkeys(t.strip() for t in text.split(TAG_SEPARATORS[0]) if t.strip())
        lists.append([names.setdefault(t, len(names)) for t in tags])
    if not names:
        raise TrainInputError(f"{config.items.label}: column '{config.column}' (--item-tags) holds no tags for "
                              "the items being trained; choose a column of comma-separated tags")
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lists], out=indptr[1:])
    tags = Tags(list(names), np.fromiter((t for x in lists for t in x), dtype=np.int64, count=int(indptr[-1])),
                indptr)
    log.info("tags: %d distinct in '%s', %d of %d items tagged", len(names), config.column, tags.tagged, len(items))
    return tags


class Projection(nn.Module):
    """A frozen feature set projected to ``dim``; items without a vector get a learned stand-in."""

    def __init__(self, features: Features, dim: int) -> None:
        super().__init__()
        self.register_buffer("vectors", torch.from_numpy(features.vectors.copy()))
        self.register_buffer("mask", torch.from_numpy(features.mask.copy()))
        self.project = nn.Linear(features.dim, dim)
        self.missing = nn.Parameter(torch.zeros(dim))

    def forward(self, items: torch.Tensor | None = None) -> torch.Tensor:
        vectors, mask = (self.vectors, self.mask) if items is None else (self.vectors[items], self.mask[items])
        return torch.where(mask[:, None], self.project(vectors), self.missing)


class TagBag(nn.Module):
    """The mean embedding of an item's tags; an untagged item gets a learned "no tag" vector."""

    def __init__(self, tags: Tags, dim: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(len(tags.names) + 1, dim, mode="mean")  # the last row means "no tag"
        nn.init.normal_(self.bag.weight, std=dim ** -0.5)
        lengths = np.diff(tags.indptr)
        filled = [tags.indices[s:e] if e > s else np.array([len(tags.names)]) for s, e in
                  zip(tags.indptr[:-1], tags.indptr[1:])]
        counts = np.maximum(lengths, 1)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        self.register_buffer("flat", torch.from_numpy(np.concatenate(filled).astype(np.int64)))
        self.register_buffer("offsets", torch.from_numpy(offsets))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        starts, ends = self.offsets[items], self.offsets[items + 1]
        lengths = ends - starts
        index = torch.repeat_interleave(starts - torch.cumsum(lengths, 0) + lengths, lengths) + torch.arange(
            int(lengths.sum()), device=items.device)
        bag_offsets = torch.cumsum(lengths, 0) - lengths
        return self.bag(self.flat[index], bag_offsets)


class Temperature(nn.Module):
    """Logits = scale x dot product, the scale learned in log space and capped (as CLIP's logit scale).

    It starts at 1: the models' vectors start small (Xavier or 1/sqrt(dim) initialisation, layer
    norms before linear maps), so fresh logits are of order one, far from the flat regions of the
    loss, and the scale is free to sharpen as training separates positives from negatives.
    """

    def __init__(self, cap: float = 100.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.cap = math.log(cap)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.cap).exp()

    def forward(self, dots: torch.Tensor) -> torch.Tensor:
        if self.training:
            # Pull the parameter back to the cap, as CLIP does after each step: a value left above
            # it would get no gradient from the clamp and could never come down again.
            with torch.no_grad():
                self.log_scale.clamp_(max=self.cap)
        return dots * self.scale


def balance_loss(weights: torch.Tensor) -> torch.Tensor:
    """Load balancing of a gate: ``n * sum(mean weight per expert ^ 2) - 1``, 0 when every expert is used
    alike and ``n - 1`` when one takes everything (the importance term of the Switch Transformer)."""
    importance = weights.reshape(-1, weights.shape[-1]).mean(0)
    return weights.shape[-1] * importance.square().sum() - 1
