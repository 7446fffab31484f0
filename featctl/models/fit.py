"""The training loop of the embedding trainers: epochs of a model's own steps, validation, early stopping,
checkpoints."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from featctl.errors import NanLossError, TrainInputError
from featctl.models.evaluate import Scorer, validation_ndcg
from featctl.models.splits import Split

log = logging.getLogger(__name__)

STOP_K = 20  # early stopping watches validation NDCG@20


@dataclass(frozen=True)
class Schedule:
    """How long to train: at most ``epochs``, stopping after ``patience`` evaluations without a better
    validation NDCG@20."""

    epochs: int = 300
    patience: int = 50
    eval_every: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "patience", "eval_every"):
            if getattr(self, name) < 1:
                raise TrainInputError(f"--{name.replace('_', '-')} must be 1 or more, not {getattr(self, name)}")


@dataclass
class History:
    """What happened: per-evaluation validation scores, the best epoch, timings."""

    best_epoch: int = 0
    best_valid: float = -math.inf
    epochs_run: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    valid: list[tuple[int, float]] = field(default_factory=list)
    stopped_early: bool = False


class Trainable(Protocol):
    """What :func:`fit` trains: a torch module that yields its own training steps and scores every item."""

    def steps(self, rng: np.random.Generator) -> Iterator[tuple[int, torch.Tensor]]:
        """One epoch: (examples, loss) per step, the loss still to be back-propagated."""
        ...

    def scorer(self, part: str) -> Scorer:
        """Scores of every item for a batch of users when evaluating ``part`` ("valid" or "test")."""
        ...


def fit(model: torch.nn.Module, split: Split, schedule: Schedule, lr: float,
        checkpoint: Callable[[torch.nn.Module], str] | None = None,
        on_epoch: Callable[[int, float, float | None], None] | None = None) -> History:
    """Train ``model`` (a :class:`Trainable`) with Adam; keep the weights of the best validation NDCG@20
    (among cold items on a cold-item split).

    ``checkpoint(model)`` saves the best weights and returns where; a NaN loss stops the run with
    the epoch and step, keeping that checkpoint.
    """
    rng = np.random.default_rng(schedule.seed)
    torch.manual_seed(schedule.seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = History()
    best_state = copy.deepcopy(model.state_dict())
    saved: str | None = None
    stale = 0
    validate = len(split.valid) > 0
    # every validation item of a cold-item split is cold: rank it among the cold items, as the test's cold
    # figures do (among all items, warm items outscore every cold one and the score stays at 0)
    watched = "cold" if split.kind == "cold-item" else "all"
    for epoch in range(1, schedule.epochs + 1):
        started = time.perf_counter()
        model.train()
        total, seen = 0.0, 0
        for step, (rows, loss) in enumerate(model.steps(rng), 1):
            if not torch.isfinite(loss):
                model.load_state_dict(best_state)
                raise NanLossError(epoch, step, saved)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * rows
            seen += rows
        history.epoch_seconds.append(time.perf_counter() - started)
        history.epochs_run = epoch
        score = None
        if validate and (epoch % schedule.eval_every == 0 or epoch == schedule.epochs):
            score = validation_ndcg(scorer(model, "valid"), split, STOP_K, group=watched)
            history.valid.append((epoch, score))
            if score > history.best_valid:
                history.best_valid, history.best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
                saved = checkpoint(model) if checkpoint else None
            else:
                stale += 1
        if on_epoch:
            on_epoch(epoch, total / max(seen, 1), score)
        if stale >= schedule.patience:
            history.stopped_early = True
            break
    if validate:
        model.load_state_dict(best_state)
    else:  # nothing to choose with: keep the last weights
        history.best_epoch = history.epochs_run
        if checkpoint:
            checkpoint(model)
    return history


def scorer(model: torch.nn.Module, part: str = "test") -> Scorer:
    """The trained model's scores for ``part``, in evaluation mode."""
    model.eval()
    return model.scorer(part)
