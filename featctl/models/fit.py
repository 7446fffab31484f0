"""The training loop of the embedding trainers: BPR epochs, validation, early stopping, checkpoints."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from featctl.errors import NanLossError, TrainInputError
from featctl.models.evaluate import validation_ndcg
from featctl.models.lightgcn import LightGCN, NegativeSampler
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


def fit(model: LightGCN, split: Split, schedule: Schedule, lr: float, reg: float, batch: int,
        checkpoint: Callable[[LightGCN], str] | None = None,
        on_epoch: Callable[[int, float, float | None], None] | None = None) -> History:
    """Train with Adam on BPR triples; keep the weights of the best validation NDCG@20 (among cold items
    on a cold-item split).

    ``checkpoint(model)`` saves the best weights and returns where; a NaN loss stops the run with
    the epoch and step, keeping that checkpoint.
    """
    rng = np.random.default_rng(schedule.seed)
    torch.manual_seed(schedule.seed)
    sampler = NegativeSampler(split.train, split.n_items, rng)
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
        order = rng.permutation(len(split.train))
        total = 0.0
        for step, start in enumerate(range(0, len(order), batch), 1):
            rows = split.train[order[start:start + batch]]
            users, pos = rows[:, 0], rows[:, 1]
            neg = sampler(users)
            loss = model.loss(torch.from_numpy(users), torch.from_numpy(pos), torch.from_numpy(neg), reg)
            if not torch.isfinite(loss):
                model.load_state_dict(best_state)
                raise NanLossError(epoch, step, saved)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        history.epoch_seconds.append(time.perf_counter() - started)
        history.epochs_run = epoch
        score = None
        if validate and (epoch % schedule.eval_every == 0 or epoch == schedule.epochs):
            score = validation_ndcg(scorer(model), split, STOP_K, group=watched)
            history.valid.append((epoch, score))
            if score > history.best_valid:
                history.best_valid, history.best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
                saved = checkpoint(model) if checkpoint else None
            else:
                stale += 1
        if on_epoch:
            on_epoch(epoch, total / len(order), score)
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


def scorer(model: LightGCN) -> Callable[[np.ndarray], torch.Tensor]:
    """Scores of every item for a batch of users, from embeddings computed once."""
    model.eval()
    users, items = model.embeddings()
    return lambda batch: users[torch.from_numpy(np.asarray(batch))] @ items.T
