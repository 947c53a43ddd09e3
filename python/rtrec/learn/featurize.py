"""Turns rows into model inputs: hashed features, counters and text features.

The :class:`Featurizer` owns the per-user and per-item state the models read (id maps, decayed
counters, target encodings, catalog side information, text embeddings, user interest vectors).
Reading never changes it; :meth:`Featurizer.update` folds learned examples into it.

A row is read at one point of the stream (an impression when it is shown, a rating when it
arrives) and its label resolves later. Within a chunk, :func:`resolved_before` gives each
read the counts of exactly the examples that resolved before it in stream order, so that
the features equal those of one-row-at-a-time processing however the stream is chunked,
and never depend on labels that resolve after the read.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec import _native
from rtrec.config import Config
from rtrec.features import Hasher
from rtrec.learn.batch import Batch
from rtrec.learn.columns import (
    BASE_DENSE,
    BUILTIN_NAMESPACES,
    MAX_NEIGHBOUR_ITEMS,
    TEXT_NBR,
    TEXT_NEIGHBOURS,
    TEXT_SIM,
    context_column,
    dense_names,
    epoch_seconds,
)
from rtrec.learn.counters import (
    PRIOR_COUNT,
    Counters,
    CrossEncoder,
    IdMap,
    Resolved,
    earlier_in_group,
    grow,
    in_stream_order,
    logit,
    resolved_before,
)
from rtrec.learn.request import RequestHasher
from rtrec.sets import add_pairs, load_item_sets
from rtrec.text import centre

__all__ = ["Batch", "Featurizer", "Resolved", "earlier_in_group", "resolved_before"]


class Featurizer:
    """Per-user and per-item state, and the transformation of examples into :class:`Batch`."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.hasher = Hasher.from_config(cfg.features)
        self.users = IdMap()
        self.items = IdMap()
        half = cfg.learner.counter_half_life_s
        self.item_counts = Counters(half)
        self.user_counts = Counters(half)
        self.user_recent = Counters(cfg.learner.recent_half_life_s)
        self.prior = 0.5
        self._prior_n = 0.0
        self.category: list[str | None] = []
        self.tags: list[list[str] | None] = []
        self._cat_arr: pa.Array = pa.array([], pa.string())
        self._tags_arr: pa.Array = pa.array([], pa.list_(pa.string()))
        self.text_dim = 0
        self.item_text = np.zeros((0, 0), dtype=np.float32)
        self.has_text = np.zeros(0, dtype=bool)
        self.user_vec = np.zeros((0, 0), dtype=np.float32)
        self._centred: np.ndarray | None = None  # centred_text of every row, built on first use
        self.nbr_idx = np.zeros((0, TEXT_NEIGHBOURS), dtype=np.int64)
        self.nbr_sim = np.zeros((0, TEXT_NEIGHBOURS), dtype=np.float32)
        self.user_items = _native.ItemSets(cfg.learner.items_per_user)  # items with an example, per user
        self.collision_rate: float | None = None
        self._context_ns = [ns for ns in cfg.features.namespaces if ns not in BUILTIN_NAMESPACES]
        self.dense_names = dense_names(cfg)
        self._item_arr: pa.Array = pa.array([], pa.string())
        self.crosses = [
            CrossEncoder(a, b, min(cfg.features.bits, 20), cfg.features.seed, tag)
            for tag, (a, b) in enumerate(cfg.features.crosses)
        ]
        self.request = RequestHasher(self.hasher, self.crosses, self._context_ns)

    # -- catalog and text -------------------------------------------------------------
    def _ensure_items(self, n: int) -> None:
        self.item_counts.ensure(n)
        if len(self.category) < n:
            extra = n - len(self.category)
            self.category.extend([None] * extra)
            self.tags.extend([None] * extra)
            self._catalog_dirty = True
        if self.text_dim:
            self.item_text = grow(self.item_text, n)
            self.has_text = grow(self.has_text, n)
            self.nbr_idx = grow(self.nbr_idx, n)
            self.nbr_sim = grow(self.nbr_sim, n)

    def _ensure_users(self, n: int) -> None:
        self.user_counts.ensure(n)
        self.user_recent.ensure(n)
        if self.text_dim:
            self.user_vec = grow(self.user_vec, n)

    def set_catalog(self, items: pa.Table) -> None:
        """Take category and tags of every catalog item (new items get an index)."""
        ids = [str(x) for x in items.column("item_id").to_pylist()]
        idx = self.items.add_all(ids, self._ensure_items)  # rows before ids, as in ids()
        cats = items.column("category").to_pylist() if "category" in items.column_names else [None] * len(ids)
        tags = items.column("tags").to_pylist() if "tags" in items.column_names else [None] * len(ids)
        for i, c, t in zip(idx.tolist(), cats, tags, strict=True):
            self.category[i] = c
            self.tags[i] = list(t) if t is not None else None
        self._catalog_dirty = True

    def set_item_embeddings(self, ids: list[str], matrix: np.ndarray) -> None:
        """Item text embeddings (rows L2-normalised); new items get an index."""
        if len(ids) == 0:
            return
        matrix = np.asarray(matrix, dtype=np.float32)
        if self.text_dim == 0:
            self.text_dim = matrix.shape[1]
            self.item_text = np.zeros((len(self.items), self.text_dim), dtype=np.float32)
            self.has_text = np.zeros(len(self.items), dtype=bool)
            self.user_vec = np.zeros((len(self.users), self.text_dim), dtype=np.float32)
        idx = self.items.add_all([str(i) for i in ids])
        self._ensure_items(len(self.items))
        self.item_text[idx] = matrix
        self.has_text[idx] = True
        self._centred = None
        self._find_neighbours(idx)

    def unit_text(self) -> np.ndarray:
        """The whole centred matrix, capacity rows included; replaced (never changed) when it changes."""
        self.centred_text(np.zeros(0, np.int64))  # builds or grows it
        return self._centred  # type: ignore[return-value]

    def centred_text(self, idx: np.ndarray) -> np.ndarray:
        """Item embeddings centred on the catalog's mean embedding (:func:`rtrec.text.centre`).

        Items without text stay zero. The centred matrix is built once per change of the
        embeddings, not per call: scoring a whole catalog only gathers rows. Safe to call
        while the embeddings change in another thread (it works on one matrix throughout).
        """
        centred = self._centred
        if centred is None:
            centred = np.zeros_like(self.item_text)
            rows = np.flatnonzero(self.has_text[: len(self.items)])
            if len(rows):
                vectors = self.item_text[rows]
                centred[rows] = centre(vectors, vectors.mean(axis=0))
            self._centred = centred
        elif len(centred) < len(self.item_text):
            centred = self._centred = grow(centred, len(self.item_text))  # rows added since have no text
        return centred[idx]

    def _find_neighbours(self, idx: np.ndarray) -> None:
        """Exact top-k text neighbours of ``idx`` among all items with text (cosine)."""
        pool = np.flatnonzero(self.has_text[: len(self.items)])
        if len(pool) < 2 or len(pool) > MAX_NEIGHBOUR_ITEMS:
            return
        k = min(TEXT_NEIGHBOURS, len(pool) - 1)
        base = self.centred_text(pool)
        for start in range(0, len(idx), 1024):
            rows = idx[start : start + 1024]
            sims = self.centred_text(rows) @ base.T
            sims[pool[None, :] == rows[:, None]] = -np.inf
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            self.nbr_idx[rows, :k] = pool[top]
            self.nbr_sim[rows, :k] = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0)

    def _neighbour_ctr(self, item_idx: np.ndarray) -> np.ndarray:
        """Pooled CTR of an item's text neighbours, weighted by similarity and shrunk to the prior."""
        nbr, w = self.nbr_idx[item_idx], self.nbr_sim[item_idx]
        n = (self.item_counts.n[nbr] * w).sum(axis=1)
        pos = (self.item_counts.npos[nbr] * w).sum(axis=1)
        return logit((pos + PRIOR_COUNT * self.prior) / (n + PRIOR_COUNT))

    def _catalog_arrays(self) -> tuple[pa.Array, pa.Array]:
        """(categories, tags) by item index, as Arrow arrays replaced when they change."""
        if getattr(self, "_catalog_dirty", True) or len(self._cat_arr) < len(self.items):
            self._cat_arr = pa.array(self.category, pa.string())
            self._tags_arr = pa.array(self.tags, pa.list_(pa.string()))
            self._catalog_dirty = False
        return self._cat_arr, self._tags_arr

    # -- transformation -----------------------------------------------------------------
    def _columns(
        self, user_ids: pa.Array, item_ids: pa.Array, item_idx: np.ndarray, ts: np.ndarray, context: Any
    ) -> dict[str, Any]:
        cat, tags = self._catalog_arrays()
        take = pa.array(item_idx)
        secs = ts.astype(np.int64)
        cols: dict[str, Any] = {
            "user": user_ids,
            "item": item_ids,
            "category": cat.take(take),
            "tags": tags.take(take),
            "hour": pa.array((secs // 3600) % 24),
            "weekday": pa.array((secs // 86400 + 3) % 7),
        }
        for ns in self._context_ns:
            cols[ns] = context_column(context, ns, len(item_idx))
        return cols

    def ids(self, user_col: pa.Array, item_col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the users and items of a chunk of events; new ones are registered once their
        counters have rows (recommend reads without the learner's lock: a user it finds known
        must have them)."""
        user_idx = self.users.add_column(user_col, self._ensure_users)
        item_idx = self.items.add_column(item_col, self._ensure_items)
        return user_idx, item_idx

    def hash(
        self,
        user_col: pa.Array,
        item_col: pa.Array,
        item_idx: np.ndarray,
        ts: np.ndarray,
        context: Any = None,
        *,
        stats: bool = False,
    ) -> tuple[Any, np.ndarray, np.ndarray]:
        """Hashed features and tagged cross-encoder buckets of rows (pure: reads only the catalog)."""
        cols = self._columns(user_col, item_col, item_idx, ts, context)
        hashed = self.hasher.hash(cols, stats=stats)
        if stats:
            self.collision_rate = hashed.collision_rate
        parts = [enc.buckets(cols) for enc in self.crosses]
        if parts:
            bucket = np.concatenate([p[0] for p in parts])
            row_of = np.concatenate([p[1] for p in parts])
            order = np.argsort(row_of, kind="stable")
            xindices = bucket[order]
            xoffsets = np.zeros(len(item_idx) + 1, np.int64)
            np.cumsum(np.bincount(row_of, minlength=len(item_idx)), out=xoffsets[1:])
        else:
            xindices, xoffsets = np.zeros(0, np.int64), np.zeros(len(item_idx) + 1, np.int64)
        return hashed, xindices, xoffsets

    def dense(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        ts: np.ndarray,
        xindices: np.ndarray,
        xoffsets: np.ndarray,
        *,
        read_keys: np.ndarray | None = None,
        earlier: Resolved | None = None,
    ) -> np.ndarray:
        """Dense features of rows as of ``ts``; the ``linear_logit`` column is left 0 for the caller.

        With ``earlier`` and ``read_keys`` each row also counts the chunk's examples that
        resolved before it (:func:`resolved_before`).
        """
        dense = np.zeros((len(item_idx), len(self.dense_names)), dtype=np.float32)
        e_item = e_user = None
        if earlier is not None and read_keys is not None:
            e_item = earlier.before(item_idx, read_keys, earlier.item_idx)
            e_user = earlier.before(user_idx, read_keys, earlier.user_idx)
        for j, enc in enumerate(self.crosses):
            dense[:, len(BASE_DENSE) + j] = enc.encode(xindices, xoffsets, self.prior, earlier, read_keys)
        icnt, ictr, ictr_all = self.item_counts.read(item_idx, ts, self.prior, e_item)
        ucnt, uctr, uctr_all = self.user_counts.read(user_idx, ts, self.prior, e_user)
        # CTRs enter in logit space, where a weight of 1 reproduces them.
        dense[:, 0] = np.log1p(icnt)
        dense[:, 1] = logit(ictr)
        dense[:, 2] = np.log1p(ucnt)
        dense[:, 3] = logit(uctr)
        dense[:, 4] = logit(ictr_all)
        dense[:, 5] = logit(uctr_all)
        dense[:, 6] = logit(self.user_recent.read(user_idx, ts, self.prior, e_user)[1])
        if self.text_dim:
            dense[:, TEXT_NBR] = self._neighbour_ctr(item_idx)
            # Cosine between the centred item and the user's interest vector.
            user = self.user_vec[user_idx]
            norm = np.maximum(np.linalg.norm(user, axis=1), 1e-6)
            dense[:, TEXT_SIM] = np.einsum("ij,ij->i", self.centred_text(item_idx), user) / norm
        return dense

    def transform(self, ex: pa.Table, *, stats: bool = False) -> Batch:
        """Features of labelled rows that are each read, then resolved, in order (as ratings are).

        Registers new users and items but learns nothing: ``linear_logit`` stays 0.
        """
        user_col = pc.cast(ex.column("user_id"), pa.string()).combine_chunks()
        item_col = pc.cast(ex.column("item_id"), pa.string()).combine_chunks()
        user_idx, item_idx = self.ids(user_col, item_col)
        ts = epoch_seconds(ex.column("ts"))
        ctx = ex.column("context") if "context" in ex.column_names else None
        hashed, xind, xoff = self.hash(user_col, item_col, item_idx, ts, ctx, stats=stats)
        labels = ex.column("label").to_numpy().astype(np.float32)
        weights = ex.column("weight").to_numpy().astype(np.float32)
        read_keys, res_keys = in_stream_order(len(labels))
        earlier = Resolved(user_idx, item_idx, labels, res_keys, xind, xoff, aligned=True)
        dense = self.dense(user_idx, item_idx, ts, xind, xoff, read_keys=read_keys, earlier=earlier)
        return Batch(
            indices=hashed.indices,
            offsets=hashed.offsets,
            dense=dense,
            item_idx=item_idx,
            user_idx=user_idx,
            labels=labels,
            weights=weights,
            ts=ts,
            item_n=self.item_counts.n[item_idx].astype(np.float32),
            user_n=self.user_counts.n[user_idx].astype(np.float32),
            seq=ex.column("seq").to_numpy().astype(np.int64)
            if "seq" in ex.column_names
            else np.zeros(len(ts), np.int64),
            xindices=xind,
            xoffsets=xoff,
            collision_rate=hashed.collision_rate,
        )

    def scratch_item(self) -> int:
        """An index past every known item whose state is all empty: where an unknown item is read.

        Nothing is registered; the arrays only hold one more (zero) row.
        """
        n = len(self.items)
        self._ensure_items(n + 1)
        return n

    def candidates(
        self,
        user_id: str,
        item_idx: np.ndarray,
        ts: float,
        context: dict[str, Any] | None = None,
        *,
        item_ids: list[str] | None = None,
    ) -> Batch:
        """Rows pairing one user with many items, for ranking; ``linear_logit`` is left 0 for the caller.

        Reads only: an unknown user gets no index and no state (its rows read user row 0,
        and the user features are overwritten with the prior). With ``item_ids`` (one per row)
        an item may be unknown: its row points at :meth:`scratch_item` and is read as a new
        item with no catalog entry.
        """
        n = len(item_idx)
        u = self.users.get(user_id)
        if u is None and len(self.users) == 0:
            self._ensure_users(1)  # row 0 exists to be read (and overwritten below)
        user_idx, tss = np.full(n, u if u is not None else 0, np.int64), np.full(n, ts, np.float64)
        if item_ids is None:  # known items: hashed from their kept raw hashes, without Arrow
            b = self._rows(user_idx, item_idx, tss, *self.hash_request(user_id, item_idx, ts, context))
        else:
            ctx = pa.array([json.dumps(context)] * n) if context else None
            user_col = pa.repeat(pa.scalar(user_id, pa.string()), n)
            b = self.pairs(user_idx, item_idx, tss, ctx, pa.array(item_ids, pa.string()), user_col=user_col)
        if u is None:
            b.dense[:, 2] = 0.0
            b.dense[:, 3] = b.dense[:, 5] = b.dense[:, 6] = logit(np.array(self.prior))
            b.dense[:, TEXT_SIM] = 0.0
            b.user_n[:] = 0
        return b

    def pairs(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        ts: np.ndarray,
        ctx: pa.Array | None = None,
        item_col: pa.Array | None = None,
        *,
        user_col: pa.Array | None = None,
    ) -> Batch:
        """Rows of known users and items at times ``ts`` (any mix, reads only; ``linear_logit`` left 0)."""
        if item_col is None:
            if len(self._item_arr) != len(self.items):
                self._item_arr = pa.array(self.items.ids, pa.string())
            item_col = self._item_arr.take(pa.array(item_idx))
        if user_col is None:
            user_col = pa.array(self.users.ids, pa.string()).take(pa.array(user_idx))
        return self._rows(user_idx, item_idx, ts, *self.hash(user_col, item_col, item_idx, ts, ctx))

    def hash_request(
        self, user_id: str, item_idx: np.ndarray, ts: float, context: dict[str, Any] | None = None
    ) -> tuple[Any, np.ndarray, np.ndarray]:
        """:meth:`hash` of one user's rows with known items at ``ts``, from raw hashes kept per item."""
        return self.request.hash(user_id, item_idx, ts, context, (self.items.ids, *self._catalog_arrays()))

    def _rows(self, user_idx: Any, item_idx: Any, ts: Any, hashed: Any, xind: Any, xoff: Any) -> Batch:
        n = len(item_idx)
        dense = self.dense(user_idx, item_idx, ts, xind, xoff)
        return Batch(
            indices=hashed.indices,
            offsets=hashed.offsets,
            dense=dense,
            item_idx=item_idx,
            user_idx=user_idx,
            labels=np.zeros(n, np.float32),
            weights=np.ones(n, np.float32),
            ts=ts,
            item_n=self.item_counts.n[item_idx].astype(np.float32),
            user_n=self.user_counts.n[user_idx].astype(np.float32),
            seq=np.zeros(n, np.int64),
            xindices=xind,
            xoffsets=xoff,
        )

    # -- state update after learning -------------------------------------------------------
    def update(self, b: Batch) -> None:
        """Fold learned examples into the counters, target encodings and user state."""
        self.item_counts.update(b.item_idx, b.ts, b.labels)
        self.user_counts.update(b.user_idx, b.ts, b.labels)
        self.user_recent.update(b.user_idx, b.ts, b.labels)
        assert b.xoffsets is not None
        for enc in self.crosses:
            enc.update(b.xindices, b.xoffsets, b.labels)
        n = float(len(b))
        if n:
            self._prior_n = min(self._prior_n + n, 10_000.0)
            self.prior += (float(b.labels.mean()) - self.prior) * n / self._prior_n
        add_pairs(self.user_items, b.user_idx, b.item_idx)
        if self.text_dim and self.cfg.text.user_vector:
            self._update_user_vectors(b)

    def forget_user(self, user_id: str) -> int | None:
        """Erase the id, counts, interest vector and item set of one user; return the index it had."""
        u = self.users.forget(user_id)
        if u is None:
            return None
        for c in (self.user_counts, self.user_recent):
            if u < len(c.cnt):
                c.cnt[u] = c.pos[u] = c.last[u] = c.npos[u] = 0.0
                c.n[u] = 0
        if u < len(self.user_vec):
            self.user_vec[u] = 0.0
        self.user_items.remove(u)
        return u

    def user_features(self, user_id: str) -> list[int]:
        """The hashed indices of the user's id alone (the ``user`` namespace; none without it)."""
        if "user" not in self.hasher.namespaces:
            return []
        cols = {ns: pa.array([user_id if ns == "user" else None], pa.string()) for ns in self.hasher.namespaces}
        return sorted(set(self.hasher.hash(cols).indices.tolist()))

    def _update_user_vectors(self, b: Batch) -> None:
        alpha = 1.0 - math.exp2(-1.0 / max(self.cfg.text.user_half_life_events, 1e-9))
        has = self.has_text[b.item_idx]
        vec = self.user_vec
        items = self.centred_text(b.item_idx)
        for k, (u, y, ok) in enumerate(zip(b.user_idx.tolist(), b.labels.tolist(), has.tolist(), strict=True)):
            if not ok:
                continue
            if y >= 0.5:
                vec[u] += alpha * (items[k] - vec[u])
            else:
                # A negative pushes the interest vector away from the item, a little.
                vec[u] -= 0.5 * alpha * items[k]

    # -- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "users": self.users.ids,
            "items": self.items.ids,
            "item_counts": vars(self.item_counts).copy(),
            "user_counts": vars(self.user_counts).copy(),
            "user_recent": vars(self.user_recent).copy(),
            "neighbours": (self.nbr_idx, self.nbr_sim),
            "prior": (self.prior, self._prior_n),
            "category": self.category,
            "tags": self.tags,
            "text_dim": self.text_dim,
            "item_text": self.item_text,
            "has_text": self.has_text,
            "user_vec": self.user_vec,
            "user_items": self.user_items.to_flat(),
            "crosses": [(enc.n, enc.npos) for enc in self.crosses],
        }

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.users, self.items = IdMap(s["users"]), IdMap(s["items"])
        self.item_counts, self.user_counts = Counters(**s["item_counts"]), Counters(**s["user_counts"])
        self.user_recent = Counters(**s["user_recent"])
        self.nbr_idx, self.nbr_sim = s["neighbours"]
        self.prior, self._prior_n = s["prior"]
        self.category, self.tags = list(s["category"]), list(s["tags"])
        self.text_dim = s["text_dim"]
        self.item_text, self.has_text, self.user_vec = s["item_text"], s["has_text"], s["user_vec"]
        self._centred = None
        self.user_items = load_item_sets(s["user_items"], self.user_items.max_per_user)
        for enc, (n, npos) in zip(self.crosses, s["crosses"], strict=True):
            enc.n, enc.npos = n, npos
        self._catalog_dirty = True
