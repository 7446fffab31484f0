"""``mmgnn``: LightGCN propagation of ID and modality embeddings (LLMRec) and an item-specific
feature-interaction graph per item (EmerG).

1. Propagation (LLMRec): every propagated field (ID, and each item feature set projected to ``dim``)
   has a layer-0 matrix over users and items; a user's modality fields start at zero and are filled
   by propagation, so a user's text field is the neighbourhood mean of the text of their items.
   All fields go through the normalised adjacency together, and a node's field is its layer-0
   vector plus the mean of its propagated layers. An item never seen in training has no edges and a
   zero ID embedding, so a cold item is its own features.
2. Item graph (EmerG): an item's fields (the propagated ones and its tags) are the nodes of a small
   graph. A hypernetwork reads the item's fields and writes that item's adjacency over them; a few
   residual GNN layers run over it, then optional multi-head self-attention across the fields. The
   mean generated edge weight is penalised (``graph_reg``), which keeps graphs sparse. Graphs are
   generated for the items of a batch only (training) or in chunks of ``item_batch`` (scoring), so
   memory grows with the batch, never with items x fields^2 x dim.
3. Users: their propagated fields, concatenated and projected. Logits are the dot product times a
   learned temperature; training is BPR computed from logits (logsigmoid of the difference).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from featctl.errors import TrainInputError
from featctl.models.lightgcn import _SymmetricMM, bpr_steps, normalized_adjacency
from featctl.models.modalities import ItemInputs, Projection, TagBag, Temperature

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MMGNNParams:
    """Defaults match LightGCN's (64-d, 2 layers, Adam 1e-3, 2048 triples) plus the item graph's own."""

    dim: int = 64
    layers: int = 2
    lr: float = 1e-3
    reg: float = 1e-4
    batch: int = 2048
    item_graph: bool = True
    attention: bool = True
    graph_layers: int = 2
    heads: int = 2
    graph_reg: float = 1e-3
    item_batch: int = 4096

    def __post_init__(self) -> None:
        for name in ("dim", "batch", "heads", "item_batch"):
            if getattr(self, name) < 1:
                raise TrainInputError(f"--{name.replace('_', '-')} must be 1 or more, not {getattr(self, name)}")
        if self.layers < 0 or self.graph_layers < 0:
            raise TrainInputError("--layers and --graph-layers must be 0 or more")
        if self.lr <= 0 or self.reg < 0 or self.graph_reg < 0:
            raise TrainInputError("--lr must be above 0, --reg and --graph-reg 0 or more")
        if self.attention and self.dim % self.heads:
            raise TrainInputError(f"--dim {self.dim} must be a multiple of --heads {self.heads}")


class ItemGraph(nn.Module):
    """EmerG's item-specific interaction graph over ``fields`` nodes of width ``dim``."""

    def __init__(self, fields: int, dim: int, layers: int) -> None:
        super().__init__()
        self.fields = fields
        self.hyper = nn.Sequential(nn.Linear(fields * dim, dim), nn.ReLU(), nn.Linear(dim, fields * fields))
        self.gnn = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-item node states after the GNN layers, and the generated adjacency (items, fields, fields)."""
        n, f, _ = nodes.shape
        adjacency = torch.sigmoid(self.hyper(nodes.reshape(n, -1)).view(n, f, f))
        normalised = adjacency / adjacency.sum(-1, keepdim=True).clamp_min(1e-6)
        h = nodes
        for layer in self.gnn:
            h = h + torch.relu(normalised @ layer(h))
        return self.norm(h), adjacency


class MMGNN(nn.Module):
    """Users and items over propagated ID/modality fields, items through their own generated graph."""

    def __init__(self, train: np.ndarray, n_users: int, n_items: int, params: MMGNNParams,
                 modalities: tuple[str, ...], inputs: ItemInputs) -> None:
        super().__init__()
        self.n_users, self.n_items, self.params = n_users, n_items, params
        self.train_pairs, self.modalities = train, modalities
        d = params.dim
        seen = np.bincount(train[:, 1], minlength=n_items) > 0
        self.register_buffer("seen", torch.from_numpy(seen.astype(np.float32))[:, None])
        self.user_ids = nn.Embedding(n_users, d) if "id" in modalities else None
        self.item_ids = nn.Embedding(n_items, d) if "id" in modalities else None
        for table in (self.user_ids, self.item_ids):
            if table is not None:
                nn.init.xavier_uniform_(table.weight)
        self.projections = nn.ModuleDict({m: Projection(inputs.features[m], d)
                                          for m in modalities if m != "id"})
        self.tags = TagBag(inputs.tags, d) if inputs.tags is not None else None
        self.propagated = len(modalities)
        fields = self.propagated + (self.tags is not None)
        self.graph = ItemGraph(fields, d, params.graph_layers) if params.item_graph else None
        self.attention = nn.MultiheadAttention(d, params.heads, batch_first=True) if params.attention else None
        self.attention_norm = nn.LayerNorm(d) if params.attention else None
        self.item_out = nn.Linear(fields * d, d)
        self.user_out = nn.Linear(self.propagated * d, d)
        self.temperature = Temperature()
        self.register_buffer("adjacency", normalized_adjacency(train, n_users, n_items), persistent=False)

    def layer0(self) -> torch.Tensor:
        """(users + items, fields x dim): IDs first, then one block per modality (zero for users)."""
        blocks = []
        if self.item_ids is not None:
            blocks.append(torch.cat([self.user_ids.weight, self.item_ids.weight * self.seen]))
        for projection in self.projections.values():
            items = projection()
            blocks.append(torch.cat([items.new_zeros(self.n_users, items.shape[1]), items]))
        return torch.cat(blocks, dim=1)

    def propagate(self, ego: torch.Tensor) -> torch.Tensor:
        if not self.params.layers:
            return ego
        total, layer = torch.zeros_like(ego), ego
        for _ in range(self.params.layers):
            layer = _SymmetricMM.apply(self.adjacency, layer)
            total = total + layer
        return ego + total / self.params.layers

    def users(self, nodes: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        return self.user_out(nodes[users])

    def fields(self, nodes: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(items, fields, dim): the items' propagated fields, then their tags."""
        fields = nodes[items + self.n_users].view(len(items), self.propagated, -1)
        if self.tags is not None:
            fields = torch.cat([fields, self.tags(items)[:, None]], dim=1)
        return fields

    def items(self, nodes: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Item vectors for ``items`` and their generated graphs (None without the item graph)."""
        fields, graphs = self.fields(nodes, items), None
        if self.graph is not None:
            fields, graphs = self.graph(fields)
        if self.attention is not None:
            attended, _ = self.attention(fields, fields, fields, need_weights=False)
            fields = self.attention_norm(fields + attended)
        return self.item_out(fields.flatten(1)), graphs

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """BPR from logits, L2 on the batch's layer-0 rows, and the item graphs' sparsity."""
        ego = self.layer0()
        nodes = self.propagate(ego)
        u = self.users(nodes, users)
        unique, inverse = torch.unique(torch.cat([pos, neg]), return_inverse=True)  # each item's graph once
        items, graphs = self.items(nodes, unique)
        p, n = items[inverse].view(2, len(users), -1)
        logits = self.temperature(torch.stack([(u * p).sum(1), (u * n).sum(1)]))
        bpr = -nn.functional.logsigmoid(logits[0] - logits[1]).mean()
        rows = torch.cat([users, pos + self.n_users, neg + self.n_users])
        loss = bpr + self.params.reg * ego[rows].square().sum() / (2 * len(users))
        if graphs is not None:
            loss = loss + self.params.graph_reg * graphs.mean()
        return loss

    def steps(self, rng: np.random.Generator) -> Iterator[tuple[int, torch.Tensor]]:
        yield from bpr_steps(self, self.train_pairs, self.n_items, self.params.batch, rng)

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items), items built ``item_batch`` at a time so memory stays bounded."""
        nodes = self.propagate(self.layer0())
        users = self.users(nodes, torch.arange(self.n_users))
        items = torch.cat([self.items(nodes, torch.arange(s, min(s + self.params.item_batch, self.n_items)))[0]
                           for s in range(0, self.n_items, self.params.item_batch)])
        return users, items

    def scorer(self, part: str) -> Callable[[np.ndarray], torch.Tensor]:
        users, items = self.embeddings()
        scale = self.temperature.scale.detach()
        return lambda batch: users[torch.from_numpy(np.asarray(batch))] @ items.T * scale

    @torch.no_grad()
    def graph_summary(self) -> dict[str, object] | None:
        """Mean generated adjacency over all items (row: from field, column: to field), for the run's metrics."""
        if self.graph is None:
            return None
        nodes = self.propagate(self.layer0())
        total = torch.zeros(self.graph.fields, self.graph.fields)
        for s in range(0, self.n_items, self.params.item_batch):
            items = torch.arange(s, min(s + self.params.item_batch, self.n_items))
            total += self.graph(self.fields(nodes, items))[1].sum(0)
        names = [*self.modalities, *(["tags"] if self.tags is not None else [])]
        mean = (total / self.n_items).tolist()
        return {"fields": names, "mean_adjacency": [[round(v, 4) for v in row] for row in mean]}
