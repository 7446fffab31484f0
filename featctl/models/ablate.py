"""``ablate``: one model trained cell by cell with one part switched off each time, as one table.

- lightgcn: fusion modes × which side uses features (none, item, user, both);
- mmgnn: the full model, without attention, without the item graph, without tags, and on fewer
  modalities (IDs only, IDs + text, IDs + image);
- moe: the full mixture, on fewer modalities, and with one expert per modality instead of several.

The same data, split and seed for every cell, so the differences are the switched part's doing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from featctl.errors import TrainInputError
from featctl.models.lightgcn import FUSIONS
from featctl.models.train import TRAINED, TrainConfig, TrainResult, train
from featctl.stores.runs import Run
from featctl.stores.store import open_store

log = logging.getLogger(__name__)

SIDES = ("none", "item", "user", "both")
Cell = tuple[str, TrainConfig]


@dataclass(frozen=True)
class AblateConfig:
    """``base`` is the full model; ``fusions`` are lightgcn's modes to compare."""

    base: TrainConfig
    fusions: tuple[str, ...] = ("sum", "concat", "gate")

    def __post_init__(self) -> None:
        if self.base.model not in TRAINED:
            raise TrainInputError(f"ablate switches parts of {', '.join(TRAINED)}; {self.base.model} has none")
        if self.base.model == "lightgcn" and not self.base.item_features and not self.base.user_features:
            raise TrainInputError("ablate compares sides with and without features; pass --item-features SET "
                                  "and/or --user-features SET")
        unknown = [f for f in self.fusions if f not in FUSIONS or f == "none"]
        if unknown or not self.fusions:
            raise TrainInputError(f"--fusions takes some of sum, concat, gate, not {', '.join(unknown) or 'nothing'}")


@dataclass
class AblationResult:
    """One row per cell: its label, run id and test metrics; ``skipped`` says which cells had no input."""

    run: str
    model: str
    rows: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ablate(config: AblateConfig, on_cell: Callable[[str, TrainResult], None] | None = None) -> AblationResult:
    """Train every cell and collect test metrics; cells needing an input that was not given are skipped."""
    base = config.base
    cells, skipped = _lightgcn_cells(config) if base.model == "lightgcn" else _multimodal_cells(base)
    rows = []
    for label, cell in cells:
        result = train(dataclasses.replace(cell, export=False))
        log.info("ablation cell %s: run %s", label, result.run)
        rows.append({"cell": label, "run": result.run, "metrics": result.metrics,
                     "best_epoch": result.training.get("best_epoch"),
                     **({"gate_weights": result.training["gate_weights"]} if "gate_weights" in result.training
                        else {})})
        if on_cell:
            on_cell(label, result)
    summary = Run(open_store(base.store).root, f"ablate-{base.model}")
    result = AblationResult(summary.id, base.model, rows, skipped)
    summary.write_json("ablation.json", result.to_dict())
    summary.close()
    return result


def _lightgcn_cells(config: AblateConfig) -> tuple[list[Cell], list[str]]:
    base = config.base
    cells: list[Cell] = [("ids only", _fused(base, "none", None, None))]
    skipped = []
    for side in SIDES[1:]:
        item = base.item_features if side in ("item", "both") else None
        user = base.user_features if side in ("user", "both") else None
        if (side in ("item", "both") and not item) or (side in ("user", "both") and not user):
            skipped.append(f"{side}: no --{side}-features set" if side != "both"
                           else "both: needs --item-features and --user-features")
            continue
        cells += [(f"{fusion} · {side}", _fused(base, fusion, item, user)) for fusion in config.fusions]
    return cells, skipped


def _fused(base: TrainConfig, fusion: str, item: str | None, user: str | None) -> TrainConfig:
    return dataclasses.replace(base, lightgcn=dataclasses.replace(base.lightgcn, fusion=fusion),
                               item_features=item, user_features=user)


def _multimodal_cells(base: TrainConfig) -> tuple[list[Cell], list[str]]:
    full = base.modalities  # resolved by TrainConfig
    cells: list[Cell] = [(f"full ({','.join(full)})", base)]
    skipped = []
    if base.model == "mmgnn":
        p = base.mmgnn
        if p.attention:
            cells.append(("no attention", dataclasses.replace(base, mmgnn=dataclasses.replace(p, attention=False))))
        if p.item_graph:
            cells.append(("no item graph", dataclasses.replace(base, mmgnn=dataclasses.replace(p, item_graph=False))))
        if base.tags:
            cells.append(("no tags", dataclasses.replace(base, tags=None)))
        else:
            skipped.append("no tags: no --item-tags given")
    elif base.moe.sub_experts > 1:
        cells.append(("1 expert per modality", dataclasses.replace(base, moe=dataclasses.replace(base.moe,
                                                                                              sub_experts=1))))
    for fewer in (("id",), ("id", "text"), ("id", "image")):
        if fewer == full:
            continue
        if set(fewer) <= set(full):
            kept = " + tags" if base.tags else ""  # tags are a field of mmgnn's items, not a modality
            cells.append((f"modalities {','.join(fewer)}{kept}", dataclasses.replace(base, modalities=fewer)))
        else:
            skipped.append(f"modalities {','.join(fewer)}: not within the full model's {','.join(full)}")
    return cells, skipped
