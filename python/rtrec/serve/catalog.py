"""The catalog as the recommend path sees it: one immutable snapshot, swapped whole when items change.

Readers take the current snapshot once per request and use only it, so a request never
sees half an update: ids, their positions and the freshness bonus always belong together.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["Catalog", "CatalogView"]

CatalogView = tuple[np.ndarray, dict[str, int], np.ndarray]


class Catalog:
    """Items, their ids and positions, and a freshness bonus for cold-start lists (newest items 1)."""

    def __init__(self, items: pa.Table, version: int) -> None:
        self.items = items
        self.version = version
        self.ids: list[str] = [str(x) for x in items.column("item_id").to_pylist()] if items.num_rows else []
        self.index: dict[str, int] = {item: i for i, item in enumerate(self.ids)}
        self.fresh = _fresh_bonus(items, len(self.ids))
        self._views: dict[int, CatalogView] = {}
        self._lock = threading.Lock()

    def bonus(self, item: str) -> float:
        j = self.index.get(item)
        return float(self.fresh[j]) if j is not None else 0.0

    def view(self, model_ids: list[str]) -> CatalogView:
        """For the model's item list: which are in the catalog, an id -> position map, the bonus.

        The model only ever appends items, so a view is built once per length of its list.
        """
        key = len(model_ids)
        with self._lock:
            got = self._views.get(key)
        if got is not None:
            return got
        if self.index:
            in_catalog = np.fromiter((i in self.index for i in model_ids), dtype=bool, count=key)
        else:  # no catalog posted: recommend whatever the events named
            in_catalog = np.ones(key, dtype=bool)
        fresh = np.array([self.bonus(i) for i in model_ids])
        out = (in_catalog, {item: j for j, item in enumerate(model_ids)}, fresh)
        with self._lock:
            self._views = {key: out}  # only the newest length is asked for again
        return out


def _fresh_bonus(items: pa.Table, n: int) -> np.ndarray:
    """Newer items get a bonus for cold-start lists: by update time when the catalog has one,
    otherwise by position (the log appends new items at the end)."""
    if not n:
        return np.zeros(0)
    order = np.arange(n, dtype=np.float64)
    for col in ("updated_at", "created_at", "ts"):
        if col in items.column_names:
            vals = items.column(col).to_pylist()
            if all(v is not None for v in vals):
                order = np.argsort(np.argsort(np.array([_epoch(v) for v in vals]))).astype(np.float64)
            break
    newest = max(1, min(100, n // 10))
    return np.clip((order - (n - 1 - newest)) / newest, 0.0, 1.0)


def _epoch(v: Any) -> float:
    if hasattr(v, "timestamp"):
        return float(v.timestamp())
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0
