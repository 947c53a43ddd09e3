"""The features the ranker served, kept until the impression that shows them is logged.

When the daemon serves a slate, the features it scored for each item (and the model's
probability) are kept under ``(request id, item)``. When the client logs the impression
with that ``request_id``, the learner takes this snapshot instead of featurizing the
impression again, so the example learned for a clicked recommendation is exactly what the
ranker saw. Bounded: the oldest requests go first. Not checkpointed: after a restart an
impression of an earlier slate is featurized when it arrives.

One entry per request, its rows in one block of arrays (the hashed and cross features in CSR
form, the dense features as a matrix), kept as a plain tuple: a handful of arrays per list
instead of three per item, and nothing the garbage collector tracks after its first pass (a
full collection stops every thread of the daemon).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np

__all__ = ["ServedBlock", "ServedCache", "ServedRow"]


class ServedRow(NamedTuple):
    """One served item's features, as the ranker scored them."""

    indices: np.ndarray
    xindices: np.ndarray
    dense: np.ndarray
    prob: float
    item_n: float
    user_n: float


class ServedBlock(NamedTuple):
    """The rows one request served: row ``j`` is item ``item_idx[j]``."""

    item_idx: np.ndarray
    indices: np.ndarray
    offsets: np.ndarray
    xindices: np.ndarray
    xoffsets: np.ndarray
    dense: np.ndarray  # (rows, dense features)
    prob: np.ndarray
    item_n: np.ndarray
    user_n: np.ndarray

    def row(self, j: int) -> ServedRow:
        return ServedRow(
            self.indices[self.offsets[j] : self.offsets[j + 1]],
            self.xindices[self.xoffsets[j] : self.xoffsets[j + 1]],
            self.dense[j],
            float(self.prob[j]),
            float(self.item_n[j]),
            float(self.user_n[j]),
        )


class ServedCache:
    """``(request id, item index) -> ServedRow``, at most ``capacity`` rows not taken yet, thread-safe."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        # request id -> (tuple(ServedBlock), rows not taken yet as a bool mask)
        self._blocks: OrderedDict[str, tuple[tuple[Any, ...], np.ndarray]] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()
        self.used = 0  # impressions that took a served snapshot

    def __len__(self) -> int:
        return self._rows

    def put(self, request_id: str, block: ServedBlock) -> None:
        # Keyed by the id itself: hashing one id through the native hasher cost ~130 us a request.
        left = np.ones(len(block.item_idx), bool)
        with self._lock:
            old = self._blocks.pop(request_id, None)
            if old is not None:
                self._rows -= int(old[1].sum())
            self._blocks[request_id] = (tuple(block), left)
            self._rows += len(left)
            while self._rows > self.capacity:
                _, (_, gone) = self._blocks.popitem(last=False)
                self._rows -= int(gone.sum())

    def take(self, request_ids: list[str | None], item_idx: np.ndarray) -> list[ServedRow | None]:
        """Remove and return the snapshot of each (request, item), None where there is none."""
        out: list[ServedRow | None] = [None] * len(request_ids)
        if not self._blocks:
            return out
        with self._lock:
            for k, (r, i) in enumerate(zip(request_ids, item_idx.tolist(), strict=True)):
                entry = self._blocks.get(r) if r else None
                if entry is None:
                    continue
                block, left = ServedBlock._make(entry[0]), entry[1]
                hits = np.flatnonzero((block.item_idx == i) & left)
                if not len(hits):
                    continue
                j = int(hits[0])
                left[j] = False
                self._rows -= 1
                if not left.any():
                    del self._blocks[r]  # type: ignore[arg-type]
                out[k] = block.row(j)
        self.used += sum(r is not None for r in out)
        return out
