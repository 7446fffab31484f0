"""Simple strong baselines scored by the same evaluation as the trainers: Pop, ItemKNN, EASE, Content.

Each one keeps the trainers' contract: ``name``, ``fit(split)`` on the training interactions only,
and ``scores(users)``, a float32 tensor of shape (len(users), n_items), higher is better.
Defaults follow RecBole (ItemKNN: k=100, shrink 0; EASE: reg_weight 250).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from featctl.errors import TrainInputError

if TYPE_CHECKING:
    from featctl.models.splits import Split

log = logging.getLogger(__name__)

BLOCK_ELEMENTS = 1 << 24  # items x block columns of co-occurrence counted at once by ItemKNN
NO_VECTOR_SCORE = -2.0  # below any cosine: Content ranks items without a vector last


class Recommender(Protocol):
    """What evaluation and comparison need from a baseline or a trainer."""

    name: str

    def fit(self, split: Split) -> None: ...

    def scores(self, users: np.ndarray) -> torch.Tensor: ...


def interaction_matrix(split: Split) -> sp.csr_matrix:
    """The binary user x item matrix of the training interactions (duplicates count once)."""
    train = np.asarray(split.train, dtype=np.int64).reshape(-1, 2)
    x = sp.csr_matrix((np.ones(len(train)), (train[:, 0], train[:, 1])), shape=(split.n_users, split.n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def _users(users: np.ndarray) -> np.ndarray:
    return np.asarray(users, dtype=np.int64).reshape(-1)


def _fitted(value: object, name: str) -> None:
    if value is None:
        raise RuntimeError(f"{name}: call fit(split) before scores(users)")


class Pop:
    """Every user gets the items' training interaction counts: the floor any model must clear."""

    name = "pop"

    def __init__(self) -> None:
        self.counts: torch.Tensor | None = None

    def fit(self, split: Split) -> None:
        x = interaction_matrix(split)
        self.counts = torch.from_numpy(np.asarray(x.sum(axis=0), dtype=np.float32).reshape(-1))

    def scores(self, users: np.ndarray) -> torch.Tensor:
        _fitted(self.counts, self.name)
        return self.counts.unsqueeze(0).repeat(len(_users(users)), 1)


class ItemKNN:
    """Item-based k nearest neighbours: cosine between item columns, top ``k`` neighbours per item.

    Column j of the sparse similarity S holds the ``k`` items most similar to j (no self-similarity;
    ties kept by lower item index); a user's scores are their training row times S, as in RecBole.
    """

    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 0.0) -> None:
        if k < 1:
            raise TrainInputError(f"ItemKNN needs k >= 1 neighbours, not {k}")
        if shrink < 0:
            raise TrainInputError(f"ItemKNN shrink must be 0 or more, not {shrink}")
        self.k = k
        self.shrink = shrink
        self.x: sp.csr_matrix | None = None
        self.similarity: sp.csr_matrix | None = None

    def fit(self, split: Split) -> None:
        x = interaction_matrix(split)
        n_items = split.n_items
        xt = x.T.tocsr()
        xc = x.tocsc()
        norms = np.sqrt(np.asarray(x.sum(axis=0), dtype=np.float64).reshape(-1))
        block = max(1, BLOCK_ELEMENTS // max(n_items, 1))
        rows, cols, vals = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
        for start in range(0, n_items, block):
            co = (xt @ xc[:, start:start + block]).tocoo()  # co-occurrence counts, (n_items, block)
            i, j, g = co.row.astype(np.int64), co.col.astype(np.int64) + start, co.data
            keep = i != j
            i, j, g = i[keep], j[keep], g[keep]
            sim = g / (norms[i] * norms[j] + self.shrink)
            order = np.lexsort((i, -sim, j))  # by column, then similarity descending, then lower index
            i, j, sim = i[order], j[order], sim[order]
            first = np.r_[0, np.flatnonzero(j[1:] != j[:-1]) + 1]
            sizes = np.diff(np.r_[first, len(j)])
            position = np.arange(len(j)) - np.repeat(first, sizes)
            top = position < self.k
            rows.append(i[top])
            cols.append(j[top])
            vals.append(sim[top])
        self.similarity = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items))
        self.x = x
        log.debug("itemknn: %d items, %d similarities kept (k=%d)", n_items, self.similarity.nnz, self.k)

    def scores(self, users: np.ndarray) -> torch.Tensor:
        _fitted(self.similarity, self.name)
        out = (self.x[_users(users)] @ self.similarity).toarray()
        return torch.from_numpy(out.astype(np.float32))


class EASE:
    """Embarrassingly shallow autoencoder (Steck 2019): B = -P / diag(P) with P = (XᵀX + λI)⁻¹, diag(B) = 0.

    Dense items x items in float64, so it refuses item counts above ``max_items``.
    """

    name = "ease"

    def __init__(self, reg: float = 250.0, max_items: int = 30_000) -> None:
        if reg <= 0:
            raise TrainInputError(f"EASE needs a positive regularisation weight, not {reg}")
        self.reg = reg
        self.max_items = max_items
        self.x: sp.csr_matrix | None = None
        self.weights: torch.Tensor | None = None

    def fit(self, split: Split) -> None:
        n = split.n_items
        if n > self.max_items:
            gib = 3 * n * n * 8 / 2**30  # Gram matrix, its inverse and B, float64
            raise TrainInputError(
                f"EASE inverts a dense {n:,} x {n:,} item matrix, about {gib:,.1f} GiB of memory, above its "
                f"limit of {self.max_items:,} items; use the itemknn baseline for this many items")
        x = interaction_matrix(split)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices(n)] += self.reg
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices(n)] = 0.0
        self.weights = torch.from_numpy(b.astype(np.float32))
        self.x = x

    def scores(self, users: np.ndarray) -> torch.Tensor:
        _fitted(self.weights, self.name)
        rows = torch.from_numpy(self.x[_users(users)].toarray().astype(np.float32))
        return rows @ self.weights


class Content:
    """Content-based cold-start reference: cosine between a user's profile and each item's vector.

    The profile is the mean of the L2-normalised vectors of the user's training items that have one.
    Cold items score like any other; items without a (non-zero, finite) vector score
    ``NO_VECTOR_SCORE``, below every item with one; users with no usable history score 0 everywhere.
    """

    name = "content"

    def __init__(self, vectors: np.ndarray, mask: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if vectors.ndim != 2 or len(vectors) != len(mask):
            raise TrainInputError(f"content vectors must be (items, dim) with one mask entry per item; "
                                  f"got vectors {vectors.shape} and mask {mask.shape}")
        norms = np.linalg.norm(vectors, axis=1)
        self.usable = mask & np.isfinite(norms) & (norms > 0)
        unit = np.zeros_like(vectors)
        unit[self.usable] = vectors[self.usable] / norms[self.usable, None]
        self.unit = unit
        self.items = torch.from_numpy(unit)
        self.without = torch.from_numpy(~self.usable)
        self.profiles: torch.Tensor | None = None
        self.no_history: torch.Tensor | None = None

    def fit(self, split: Split) -> None:
        if len(self.unit) != split.n_items:
            raise TrainInputError(f"content vectors cover {len(self.unit):,} items, the split has {split.n_items:,}; "
                                  "align the vectors to the split's item indices")
        x = interaction_matrix(split) @ sp.diags(self.usable.astype(np.float64))
        counts = np.asarray(x.sum(axis=1)).reshape(-1)
        profiles = np.asarray(x @ self.unit.astype(np.float64)) / np.maximum(counts, 1)[:, None]
        norms = np.linalg.norm(profiles, axis=1)
        empty = (counts == 0) | (norms == 0)
        profiles[~empty] /= norms[~empty, None]
        profiles[empty] = 0.0
        self.profiles = torch.from_numpy(profiles.astype(np.float32))
        self.no_history = torch.from_numpy(empty)
        log.debug("content: %d of %d items have a vector, %d users have no usable history",
                  int(self.usable.sum()), len(self.usable), int(empty.sum()))

    def scores(self, users: np.ndarray) -> torch.Tensor:
        _fitted(self.profiles, self.name)
        users = torch.from_numpy(_users(users))
        out = self.profiles[users] @ self.items.T
        out[:, self.without] = NO_VECTOR_SCORE
        out[self.no_history[users]] = 0.0
        return out


BASELINES: dict[str, type] = {"pop": Pop, "itemknn": ItemKNN, "ease": EASE, "content": Content}
