"""The CTR model: hashed embeddings, a factorisation-machine term and a small MLP head.

``logit = bias + sum_i w_i + FM(v) + MLP([sum_i v_i, dense, proj(item_text)])`` where
``i`` runs over the hashed features of a row. Item text embeddings (from a language
model) enter through ``item_text``: a learned projection feeds them to the MLP. Rows of
variable length come in CSR form (``indices``, ``offsets``) as the native hasher emits
them, and the embedding tables produce sparse gradients (updated with Adagrad).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelInput:
    """One batch. ``offsets`` has ``rows + 1`` entries; ``item_text`` is ``(rows, text_dim)`` or None."""

    indices: torch.Tensor
    offsets: torch.Tensor
    dense: torch.Tensor
    item_text: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        return int(self.offsets.numel() - 1)

    def row_of_feature(self) -> torch.Tensor:
        counts = self.offsets[1:] - self.offsets[:-1]
        return torch.repeat_interleave(torch.arange(self.rows), counts)


class CTRModel(nn.Module):
    """Factorisation machine plus MLP over hashed features, dense features and item text."""

    def __init__(
        self,
        n_buckets: int,
        *,
        dim: int = 16,
        hidden: tuple[int, ...] = (32,),
        dense_dim: int = 0,
        text_dim: int = 0,
        text_proj: int = 0,
    ) -> None:
        super().__init__()
        self.n_buckets = n_buckets
        self.emb = nn.Embedding(n_buckets, dim, sparse=True)
        self.lin = nn.Embedding(n_buckets, 1, sparse=True)
        nn.init.normal_(self.emb.weight, std=0.01)
        nn.init.zeros_(self.lin.weight)
        self.bias = nn.Parameter(torch.zeros(1))
        # The language-model item features plug in here.
        self.text_proj = nn.Linear(text_dim, text_proj) if text_dim and text_proj else None
        width = dim + dense_dim + (text_proj if self.text_proj is not None else 0)
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        # Dense features (counters in logit space) also enter linearly.
        self.dense_lin = nn.Linear(dense_dim, 1, bias=False) if dense_dim else None

    def forward(self, x: ModelInput) -> torch.Tensor:
        rows = x.rows
        seg = x.row_of_feature()
        v = self.emb(x.indices)
        sum_v = torch.zeros(rows, v.shape[1]).index_add_(0, seg, v)
        sum_v2 = torch.zeros(rows, v.shape[1]).index_add_(0, seg, v * v)
        fm = 0.5 * (sum_v * sum_v - sum_v2).sum(dim=1)
        linear = torch.zeros(rows).index_add_(0, seg, self.lin(x.indices).squeeze(1))
        parts = [sum_v, x.dense]
        if self.text_proj is not None:
            text = x.item_text if x.item_text is not None else torch.zeros(rows, self.text_proj.in_features)
            parts.append(self.text_proj(text))
        deep = self.mlp(torch.cat(parts, dim=1)).squeeze(1)
        if self.dense_lin is not None:
            deep = deep + self.dense_lin(x.dense).squeeze(1)
        return self.bias + linear + fm + deep


class LogisticModel(nn.Module):
    """Online logistic regression on the same hashed features (a baseline)."""

    def __init__(self, n_buckets: int) -> None:
        super().__init__()
        self.lin = nn.Embedding(n_buckets, 1, sparse=True)
        nn.init.zeros_(self.lin.weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: ModelInput) -> torch.Tensor:
        seg = x.row_of_feature()
        return self.bias + torch.zeros(x.rows).index_add_(0, seg, self.lin(x.indices).squeeze(1))


class TextScorer(nn.Module):
    """p(y | item text, user interest): a head on ``[item_emb, user_vec, item_emb * user_vec]``."""

    def __init__(self, text_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * text_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, item: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([item, user, item * user], dim=1)).squeeze(1)
