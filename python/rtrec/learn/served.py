"""The features the ranker served, kept until the impression that shows them is logged.

When the daemon serves a slate, the features it scored for each item (and the model's
probability) are kept under ``(request id, item)``. When the client logs the impression
with that ``request_id``, the learner takes this snapshot instead of featurizing the
impression again, so the example learned for a clicked recommendation is exactly what the
ranker saw. Bounded: the oldest entries go first. Not checkpointed: after a restart an
impression of an earlier slate is featurized when it arrives. Rows are kept as plain tuples:
the garbage collector stops tracking a plain tuple of arrays and numbers, so a full cache adds
nothing to its full passes, which stop every thread of the daemon.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

__all__ = ["ServedCache", "ServedRow"]


class ServedRow(NamedTuple):
    indices: np.ndarray
    xindices: np.ndarray
    dense: np.ndarray
    prob: float
    item_n: float
    user_n: float


class ServedCache:
    """``(request id, item index) -> ServedRow``, at most ``capacity`` rows, thread-safe."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray, float, float, float]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self.used = 0  # impressions that took a served snapshot

    def __len__(self) -> int:
        return len(self._rows)

    def put(self, request_id: str, item_idx: list[int], rows: list[ServedRow]) -> None:
        # Keyed by the id itself: hashing one id through the native hasher cost ~130 us a request.
        with self._lock:
            for i, row in zip(item_idx, rows, strict=True):
                self._rows[(request_id, int(i))] = tuple(row)  # type: ignore[assignment]
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)

    def take(self, request_ids: list[str | None], item_idx: np.ndarray) -> list[ServedRow | None]:
        """Remove and return the snapshot of each (request, item), None where there is none."""
        if not self._rows:
            return [None] * len(request_ids)
        with self._lock:
            packed = [
                self._rows.pop((r, i), None) if r else None for r, i in zip(request_ids, item_idx.tolist(), strict=True)
            ]
        out = [None if p is None else ServedRow._make(p) for p in packed]
        self.used += sum(r is not None for r in out)
        return out
