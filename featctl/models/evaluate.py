"""Full-ranking evaluation of a scorer on a split: Recall, NDCG, Hit, Precision at K and AUC.

Protocol (RecBole's full ranking, over every item, no sampled negatives):

* Each evaluated user's candidates are all items except the ones they already saw: their training
  items when evaluating ``valid``; their training and validation items when evaluating ``test``.
* The truth is the user's items in the evaluated part. A truth item the user also has in an excluded
  part (a repeated interaction) cannot be recommended again and is left out of the truth.
* Three groups: ``all`` (every candidate, every truth item), ``warm`` (only items with a training
  interaction, as candidates and as truth) and ``cold`` (only items without one). A user counts in a
  group only with at least one truth item there; a group without users is ``None``.
* Ranking is by score, higher first; ties are broken by a seeded random order of the items
  (``tie_seed``; None breaks them by lower item index). Ids are often numbered by popularity or
  age, so breaking ties by index would hand a model that scores every cold item alike (popularity,
  IDs only) a popularity ranking it never learned. Either way results are deterministic.
  Scores are compared as float32; non-finite ones are clamped: NaN and -inf rank as the lowest
  finite score, +inf as the highest.
* Per user: recall@K = hits / |truth|; precision@K = hits / K; hit@K = 1 if any hit; ndcg@K with
  binary gains over the ideal DCG of min(|truth|, K) hits; auc = the share of (truth item, non-truth
  candidate) pairs where the truth item scores higher, a tie counting 1/2 (a user whose candidates
  are all truth items is skipped for AUC). Each metric is the mean over the group's users; ``users``
  is how many were evaluated (``auc`` is NaN when every user was skipped for it).

Users go through the scorer in batches and metrics are computed on row chunks, so memory stays
bounded by the batch, never by users x items. There is no sort of the items: each candidate is
located among the user's few truth items (searchsorted), which gives the truth items' ranks and
the AUC pair counts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from featctl.errors import TrainInputError

if TYPE_CHECKING:
    from featctl.models.splits import Split

log = logging.getLogger(__name__)

GROUPS = ("all", "warm", "cold")
PARTS = ("valid", "test")
CHUNK_ELEMENTS = 1 << 22  # users x items handled at once while computing metrics (int64 work arrays)

Scorer = Callable[[np.ndarray], "torch.Tensor | np.ndarray"]
Results = dict[str, "dict[str, float] | None"]


class _Rows:
    """Each user's items of one part in CSR form, to build per-batch masks without a dense matrix."""

    def __init__(self, pairs: np.ndarray, n_users: int) -> None:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        order = np.argsort(pairs[:, 0], kind="stable")
        self.items = pairs[order, 1]
        self.indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(pairs[:, 0], minlength=n_users), out=self.indptr[1:])

    def mark(self, mask: torch.Tensor, users: np.ndarray) -> None:
        """Set ``mask[r, i]`` for every item ``i`` of ``users[r]``."""
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        if not total:
            return
        rows = np.repeat(np.arange(len(users)), lengths)
        offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths - starts, lengths)
        device = mask.device
        mask[torch.from_numpy(rows).to(device), torch.from_numpy(self.items[offsets]).to(device)] = True


def evaluate(scorer: Scorer, split: Split, part: str = "test", ks: Sequence[int] = (10, 20, 50),
             batch_users: int = 1024, tie_seed: int | None = 0) -> Results:
    """Rank every candidate item for each user with a truth item in ``part``; metrics per item group."""
    if part not in PARTS:
        raise TrainInputError(f"unknown evaluation part '{part}'; choose one of {', '.join(PARTS)}")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise TrainInputError(f"cut-offs K must be positive integers, got {ks}")
    if batch_users < 1:
        raise TrainInputError(f"batch_users must be at least 1, got {batch_users}")
    n_users, n_items = split.n_users, split.n_items
    truth_rows = _Rows(split.test if part == "test" else split.valid, n_users)
    excluded_parts = [split.train] + ([split.valid] if part == "test" else [])
    excluded_rows = _Rows(np.concatenate([np.asarray(p).reshape(-1, 2) for p in excluded_parts]), n_users)
    users = np.flatnonzero(np.diff(truth_rows.indptr) > 0)
    cold = torch.from_numpy(np.asarray(split.cold_items, dtype=bool))
    if cold.shape != (n_items,):
        raise ValueError(f"cold_items has shape {tuple(cold.shape)}, expected ({n_items},)")
    sums = {g: _Sums(ks) for g in GROUPS}
    order = np.arange(n_items) if tie_seed is None else np.random.default_rng(tie_seed).permutation(n_items)
    tie_rank = torch.from_numpy(order.astype(np.int64))
    for start in range(0, len(users), batch_users):
        batch = users[start:start + batch_users]
        scores = scorer(batch)
        scores = torch.as_tensor(scores).detach()
        if tuple(scores.shape) != (len(batch), n_items):
            raise ValueError(f"scorer returned shape {tuple(scores.shape)}, expected ({len(batch)}, {n_items})")
        cold, tie_rank = cold.to(scores.device), tie_rank.to(scores.device)
        step = max(1, CHUNK_ELEMENTS // max(n_items, 1))
        for lo in range(0, len(batch), step):
            _score_chunk(scores[lo:lo + step], batch[lo:lo + step], truth_rows, excluded_rows, cold, tie_rank, sums)
    results: Results = {g: sums[g].result() for g in GROUPS}
    log.debug("evaluated %s on %d users: %s", part, len(users),
              {g: None if r is None else r["users"] for g, r in results.items()})
    return results


def metric(results: Results, name: str, group: str = "all") -> float:
    """One figure from ``evaluate``'s results, 0.0 when the group had no users (for early stopping)."""
    if group not in results:
        raise TrainInputError(f"unknown group '{group}'; choose one of {', '.join(results)}")
    values = results[group]
    if values is None:
        return 0.0
    if name not in values:
        raise TrainInputError(f"unknown metric '{name}'; known: {', '.join(values)}")
    return float(values[name])


class _Sums:
    """Running per-group sums of per-user metrics."""

    def __init__(self, ks: tuple[int, ...]) -> None:
        self.ks = ks
        self.users = 0
        self.auc_users = 0
        self.auc = 0.0
        self.values = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hit", "precision")}

    def result(self) -> dict[str, float] | None:
        if not self.users:
            return None
        out = {name: total / self.users for name, total in self.values.items()}
        out["auc"] = self.auc / self.auc_users if self.auc_users else math.nan
        out["users"] = self.users
        return out


def _score_chunk(scores: torch.Tensor, users: np.ndarray, truth_rows: _Rows, excluded_rows: _Rows,
                 cold: torch.Tensor, tie_rank: torch.Tensor, sums: dict[str, _Sums]) -> None:
    """Add one chunk of users' metrics to ``sums``.

    No sort of the items: each candidate is located among the row's few truth items, sorted, by
    three searchsorted calls shared by all groups; per-position counts of candidates (warm and cold
    apart) then give every truth item's rank and the AUC pair counts on tables of size truth x rows.
    """
    device = scores.device
    rows, n_items = scores.shape
    finfo = torch.finfo(torch.float32)
    scores = torch.nan_to_num(scores.float(), nan=finfo.min, posinf=finfo.max, neginf=finfo.min)
    scores = scores.contiguous().add_(0.0)  # -0.0 becomes +0.0: equal scores get equal keys
    excluded = torch.zeros(rows, n_items, dtype=torch.bool, device=device)
    excluded_rows.mark(excluded, users)
    truth = torch.zeros(rows, n_items, dtype=torch.bool, device=device)
    truth_rows.mark(truth, users)
    truth &= ~excluded
    n_true = truth.sum(dim=1)
    if not bool((n_true > 0).any()):
        return
    # order-preserving int64 keys: the score's bits above, the reversed tie rank below, so keys are
    # unique and rank by score, then by lower tie rank; a score's keys span [bits << 32, (bits + 1) << 32)
    raw = scores.view(torch.int32)
    bits = (raw >> 31).bitwise_and_(0x7FFFFFFF).bitwise_xor_(raw).to(torch.int64).bitwise_left_shift_(32)
    del raw
    keys = bits + ((1 << 32) - 1 - tie_rank)
    width = int(n_true.max())
    row, col = torch.nonzero(truth, as_tuple=True)  # row-major: each row's truth items are contiguous
    slot = torch.arange(len(row), device=device) - (torch.cumsum(n_true, 0) - n_true)[row]
    truth_keys = torch.full((rows, width), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)
    truth_keys[row, slot] = keys[row, col]
    truth_cold = torch.zeros(rows, width, dtype=torch.bool, device=device)
    truth_cold[row, slot] = cold[col]
    truth_keys, order = torch.sort(truth_keys, dim=1)
    truth_cold = torch.gather(truth_cold, 1, order)
    # per row, candidates counted by (cold?, number of truth keys below): below the key (rank), below the
    # score's lowest key (truth scored lower) and below its highest (truth scored lower or tied)
    code = cold.to(torch.int64) * (width + 1)
    weight = (~excluded).to(torch.int64)
    counts = []
    where = torch.empty(rows, n_items, dtype=torch.int64, device=device)
    for bound in (keys, bits, None):
        if bound is None:
            bound = bits.add_(1 << 32)  # past the score's highest key, in place: bits is not needed after
        torch.searchsorted(truth_keys, bound, out=where).add_(code)
        counts.append(torch.zeros(rows, 2 * (width + 1), dtype=torch.int64, device=device)
                      .scatter_add_(1, where, weight).view(rows, 2, width + 1))
    valid = torch.arange(width, device=device)[None, :] < n_true[:, None]
    for group, pick in (("all", None), ("warm", 0), ("cold", 1)):
        tables = [c.sum(dim=1) if pick is None else c[:, pick] for c in counts]
        member = valid if pick is None else valid & (truth_cold == bool(pick))
        _add_group(sums[group], *tables, member)


def _add_group(sums: _Sums, by_key: torch.Tensor, by_low: torch.Tensor, by_high: torch.Tensor,
               member: torch.Tensor) -> None:
    """Metrics of one group for a chunk from its candidate count tables, (rows, truth slots + 1) each.

    ``member`` marks which of the row's sorted truth slots belong to the group.
    """
    device = member.device
    dtype = torch.float64
    m = member.sum(dim=1)
    evaluated = m > 0
    if not bool(evaluated.any()):
        return
    n_cand = by_key.sum(dim=1)
    rank = n_cand[:, None] - torch.cumsum(by_key, dim=1)[:, :-1]  # candidates keyed above each truth slot
    below = torch.zeros_like(by_key)
    below[:, 1:] = torch.cumsum(member.to(torch.int64), dim=1)  # group truth items in slots below
    # Mann-Whitney with ties as 1/2: over (truth, candidate) pairs, less the truth-truth ones (m^2 / 2)
    lost = (by_high * below).sum(dim=1).to(dtype)  # pairs where the candidate scores >= the truth item
    ties = lost - (by_low * below).sum(dim=1).to(dtype)
    md = m.to(dtype)
    negatives = (n_cand - m).to(dtype)
    wins = md * n_cand.to(dtype) - lost + 0.5 * ties - md * md / 2
    has_auc = evaluated & (negatives > 0)
    sums.auc += float((wins[has_auc] / (md[has_auc] * negatives[has_auc])).sum())
    sums.auc_users += int(has_auc.sum())
    sums.users += int(evaluated.sum())
    gains = torch.where(member, 1.0 / torch.log2(rank.to(dtype) + 2.0), torch.zeros((), dtype=dtype, device=device))
    e = evaluated
    for k in sums.ks:
        hit = member & (rank < k)
        hits = hit.sum(dim=1).to(dtype)
        dcg = (gains * hit).sum(dim=1)
        ideal = torch.cumsum(1.0 / torch.log2(torch.arange(k, dtype=dtype, device=device) + 2.0), 0)
        idcg = ideal[torch.clamp(m, min=1, max=k) - 1]
        sums.values[f"recall@{k}"] += float((hits[e] / md[e]).sum())
        sums.values[f"ndcg@{k}"] += float((dcg[e] / idcg[e]).sum())
        sums.values[f"hit@{k}"] += float((hits[e] > 0).sum())
        sums.values[f"precision@{k}"] += float((hits[e] / k).sum())


def validation_ndcg(scorer: Scorer, split: Split, k: int = 20, batch_users: int = 1024, group: str = "all") -> float:
    """NDCG@k of ``group`` ("all" or "cold") on the validation part, by top-k: what early stopping checks.

    Same definition as :func:`evaluate`'s ``ndcg@k`` but about 10x faster; ties among scores are broken
    by torch's top-k rather than the seeded order, which only matters for models that score alike
    (never a trained embedding model).
    """
    truth_rows = _Rows(split.valid, split.n_users)
    excluded_rows = _Rows(split.train, split.n_users)
    users = np.flatnonzero(np.diff(truth_rows.indptr) > 0)
    cold = torch.from_numpy(np.asarray(split.cold_items, dtype=bool))[None, :]
    discount = 1.0 / torch.log2(torch.arange(k, dtype=torch.float64) + 2.0)
    total, counted = 0.0, 0
    for start in range(0, len(users), batch_users):
        batch = users[start:start + batch_users]
        scores = torch.as_tensor(scorer(batch)).detach().float().clone()
        excluded = torch.zeros(scores.shape, dtype=torch.bool)
        excluded_rows.mark(excluded, batch)
        truth = torch.zeros(scores.shape, dtype=torch.bool)
        truth_rows.mark(truth, batch)
        if group == "cold":
            excluded |= ~cold
        truth &= ~excluded
        scores[excluded] = -torch.inf
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices
        hits = torch.gather(truth, 1, top).to(torch.float64)
        n_true = truth.sum(dim=1)
        ideal = torch.cumsum(discount, 0)[torch.clamp(n_true, min=1, max=k) - 1]
        keep = n_true > 0
        total += float(((hits * discount[: hits.shape[1]]).sum(dim=1) / ideal)[keep].sum())
        counted += int(keep.sum())
    return total / counted if counted else 0.0
