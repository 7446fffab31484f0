"""``ablate``: LightGCN over fusion modes × which side uses features (none, item, user, both), one table.

The same data, split and seed for every cell, so the differences are the features' doing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from featctl.errors import TrainInputError
from featctl.models.lightgcn import FUSIONS
from featctl.models.train import TrainConfig, TrainResult, train
from featctl.stores.runs import Run
from featctl.stores.store import open_store

log = logging.getLogger(__name__)

SIDES = ("none", "item", "user", "both")


@dataclass(frozen=True)
class AblateConfig:
    """``base`` names the feature sets; each cell drops one side or the other and sets the fusion."""

    base: TrainConfig
    fusions: tuple[str, ...] = ("sum", "concat", "gate")

    def __post_init__(self) -> None:
        if self.base.model != "lightgcn":
            raise TrainInputError(f"ablate runs lightgcn's fusion modes; {self.base.model} has none")
        if not self.base.item_features and not self.base.user_features:
            raise TrainInputError("ablate compares sides with and without features; pass --item-features SET "
                                  "and/or --user-features SET")
        unknown = [f for f in self.fusions if f not in FUSIONS or f == "none"]
        if unknown or not self.fusions:
            raise TrainInputError(f"--fusions takes some of sum, concat, gate, not {', '.join(unknown) or 'nothing'}")


@dataclass
class AblationResult:
    """One row per cell: fusion, side, run id and test metrics; ``skipped`` says which cells had no set."""

    run: str
    rows: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ablate(config: AblateConfig, on_cell: Callable[[str, str, TrainResult], None] | None = None) -> AblationResult:
    """Train every cell and collect test metrics; cells needing a set that was not named are skipped."""
    base = config.base
    cells = [("none", "none")]
    skipped = []
    for side in SIDES[1:]:
        needed = {"item": [base.item_features], "user": [base.user_features],
                  "both": [base.item_features, base.user_features]}[side]
        if all(needed):
            cells += [(fusion, side) for fusion in config.fusions]
        else:
            skipped.append(f"{side}: no --{'item' if side == 'item' else 'user'}-features set"
                           if side != "both" else "both: needs --item-features and --user-features")
    rows = []
    for fusion, side in cells:
        cell = dataclasses.replace(
            base, lightgcn=dataclasses.replace(base.lightgcn, fusion=fusion),
            item_features=base.item_features if side in ("item", "both") else None,
            user_features=base.user_features if side in ("user", "both") else None, export=False)
        result = train(cell)
        log.info("ablation cell %s/%s: run %s", fusion, side, result.run)
        rows.append({"fusion": fusion, "features": side, "run": result.run, "metrics": result.metrics,
                     "best_epoch": result.training.get("best_epoch")})
        if on_cell:
            on_cell(fusion, side, result)
    summary = Run(open_store(base.store).root, "ablate-lightgcn")
    result = AblationResult(summary.id, rows, skipped)
    summary.write_json("ablation.json", result.to_dict())
    return result
