"""LightGCN over the user–item graph, fused with stored text (or any) features at layer 0.

Layer 0 of a node is its ID embedding, its projected feature vector, or both (``sum``, ``concat``,
``gate``); propagation is the symmetric-normalised adjacency as a torch sparse tensor and the
output is the mean over layers. Ids never seen in training keep a zero ID embedding (it could only
be noise), so a cold item is represented by its features alone.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from featctl.errors import TrainInputError
from featctl.models.features import Features

log = logging.getLogger(__name__)

FUSIONS = ("none", "sum", "concat", "gate")


@dataclass(frozen=True)
class LightGCNParams:
    """RecBole-like defaults: dimension 64, 2 layers, Adam at 1e-3, batches of 2048 BPR triples."""

    dim: int = 64
    layers: int = 2
    lr: float = 1e-3
    reg: float = 1e-4
    batch: int = 2048
    fusion: str = "none"
    tune_features: bool = False

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise TrainInputError(f"unknown --fusion '{self.fusion}'; choose one of {', '.join(FUSIONS)}")
        for name in ("dim", "batch"):
            if getattr(self, name) < 1:
                raise TrainInputError(f"--{name} must be 1 or more, not {getattr(self, name)}")
        if self.layers < 0:
            raise TrainInputError(f"--layers must be 0 or more, not {self.layers}")
        if self.lr <= 0 or self.reg < 0:
            raise TrainInputError("--lr must be above 0 and --reg 0 or more")


def check_fusion(fusion: str, has_features: bool) -> None:
    """A fusion other than ``none`` needs a feature set to fuse."""
    if fusion != "none" and not has_features:
        raise TrainInputError(f"--fusion {fusion} fuses features with IDs; pass --item-features SET "
                              "and/or --user-features SET (or --fusion none)")


def normalized_adjacency(train: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph, users first, as a sparse CSR tensor."""
    users, items = train[:, 0], train[:, 1] + n_users
    rows = np.concatenate([users, items])
    cols = np.concatenate([items, users])
    degree = np.bincount(rows, minlength=n_users + n_items).astype(np.float32)
    scale = np.zeros_like(degree)
    np.power(degree, -0.5, out=scale, where=degree > 0)
    values = scale[rows] * scale[cols]
    coo = torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(values),
                                  (n_users + n_items,) * 2, check_invariants=False).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": it is what makes an epoch fast
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()


class _SymmetricMM(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``: the gradient is ``A @ grad``, so no transpose of ``A`` is ever
    built (torch's own backward transposes the CSR matrix on every call, 10-40x slower)."""

    @staticmethod
    def forward(ctx: Any, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, torch.sparse.mm(ctx.adjacency, grad)


class _Side(nn.Module):
    """Layer-0 embeddings of one side (users or items): IDs, features, or a fusion of both."""

    def __init__(self, count: int, seen: np.ndarray, params: LightGCNParams, features: Features | None) -> None:
        super().__init__()
        self.fusion = params.fusion if features is not None else "none"
        wide = params.fusion == "concat" and features is None  # keeps widths equal when only one side has features
        self.ids = nn.Embedding(count, params.dim * (2 if wide else 1))
        nn.init.xavier_uniform_(self.ids.weight)
        self.register_buffer("seen", torch.from_numpy(seen.astype(np.float32))[:, None])
        if features is None:
            return
        self.vectors = nn.Parameter(torch.from_numpy(features.vectors.copy()), requires_grad=params.tune_features)
        self.register_buffer("mask", torch.from_numpy(features.mask)[:, None])
        self.project = nn.Linear(features.dim, params.dim)
        self.missing = nn.Parameter(torch.zeros(params.dim))  # learned stand-in for ids without a vector
        if self.fusion == "gate":
            self.gate = nn.Linear(2 * params.dim, params.dim)

    def forward(self) -> torch.Tensor:
        ids = self.ids.weight * self.seen
        if self.fusion == "none":
            return ids
        feats = torch.where(self.mask, self.project(self.vectors), self.missing)
        if self.fusion == "sum":
            return ids + feats
        if self.fusion == "concat":
            return torch.cat([ids, feats], dim=1)
        weight = torch.sigmoid(self.gate(torch.cat([ids, feats], dim=1)))
        return weight * ids + (1 - weight) * feats


class LightGCN(nn.Module):
    """Scores are dot products of layer-mean embeddings."""

    def __init__(self, train: np.ndarray, n_users: int, n_items: int, params: LightGCNParams,
                 user_features: Features | None = None, item_features: Features | None = None) -> None:
        super().__init__()
        check_fusion(params.fusion, user_features is not None or item_features is not None)
        if params.fusion == "none":
            user_features = item_features = None
        self.n_users, self.n_items, self.layers = n_users, n_items, params.layers
        self.train_pairs, self.reg, self.batch = train, params.reg, params.batch
        seen_users = np.bincount(train[:, 0], minlength=n_users) > 0
        seen_items = np.bincount(train[:, 1], minlength=n_items) > 0
        self.users = _Side(n_users, seen_users, params, user_features)
        self.items = _Side(n_items, seen_items, params, item_features)
        self.register_buffer("adjacency", normalized_adjacency(train, n_users, n_items), persistent=False)

    def layer0(self) -> torch.Tensor:
        return torch.cat([self.users(), self.items()])

    def propagate(self, ego: torch.Tensor) -> torch.Tensor:
        """Layer mean of the propagated embeddings, users first."""
        total, layer = ego, ego
        for _ in range(self.layers):
            layer = _SymmetricMM.apply(self.adjacency, layer)
            total = total + layer
        return total / (self.layers + 1)

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """BPR, plus L2 on the layer-0 embeddings of the batch."""
        ego = self.layer0()
        nodes = torch.cat([users, pos + self.n_users, neg + self.n_users])  # one gather each, not three
        u, p, n = self.propagate(ego)[nodes].view(3, len(users), -1)
        bpr = -nn.functional.logsigmoid((u * (p - n)).sum(1)).mean()
        return bpr + self.reg * ego[nodes].square().sum() / (2 * len(users))

    def steps(self, rng: np.random.Generator) -> Iterator[tuple[int, torch.Tensor]]:
        """One epoch of BPR over the training pairs in a random order, a uniform negative for each."""
        yield from bpr_steps(self, self.train_pairs, self.n_items, self.batch, rng)

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) embeddings: what scores, checkpoints and ``--export`` use."""
        final = self.propagate(self.layer0())
        return final[: self.n_users], final[self.n_users:]

    def scorer(self, part: str) -> Callable[[np.ndarray], torch.Tensor]:
        users, items = self.embeddings()
        return lambda batch: users[torch.from_numpy(np.asarray(batch))] @ items.T


def bpr_steps(model: nn.Module, train: np.ndarray, n_items: int, batch: int,
              rng: np.random.Generator) -> Iterator[tuple[int, torch.Tensor]]:
    """BPR triples in batches: ``model.loss(users, positives, negatives)`` for each."""
    sampler = NegativeSampler(train, n_items, rng)
    order = rng.permutation(len(train))
    for start in range(0, len(order), batch):
        rows = train[order[start:start + batch]]
        users, pos = rows[:, 0], rows[:, 1]
        neg = sampler(users)
        yield len(rows), model.loss(torch.from_numpy(users), torch.from_numpy(pos), torch.from_numpy(neg))


class NegativeSampler:
    """Uniform negatives that are not among the user's training items."""

    def __init__(self, train: np.ndarray, n_items: int, rng: np.random.Generator) -> None:
        self.n_items = n_items
        self.known = np.unique(train[:, 0] * n_items + train[:, 1])
        self.rng = rng

    def _clash(self, keys: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(self.known, keys), len(self.known) - 1)
        return self.known[at] == keys

    def __call__(self, users: np.ndarray) -> np.ndarray:
        items = self.rng.integers(0, self.n_items, len(users))
        for _ in range(20):  # a user who has seen nearly everything keeps a rare positive as "negative"
            clash = self._clash(users * self.n_items + items)
            if not clash.any():
                break
            items[clash] = self.rng.integers(0, self.n_items, int(clash.sum()))
        return items
