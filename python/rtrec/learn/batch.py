"""Model-ready rows: the batch every model reads and learns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Batch:
    """Model-ready rows: CSR hashed features, dense features and bookkeeping.

    ``xindices``/``xoffsets`` hold each row's cross-encoder buckets (tagged, see
    :class:`CrossEncoder`); ``request`` the 64-bit hash of the row's request id (0: none);
    ``preds`` the progressive prediction each model made when the row was read (one column
    per model, NaN where the model predicts when it learns the row).
    """

    indices: np.ndarray
    offsets: np.ndarray
    dense: np.ndarray
    item_idx: np.ndarray
    user_idx: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    ts: np.ndarray
    item_n: np.ndarray
    user_n: np.ndarray
    seq: np.ndarray
    xindices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    xoffsets: np.ndarray | None = None
    request: np.ndarray | None = None
    preds: np.ndarray | None = None
    origin: np.ndarray | None = None
    collision_rate: float | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __post_init__(self) -> None:
        if self.xoffsets is None:
            self.xoffsets = np.zeros(len(self.labels) + 1, np.int64)

    def take(self, rows: np.ndarray) -> Batch:
        from rtrec.labels import csr_gather

        assert self.xoffsets is not None
        indices, offsets = csr_gather(self.indices, self.offsets[rows], np.diff(self.offsets)[rows])
        xind, xoff = csr_gather(self.xindices, self.xoffsets[rows], np.diff(self.xoffsets)[rows])
        return Batch(
            indices=indices,
            offsets=offsets,
            dense=self.dense[rows],
            item_idx=self.item_idx[rows],
            user_idx=self.user_idx[rows],
            labels=self.labels[rows],
            weights=self.weights[rows],
            ts=self.ts[rows],
            item_n=self.item_n[rows],
            user_n=self.user_n[rows],
            seq=self.seq[rows],
            xindices=xind,
            xoffsets=xoff,
            request=None if self.request is None else self.request[rows],
            preds=None if self.preds is None else self.preds[rows],
            origin=None if self.origin is None else self.origin[rows],
        )
