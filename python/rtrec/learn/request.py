"""A request's rows hashed from per-item raw hashes: serving's path, without Arrow.

A recommend request pairs one user, at one moment, in one context, with a few hundred known
items. Everything but the item is the same in every row, and what belongs to the item (its
id, category and tags) changes only with the catalog. So the raw hashes of each item's own
values are kept by item index, hashed again only when items are added or the catalog changes, and a
request's rows are hashed in one native call per hasher that keeps the interpreter: no Arrow
array is built and no pyarrow kernel hands the interpreter to another thread mid-request.
The features equal those of :meth:`rtrec.learn.featurize.Featurizer.hash` for the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from rtrec import _native
from rtrec.features import Hashed, Hasher
from rtrec.learn.counters import CrossEncoder

__all__ = ["ITEM_NAMESPACES", "RequestHasher"]

ITEM_NAMESPACES = ("item", "category", "tags")  # the namespaces whose values come with the item

Tables = dict[str, tuple[np.ndarray, np.ndarray]]


class RequestHasher:
    """Hashes one user's rows with many known items, from raw hashes kept per item."""

    def __init__(self, hasher: Hasher, crosses: Sequence[CrossEncoder], context_ns: Sequence[str]) -> None:
        self.hasher = hasher
        self.crosses = list(crosses)
        self.context_ns = list(context_ns)
        self._key: tuple[int, pa.Array | None, pa.Array | None] = (-1, None, None)
        self._tables: list[Tables] = []  # per hasher (the model's, then each cross encoder's)

    def _refresh(self, ids: Sequence[str], category: pa.Array, tags: pa.Array) -> list[Tables]:
        """The raw hashes of every item's own values, per hasher; rebuilt when ids are added (they
        only grow) or the catalog's arrays are replaced."""
        n, cat, tg = self._key
        if n == len(ids) and cat is category and tg is tags:
            return self._tables
        key = (len(ids), category, tags)
        columns = {"item": ids, "category": category, "tags": tags}
        tables = [
            {ns: h.raw_hashes(ns, columns[ns]) for ns in h.namespaces if ns in columns}
            for h in (self.hasher, *(enc.hasher for enc in self.crosses))
        ]
        self._tables, self._key = tables, key  # one assignment each: a reader sees old or new
        return tables

    def same_in_every_row(self, user_id: str, ts: float, context: dict[str, Any] | None) -> dict[str, str | None]:
        """The request's values of every namespace that is not the item's, as the featurizer's
        columns give them (hour and weekday of ``ts``; a context key's value as text)."""
        secs = int(ts)
        out: dict[str, str | None] = {
            "user": user_id,
            "hour": str((secs // 3600) % 24),
            "weekday": str((secs // 86400 + 3) % 7),
        }
        ctx = json.loads(json.dumps(context)) if context else None  # as the log would store it
        for ns in self.context_ns:
            value = ctx.get(ns) if isinstance(ctx, dict) else None
            out[ns] = None if value is None else str(value)
        return out

    def hash(
        self,
        user_id: str,
        item_idx: np.ndarray,
        ts: float,
        context: dict[str, Any] | None,
        catalog: tuple[Sequence[str], pa.Array, pa.Array],
    ) -> tuple[Hashed, np.ndarray, np.ndarray]:
        """Hashed features and tagged cross-encoder buckets of ``user_id`` with each item of
        ``item_idx`` at ``ts``; ``catalog`` is (item ids, categories, tags) by item index."""
        tables = self._refresh(*catalog)
        same = self.same_in_every_row(user_id, ts, context)
        idx = np.ascontiguousarray(item_idx, np.int64)
        hashed = self.hasher.hash_raw({**same, **tables[0]}, idx)
        blocks = [
            enc.hasher.hash_raw({**same, **t}, idx, distinct=True, tag=enc.tag)
            for enc, t in zip(self.crosses, tables[1:], strict=True)
        ]
        if not blocks:
            return hashed, np.zeros(0, np.int64), np.zeros(len(idx) + 1, np.int64)
        xindices, xoffsets = _native.merge_rows([(b.indices, b.offsets) for b in blocks])
        return hashed, xindices, xoffsets
