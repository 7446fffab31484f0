"""``moe``: SASRec over each user's time-ordered history, with items as a mixture of modality experts (UR4Rec).

- Item representation: one expert per modality (ID embedding, projected text set, projected image
  set). With ``sub_experts`` N > 1 each modality has N experts mixed by its own gate (hierarchical).
  A learned gate reads the item's modality outputs and weighs them; a modality the item has no
  vector for gets weight 0. A load-balancing loss (Switch-style importance) keeps every expert used.
- Sequence model: SASRec, causal multi-head self-attention blocks over the last ``max_len`` items
  with learned positions; the state after an item predicts the next one.
- Training: sampled softmax (InfoNCE) over the true next item and ``negatives`` items drawn
  uniformly, shared by the batch; cross-entropy from logits scaled by a learned temperature.
- Scoring: the state after the last known item (training items for validation; training and
  validation items for test) against every item, so evaluation is full ranking, leave-one-out on
  a temporal split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from featctl.errors import TrainInputError
from featctl.models.data import Interactions
from featctl.models.modalities import ItemInputs, Projection, Temperature, balance_loss
from featctl.models.splits import Split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MoEParams:
    """SASRec's usual sizes (64-d, 2 blocks, 2 heads, 50 items, dropout 0.2) and the mixture's options."""

    dim: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    lr: float = 1e-3
    batch: int = 128
    negatives: int = 256
    sub_experts: int = 1
    balance: float = 0.01

    def __post_init__(self) -> None:
        for name in ("dim", "layers", "heads", "max_len", "batch", "negatives", "sub_experts"):
            if getattr(self, name) < 1:
                raise TrainInputError(f"--{name.replace('_', '-')} must be 1 or more, not {getattr(self, name)}")
        if self.dim % self.heads:
            raise TrainInputError(f"--dim {self.dim} must be a multiple of --heads {self.heads}")
        if not 0 <= self.dropout < 1 or self.lr <= 0 or self.balance < 0:
            raise TrainInputError("--dropout must be in [0, 1), --lr above 0 and --balance 0 or more")


def part_times(data: Interactions, split: Split) -> dict[str, np.ndarray]:
    """The time of each (user, item) pair of the split's parts, looked up in the interaction log."""
    if data.time is None:
        raise TrainInputError("moe reads each user's history in time order; pass --time-col")
    keys = data.user * data.n_items + data.item
    order = np.argsort(keys)
    times = {}
    for part in ("train", "valid", "test"):
        pairs = getattr(split, part)
        times[part] = data.time[order[np.searchsorted(keys[order], pairs[:, 0] * data.n_items + pairs[:, 1])]]
    return times


def histories(pairs: np.ndarray, times: np.ndarray, n_users: int) -> list[np.ndarray]:
    """Each user's items ordered by time (then item index), as arrays of item indices."""
    order = np.lexsort((pairs[:, 1], times, pairs[:, 0]))
    users, items = pairs[order, 0], pairs[order, 1]
    bounds = np.searchsorted(users, np.arange(n_users + 1))
    return [items[bounds[u]:bounds[u + 1]] for u in range(n_users)]


class Expert(nn.Module):
    """One modality: its input (ID table or projected feature set), then ``n`` experts under a sub-gate."""

    def __init__(self, base: nn.Module, dim: int, n: int) -> None:
        super().__init__()
        self.base = base
        self.experts = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n))
        self.gate = nn.Linear(dim, n) if n > 1 else None

    def forward(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.base(items)
        outs = torch.stack([x + expert(x) for expert in self.experts], dim=1)
        if self.gate is None:
            return outs[:, 0], None
        weights = torch.softmax(self.gate(x), dim=-1)
        return (weights[..., None] * outs).sum(1), weights


class MoESASRec(nn.Module):
    """SASRec whose item vectors come from a gated mixture of modality experts."""

    def __init__(self, split: Split, times: dict[str, np.ndarray], params: MoEParams,
                 modalities: tuple[str, ...], inputs: ItemInputs) -> None:
        super().__init__()
        self.params, self.modalities, self.n_items = params, modalities, split.n_items
        self.split = split
        d = params.dim
        self.history = {"valid": histories(split.train, times["train"], split.n_users)}
        both = np.concatenate([split.train, split.valid])
        self.history["test"] = histories(both, np.concatenate([times["train"], times["valid"]]), split.n_users)
        experts = {}
        for modality in modalities:
            if modality == "id":
                table = nn.Embedding(split.n_items, d)
                nn.init.normal_(table.weight, std=d ** -0.5)
                experts[modality] = Expert(table, d, params.sub_experts)
            else:
                experts[modality] = Expert(Projection(inputs.features[modality], d), d, params.sub_experts)
        self.experts = nn.ModuleDict(experts)
        masks = [torch.from_numpy(~np.asarray(split.cold_items, dtype=bool)) if m == "id" else torch.from_numpy(
            inputs.features[m].mask.copy()) for m in modalities]  # a cold item's ID embedding was never trained
        has = torch.stack(masks, dim=1)
        self.register_buffer("has", has | ~has.any(1, keepdim=True))  # an item with nothing keeps every expert
        self.gate = nn.Linear(len(modalities) * d, len(modalities)) if len(modalities) > 1 else None
        self.positions = nn.Embedding(params.max_len, d)
        block = nn.TransformerEncoderLayer(d, params.heads, 4 * d, params.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, params.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(params.dropout)
        self.temperature = Temperature()

    def items(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Item vectors, the modality gate's weights, and the balance loss of every gate involved."""
        outs, balance = [], items.new_zeros((), dtype=torch.float32)
        for expert in self.experts.values():
            out, sub = expert(items)
            outs.append(out)
            if sub is not None:
                balance = balance + balance_loss(sub)
        stacked = torch.stack(outs, dim=1)
        if self.gate is None:
            return stacked[:, 0], torch.ones(len(items), 1), balance
        logits = self.gate(stacked.flatten(1)).masked_fill(~self.has[items], float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        return (weights[..., None] * stacked).sum(1), weights, balance + balance_loss(weights)

    def encode(self, sequences: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """States (batch, max_len, dim) of left-padded sequences of item positions into ``vectors`` (-1: padding)."""
        length = sequences.shape[1]
        pad = sequences < 0
        x = torch.where(pad[..., None], 0.0, vectors[sequences.clamp_min(0)])
        x = self.dropout(x * self.params.dim ** 0.5 + self.positions.weight[-length:])
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)
        blocked = causal[None] | (pad[:, None, :] & ~torch.eye(length, dtype=torch.bool)[None])  # self stays open
        mask = blocked.repeat_interleave(self.params.heads, dim=0)
        return self.norm(self.encoder(x, mask=mask))

    def _batch(self, users: np.ndarray, part: str, extra: int,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """Left-padded windows of ``max_len + extra`` items per user (-1 pads): the last ones, or with
        ``rng`` a window ending at a random point, so that long histories are all seen over the epochs."""
        width = self.params.max_len + extra
        rows = np.full((len(users), width), -1, dtype=np.int64)
        for r, u in enumerate(users):
            history = self.history[part][u]
            end = len(history) if rng is None or len(history) <= width else int(rng.integers(width, len(history) + 1))
            items = history[max(0, end - width):end]
            if len(items):
                rows[r, width - len(items):] = items
        return rows

    def steps(self, rng: np.random.Generator) -> Iterator[tuple[int, torch.Tensor]]:
        """One window per user with at least two training items, in a random order; predict every next item."""
        users = np.array([u for u, h in enumerate(self.history["valid"]) if len(h) > 1], dtype=np.int64)
        order = users[rng.permutation(len(users))]
        for start in range(0, len(order), self.params.batch):
            yield self._loss(torch.from_numpy(self._batch(order[start:start + self.params.batch], "valid", 1, rng)),
                             rng)

    def _loss(self, windows: torch.Tensor, rng: np.random.Generator) -> tuple[int, torch.Tensor]:
        inputs, targets = windows[:, :-1], windows[:, 1:]
        negatives = torch.from_numpy(rng.integers(0, self.n_items, self.params.negatives))
        needed = torch.cat([windows[windows >= 0], negatives])
        unique, inverse = torch.unique(needed, return_inverse=True)
        vectors, _, balance = self.items(unique)
        local = torch.full((self.n_items,), -1, dtype=torch.long)
        local[unique] = torch.arange(len(unique))
        states = self.encode(torch.where(inputs >= 0, local[inputs.clamp_min(0)], -1), vectors)
        valid = (targets >= 0) & (inputs >= 0)  # a padding state predicts nothing
        h, target = states[valid], local[targets[valid]]
        positive = (h * vectors[target]).sum(-1, keepdim=True)
        logits = self.temperature(torch.cat([positive, h @ vectors[local[negatives]].T], dim=1))
        hit = torch.cat([torch.zeros(len(h), 1, dtype=torch.bool), negatives[None, :] == targets[valid][:, None]], 1)
        logits = logits.masked_fill(hit, float("-inf"))  # a negative that is the target is no negative
        loss = nn.functional.cross_entropy(logits, torch.zeros(len(h), dtype=torch.long))
        return len(h), loss + self.params.balance * balance

    @torch.no_grad()
    def all_items(self) -> tuple[torch.Tensor, torch.Tensor]:
        chunks = [self.items(torch.arange(s, min(s + 8192, self.n_items)))[:2] for s in range(0, self.n_items, 8192)]
        return torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])

    def scorer(self, part: str) -> Callable[[np.ndarray], torch.Tensor]:
        vectors, _ = self.all_items()
        scale = self.temperature.scale.detach()

        @torch.no_grad()
        def score(users: np.ndarray) -> torch.Tensor:
            windows = torch.from_numpy(self._batch(np.asarray(users), part, 0))
            state = self.encode(windows, vectors)[:, -1]
            state = torch.where((windows >= 0).any(1, keepdim=True), state, 0.0)  # no history: all items tie
            return state @ vectors.T * scale
        return score

    def gate_weights(self) -> dict[str, dict[str, float]]:
        """Mean gate weight per modality over all, warm and cold items: what the run's metrics report."""
        _, weights = self.all_items()
        cold = torch.from_numpy(np.asarray(self.split.cold_items, dtype=bool))
        out = {}
        for group, rows in (("all", slice(None)), ("warm", ~cold), ("cold", cold)):
            chosen = weights[rows]
            if len(chosen):
                out[group] = {m: round(float(w), 4) for m, w in zip(self.modalities, chosen.mean(0))}
        return out
