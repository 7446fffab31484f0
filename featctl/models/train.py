"""``train(config)``: interactions → split → features from the store → model → full-ranking metrics → run folder.

Nothing here loads a language model: features come from the store, aligned through ids.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from featctl.errors import NanLossError, TrainInputError
from featctl.models.baselines import BASELINES, Content
from featctl.models.data import Interactions, InteractionsConfig, load_interactions
from featctl.models.evaluate import Scorer, evaluate
from featctl.models.export import Export, check_targets, export_embeddings
from featctl.models.features import Features, gate, load_features
from featctl.models.fit import Schedule, fit, scorer
from featctl.models.lightgcn import LightGCN, LightGCNParams, check_fusion
from featctl.models.mmgnn import MMGNN, MMGNNParams
from featctl.models.modalities import ItemInputs, Tags, TagsConfig, check_modalities, load_tags, parse_modalities
from featctl.models.moe import MoEParams, MoESASRec, part_times
from featctl.models.splits import Split, split
from featctl.stores.runs import Run
from featctl.stores.store import Store, open_store

log = logging.getLogger(__name__)

MULTIMODAL = ("mmgnn", "moe")
TRAINED = ("lightgcn", *MULTIMODAL)
MODELS = (*TRAINED, *BASELINES)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``lightgcn``, ``mmgnn`` and ``moe`` hold each model's own parameters; ``schedule``
    applies to the three of them. ``image_features``, ``modalities`` and ``tags`` are the multimodal
    models' inputs (``item_features`` is their text set)."""

    model: str
    interactions: InteractionsConfig
    store: str | None = None
    split: str = "random"
    seed: int = 0
    item_features: str | None = None
    user_features: str | None = None
    min_coverage: float = 0.9
    image_features: str | None = None
    modalities: tuple[str, ...] = ()
    tags: TagsConfig | None = None
    lightgcn: LightGCNParams = field(default_factory=LightGCNParams)
    mmgnn: MMGNNParams = field(default_factory=MMGNNParams)
    moe: MoEParams = field(default_factory=MoEParams)
    schedule: Schedule = field(default_factory=Schedule)
    ks: tuple[int, ...] = (10, 20, 50)
    export: bool = False
    lock_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise TrainInputError(f"unknown model '{self.model}'; choose one of {', '.join(MODELS)}")
        if self.model == "content" and not self.item_features:
            raise TrainInputError("content scores items by their features; pass --item-features SET")
        if self.export and self.model == "moe":
            raise TrainInputError("--export writes one vector per user and item; moe's user vector depends on "
                                  "the sequence it reads, so export lightgcn or mmgnn embeddings instead")
        if self.export and self.model not in TRAINED:
            raise TrainInputError(f"--export writes learned embeddings, and {self.model} has none; "
                                  "train lightgcn or mmgnn to export")
        if self.model == "lightgcn":
            check_fusion(self.lightgcn.fusion, bool(self.item_features or self.user_features))
        object.__setattr__(self, "modalities", parse_modalities(self.modalities))
        if self.model == "moe" and self.tags:
            raise TrainInputError("--item-tags: moe mixes id, text and image experts; tags are read by mmgnn")
        if self.model not in MULTIMODAL:
            given = [o for o, v in (("--image-features", self.image_features), ("--modalities", self.modalities),
                                    ("--item-tags", self.tags)) if v]
            if given:
                raise TrainInputError(f"{', '.join(given)}: only mmgnn and moe read them, not {self.model}")
        else:  # resolved here, so that config.json and exports record the modalities used
            object.__setattr__(self, "modalities", check_modalities(
                self.modalities, {"text": self.item_features, "image": self.image_features}, self.model))
        if self.model == "mmgnn" and "id" not in self.modalities and self.mmgnn.layers == 0:
            raise TrainInputError("mmgnn without the id modality gives users vectors only by propagation; "
                                  "with --layers 0 every user would be the same: pass --layers 1 or more")
        if self.model == "moe" and self.interactions.time_col is None:
            raise TrainInputError("moe reads each user's history in time order; pass --time-col (with --split "
                                  "temporal for leave-one-out evaluation)")
        if self.model == "moe" and self.split != "temporal":
            raise TrainInputError(f"moe is evaluated leave-one-out: with --split {self.split} a user's history could "
                                  "hold items from after the evaluated one; pass --split temporal")
        if not self.ks or min(self.ks) < 1:
            raise TrainInputError("cut-offs (-k) must be 1 or more")


@dataclass
class TrainResult:
    """Test metrics per item group ("all", "warm", "cold"), with what the run saw and wrote."""

    run: str
    run_dir: str
    model: str
    metrics: dict[str, dict[str, float] | None]
    valid: dict[str, dict[str, float] | None] | None
    data: dict[str, Any]
    features: list[dict[str, Any]]
    training: dict[str, Any]
    exported: list[str]
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train(config: TrainConfig, on_epoch: Callable[[int, float, float | None], None] | None = None) -> TrainResult:
    """Train ``config.model`` and evaluate it on the test part of the split; see :class:`TrainConfig`."""
    started = time.perf_counter()
    store = open_store(config.store)
    data = load_interactions(config.interactions)
    parts = split(data, config.split, config.seed)
    wanted, warnings = _wanted(config)
    features = _features(store, data, wanted, config.min_coverage)
    tags = load_tags(config.tags, data.items) if config.tags else None
    if config.export and store.exists():
        check_targets(store.load_manifest(), [f"{config.model}_item", f"{config.model}_user"])
    config = dataclasses.replace(config, schedule=dataclasses.replace(config.schedule, seed=config.seed))
    run = Run(store.root, config.model)
    run.write_json("config.json", {"run": run.id, **dataclasses.asdict(config)})
    with _removed_unless_finished(run), run.logging_to_file():  # the log closes before a failed run is removed
        log.info("run %s: %s", run.id, {**data.stats, **parts.summary()})
        torch.manual_seed(config.seed)
        scorers, training, model = _fit(config, data, parts, features, tags, run, on_epoch)
        metrics = evaluate(scorers("test"), parts, "test", ks=config.ks)
        valid = evaluate(scorers("valid"), parts, "valid", ks=config.ks) if len(parts.valid) else None
        exported = _export(config, store, data, features, model, run.id) if config.export else []
    result = TrainResult(
        run=run.id, run_dir=run.path, model=config.model, metrics=metrics, valid=valid,
        data={"users": data.n_users, "items": data.n_items, **data.stats, **parts.summary()},
        features=[_describe(f, data) for f in features.values()], training=training, exported=exported,
        seconds=round(time.perf_counter() - started, 3), warnings=warnings,
    )
    run.write_json("metrics.json", result.to_dict())
    run.close()
    return result


def _unused_options(config: TrainConfig) -> list[str]:
    """Options set away from their defaults for another model, which ``config.model`` does not read."""
    unused: dict[str, None] = {}
    for other in TRAINED:
        params = getattr(config, other)
        for f in dataclasses.fields(params):
            if other != config.model and getattr(params, f.name) != f.default:
                value = getattr(params, f.name)
                flag = f.name.replace("_", "-")
                unused[f"--no-{flag}" if value is False else f"--{flag}"] = None
    return [f"{config.model} does not read {', '.join(unused)}: not used"] if unused else []


def _wanted(config: TrainConfig) -> tuple[dict[str, str | None], list[str]]:
    """The feature sets the model reads, by role (item, user, image), and warnings about sets and options
    it ignores."""
    wanted, warnings = _wanted_sets(config)
    return wanted, warnings + _unused_options(config)


def _wanted_sets(config: TrainConfig) -> tuple[dict[str, str | None], list[str]]:
    given = {"item": config.item_features, "user": config.user_features}
    named = [name for name in given.values() if name]
    if config.model in ("pop", "itemknn", "ease"):
        return {}, [f"{config.model} does not use features: {', '.join(named)} not used"] if named else []
    if config.model == "lightgcn":
        if config.lightgcn.fusion == "none":
            return {}, [f"--fusion none trains on IDs only: {', '.join(named)} not used"] if named else []
        return given, []
    if config.model == "content":
        ignored = [f"content scores by item features only: {config.user_features} not used"]
        return {"item": config.item_features}, ignored if config.user_features else []
    used = config.modalities
    wanted = {"item": config.item_features if "text" in used else None,
              "image": config.image_features if "image" in used else None}
    ignored = [name for name in (config.item_features, config.image_features, config.user_features)
               if name and name not in wanted.values()]
    return wanted, [f"{config.model} with --modalities {','.join(used)}: {', '.join(ignored)} not used"] if ignored \
        else []


@contextmanager
def _removed_unless_finished(run: Run) -> Iterator[None]:
    """A run that fails leaves no folder behind, except after a NaN loss, whose checkpoint is the point."""
    try:
        yield
    except NanLossError:
        raise
    except BaseException:
        run.remove()
        raise


def _features(store: Store, data: Interactions, wanted: dict[str, str | None],
              min_coverage: float) -> dict[str, Features]:
    loaded = {}
    for role, name in wanted.items():
        if not name:
            continue
        entity = "user" if role == "user" else "item"
        ids = data.items if entity == "item" else data.users
        loaded[role] = load_features(store, name, entity, ids, f"--{role}-features")
        gate(loaded[role], data.item if entity == "item" else data.user, min_coverage)
    return loaded


def _describe(features: Features, data: Interactions) -> dict[str, Any]:
    covered, total = features.coverage(data.item if features.entity == "item" else data.user)
    return {"set": features.name, "entity": features.entity, "dim": features.dim,
            "ids": len(features.mask), "missing_ids": features.missing,
            "interactions_covered": covered, "interactions": total}


def _fit(config: TrainConfig, data: Interactions, parts: Split, features: dict[str, Features], tags: Tags | None,
         run: Run, on_epoch: Callable[[int, float, float | None], None] | None
         ) -> tuple[Callable[[str], Scorer], dict[str, Any], Any]:
    """The trained model's scorer per evaluated part, what training did, and the model (None for baselines)."""
    fitted_at = time.perf_counter()
    if config.model not in TRAINED:
        baseline = (Content(features["item"].vectors, features["item"].mask) if config.model == "content"
                    else BASELINES[config.model]())
        baseline.fit(parts)
        return lambda part: baseline.scores, {"seconds": round(time.perf_counter() - fitted_at, 3)}, None
    model, params = _model(config, data, parts, features, tags)

    def checkpoint(m: torch.nn.Module) -> str:
        path = run.file("checkpoint.pt")
        torch.save({"model": config.model, "state_dict": m.state_dict(), "params": dataclasses.asdict(params),
                    "modalities": config.modalities, "users": data.users.to_pylist(),
                    "items": data.items.to_pylist()}, path + ".tmp")
        os.replace(path + ".tmp", path)
        return run.publish("checkpoint.pt")

    history = fit(model, parts, config.schedule, params.lr, checkpoint, on_epoch)
    seconds = np.asarray(history.epoch_seconds)
    log.info("best validation ndcg@20 %.4f at epoch %d of %d", history.best_valid, history.best_epoch,
             history.epochs_run)
    training = {"epochs": history.epochs_run, "best_epoch": history.best_epoch,
                "best_valid_ndcg@20": round(history.best_valid, 6) if history.valid else None,
                "stopped_early": history.stopped_early, "epoch_seconds_mean": round(float(seconds.mean()), 4),
                "epoch_seconds_median": round(float(np.median(seconds)), 4),
                "seconds": round(time.perf_counter() - fitted_at, 3), "valid_curve": history.valid}
    if isinstance(model, MoESASRec):
        training["gate_weights"] = model.gate_weights()
    if isinstance(model, MMGNN):
        training["item_graph"] = model.graph_summary()
    return lambda part: scorer(model, part), training, model


def _model(config: TrainConfig, data: Interactions, parts: Split, features: dict[str, Features],
           tags: Tags | None) -> tuple[torch.nn.Module, Any]:
    """The untrained model of ``config.model`` and its parameters."""
    if config.model == "lightgcn":
        return LightGCN(parts.train, parts.n_users, parts.n_items, config.lightgcn,
                        user_features=features.get("user"), item_features=features.get("item")), config.lightgcn
    inputs = ItemInputs({m: features[role] for m, role in (("text", "item"), ("image", "image")) if role in features},
                        tags)
    if config.model == "mmgnn":
        return MMGNN(parts.train, parts.n_users, parts.n_items, config.mmgnn, config.modalities, inputs), config.mmgnn
    return MoESASRec(parts, part_times(data, parts), config.moe, config.modalities, inputs), config.moe


def _export(config: TrainConfig, store: Store, data: Interactions, features: dict[str, Features],
            model: LightGCN | MMGNN, run_id: str) -> list[str]:
    users, items = (t.numpy() for t in model.embeddings())
    recipe = {"model": config.model, "run": run_id, "item_features": config.item_features,
              "user_features": config.user_features}
    if config.model == "lightgcn":
        recipe["fusion"] = config.lightgcn.fusion
    else:
        recipe |= {"image_features": config.image_features, "modalities": list(config.modalities),
                   "tags": config.tags.column if config.tags else None}
    exports = []
    for entity, vectors in (("item", items), ("user", users)):
        source, id_column = {}, "id"
        if entity in features:
            fs = store.feature_set(features[entity].name)
            source, id_column = fs.entry.get("source", {}), fs.entry.get("id_column", "id")
        exports.append(Export(f"{config.model}_{entity}", entity, data.typed_ids(entity), vectors,
                              {**recipe, "entity": entity}, source, id_column))
    return export_embeddings(store, exports, config.lock_timeout)
