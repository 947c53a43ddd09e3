"""Turns labelled examples into model inputs: hashed features, counters and text features.

The :class:`Featurizer` owns the per-user and per-item state the models read: id maps,
time-decayed popularity and CTR counters, the catalog's side information, item text
embeddings and user interest vectors. Features of a row are computed from the state
*before* that row is learned, so progressive validation never sees its own label.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec import _native
from rtrec.config import Config
from rtrec.features import Hasher
from rtrec.text import centre

# Dense columns, in order: counters, one target encoding per configured cross, and the
# text similarity last (0 when text is off or unknown).
BASE_DENSE = (
    "item_pop",
    "item_ctr",
    "user_pop",
    "user_ctr",
    "item_ctr_all",
    "user_ctr_all",
    "user_ctr_recent",
    "wide_logit",
)
WIDE = BASE_DENSE.index("wide_logit")
TEXT_NBR = -2
TEXT_SIM = -1
USER_CTR_ALL = BASE_DENSE.index("user_ctr_all")
# Text neighbours per item for the neighbour CTR; the exact search is skipped above this
# many items with text.
TEXT_NEIGHBOURS = 20
MAX_NEIGHBOUR_ITEMS = 50_000


def dense_names(cfg: Config) -> tuple[str, ...]:
    crosses = tuple(f"{a}_x_{b}_ctr" for a, b in cfg.features.crosses)
    return (*BASE_DENSE, *crosses, "text_nbr_ctr", "text_sim")


BUILTIN_NAMESPACES = ("user", "item", "category", "tags", "hour", "weekday")
_PRIOR = 2.0  # pseudo-count behind the smoothed CTRs


class IdMap:
    """String ids to dense indices, in order of first sight."""

    def __init__(self, ids: list[str] | None = None) -> None:
        self.ids: list[str] = list(ids or [])
        self.index: dict[str, int] = {k: i for i, k in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, key: str) -> int | None:
        return self.index.get(key)

    def add_all(self, keys: list[str]) -> np.ndarray:
        index = self.index
        out = np.empty(len(keys), dtype=np.int64)
        for i, k in enumerate(keys):
            j = index.get(k)
            if j is None:
                j = len(self.ids)
                index[k] = j
                self.ids.append(k)
            out[i] = j
        return out

    def add_column(self, col: pa.Array) -> np.ndarray:
        """:meth:`add_all` for an Arrow string column: Python touches each distinct id once."""
        uniq = pc.unique(col)
        codes = self.add_all(uniq.to_pylist())
        return codes[pc.index_in(col, value_set=uniq).to_numpy(zero_copy_only=False)]


def _grow(a: np.ndarray, n: int) -> np.ndarray:
    if len(a) >= n:
        return a
    new = np.zeros((max(n, 2 * len(a), 64), *a.shape[1:]), dtype=a.dtype)
    new[: len(a)] = a
    return new


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _earlier_in_group(idx: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row: how many earlier rows share its index, and how many of those were positive."""
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    y = labels[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(idx)]))
    pos_cum = np.cumsum(y) - y
    cnt = np.arange(len(idx)) - group_start
    pos = pos_cum - pos_cum[group_start]
    out_cnt, out_pos = np.empty(len(idx)), np.empty(len(idx))
    out_cnt[order], out_pos[order] = cnt, pos
    return out_cnt, out_pos


@dataclass
class Counters:
    """Time-decayed counts and positives per index, plus raw event counts."""

    half_life_s: float
    cnt: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pos: np.ndarray = field(default_factory=lambda: np.zeros(0))
    last: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    npos: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def ensure(self, size: int) -> None:
        self.cnt, self.pos, self.last = _grow(self.cnt, size), _grow(self.pos, size), _grow(self.last, size)
        self.n, self.npos = _grow(self.n, size), _grow(self.npos, size)

    def read(
        self, idx: np.ndarray, ts: np.ndarray, prior: float, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decayed count, smoothed decayed CTR and smoothed all-time CTR of ``idx`` as of ``ts``.

        With ``labels`` (rows in stream order), each row also sees the rows before it in the
        same batch: what sequential learning would have seen, without a Python loop.
        """
        decay = np.exp2(-np.maximum(ts - self.last[idx], 0.0) / self.half_life_s)
        cnt, pos = self.cnt[idx] * decay, self.pos[idx] * decay
        n, npos = self.n[idx].astype(np.float64), self.npos[idx]
        if labels is not None and len(idx) > 1:
            earlier_cnt, earlier_pos = _earlier_in_group(idx, labels)
            cnt, pos = cnt + earlier_cnt, pos + earlier_pos
            n, npos = n + earlier_cnt, npos + earlier_pos
        return cnt, (pos + _PRIOR * prior) / (cnt + _PRIOR), (npos + _PRIOR * prior) / (n + _PRIOR)

    def positives(self, idx: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Decayed positive count of ``idx`` as of ``ts`` (the popularity score)."""
        return self.pos[idx] * np.exp2(-np.maximum(ts - self.last[idx], 0.0) / self.half_life_s)

    def update(self, idx: np.ndarray, ts: np.ndarray, labels: np.ndarray) -> None:
        if len(idx) == 0:
            return
        now = float(ts.max())
        touched, inverse = np.unique(idx, return_inverse=True)
        decay = np.exp2(-np.maximum(now - self.last[touched], 0.0) / self.half_life_s)
        w = np.exp2(-(now - ts) / self.half_life_s)
        k = len(touched)
        # Sums per touched index in one pass each (np.add.at is several times slower).
        self.cnt[touched] = self.cnt[touched] * decay + np.bincount(inverse, w, k)
        self.pos[touched] = self.pos[touched] * decay + np.bincount(inverse, w * labels, k)
        self.last[touched] = now
        self.n[touched] += np.bincount(inverse, minlength=k)
        self.npos[touched] += np.bincount(inverse, labels, k)


class CrossEncoder:
    """All-time smoothed CTR of each value of a cross (e.g. user x genre): a target encoding.

    Counts live in a hashed table of ``2**bits`` buckets. Within a batch each row sees the
    rows before it, as sequential learning would.
    """

    def __init__(self, a: str, b: str, bits: int, seed: int) -> None:
        self.name = (a, b)
        self.hasher = Hasher([a, b], bits=bits, seed=seed, crosses=[(a, b)], emit=[])
        self.n = np.zeros(1 << bits, dtype=np.float32)
        self.npos = np.zeros(1 << bits, dtype=np.float32)

    def encode(
        self, cols: dict[str, Any], prior: float, labels: np.ndarray | None
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        h = self.hasher.hash({k: cols[k] for k in self.name})
        rows = len(h.offsets) - 1
        row_of = np.repeat(np.arange(rows), np.diff(h.offsets))
        bucket = h.indices.astype(np.int64)
        if len(bucket) > 1:
            # A row counts once per bucket (a repeated tag, or two values hashing alike):
            # otherwise its second pair would see the first pair's label, i.e. its own.
            _, first = np.unique(row_of * len(self.n) + bucket, return_index=True)
            keep = np.sort(first)
            bucket, row_of = bucket[keep], row_of[keep]
        n = self.n[bucket].astype(np.float64)
        pos = self.npos[bucket].astype(np.float64)
        if labels is not None and len(bucket) > 1:
            earlier_n, earlier_pos = _earlier_in_group(bucket, labels[row_of])
            n, pos = n + earlier_n, pos + earlier_pos
        ctr = (pos + _PRIOR * prior) / (n + _PRIOR)
        sums = np.bincount(row_of, weights=ctr, minlength=rows)
        counts = np.bincount(row_of, minlength=rows)
        out = np.where(counts > 0, sums / np.maximum(counts, 1), prior)
        return _logit(out), (bucket, row_of)

    def update(self, pairs: tuple[np.ndarray, np.ndarray], labels: np.ndarray) -> None:
        bucket, row_of = pairs
        np.add.at(self.n, bucket, 1.0)
        np.add.at(self.npos, bucket, labels[row_of])


@dataclass
class Batch:
    """Model-ready rows: CSR hashed features, dense features and bookkeeping."""

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
    collision_rate: float | None = None
    cross_pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> Batch:
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        counts = ends - starts
        gather = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        return Batch(
            indices=self.indices[gather],
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            dense=self.dense[rows],
            item_idx=self.item_idx[rows],
            user_idx=self.user_idx[rows],
            labels=self.labels[rows],
            weights=self.weights[rows],
            ts=self.ts[rows],
            item_n=self.item_n[rows],
            user_n=self.user_n[rows],
            seq=self.seq[rows],
        )


def epoch_seconds(ts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A timestamp column as float epoch seconds (naive timestamps are UTC)."""
    unit = ts.type.unit
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
    return pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64) / scale


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
        # A per-example logistic regression on the hashed features: its logit before each row
        # is learned is a feature, so per-event adaptation reaches the mini-batch model at once.
        self.wide = _native.OnlineLinear(min(cfg.features.bits, 30), cfg.learner.wide_lr)
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
        self.user_items: dict[int, set[int]] = {}
        self.collision_rate: float | None = None
        self._context_ns = [ns for ns in cfg.features.namespaces if ns not in BUILTIN_NAMESPACES]
        self.dense_names = dense_names(cfg)
        self._item_arr: pa.Array = pa.array([], pa.string())
        self.crosses = [
            CrossEncoder(a, b, min(cfg.features.bits, 20), cfg.features.seed) for a, b in cfg.features.crosses
        ]

    # -- catalog and text -------------------------------------------------------------
    def _ensure_items(self, n: int) -> None:
        self.item_counts.ensure(n)
        if len(self.category) < n:
            extra = n - len(self.category)
            self.category.extend([None] * extra)
            self.tags.extend([None] * extra)
            self._catalog_dirty = True
        if self.text_dim:
            self.item_text = _grow(self.item_text, n)
            self.has_text = _grow(self.has_text, n)
            self.nbr_idx = _grow(self.nbr_idx, n)
            self.nbr_sim = _grow(self.nbr_sim, n)

    def _ensure_users(self, n: int) -> None:
        self.user_counts.ensure(n)
        self.user_recent.ensure(n)
        if self.text_dim:
            self.user_vec = _grow(self.user_vec, n)

    def set_catalog(self, items: pa.Table) -> None:
        """Take category and tags of every catalog item (new items get an index)."""
        ids = [str(x) for x in items.column("item_id").to_pylist()]
        idx = self.items.add_all(ids)
        self._ensure_items(len(self.items))
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

    def centred_text(self, idx: np.ndarray) -> np.ndarray:
        """Item embeddings centred on the catalog's mean embedding (:func:`rtrec.text.centre`).

        Items without text stay zero. The centred matrix is built once per change of the
        embeddings, not per call: scoring a whole catalog only gathers rows.
        """
        if self._centred is None:
            self._centred = np.zeros_like(self.item_text)
            rows = np.flatnonzero(self.has_text[: len(self.items)])
            if len(rows):
                vectors = self.item_text[rows]
                self._centred[rows] = centre(vectors, vectors.mean(axis=0))
        elif len(self._centred) < len(self.item_text):
            self._centred = _grow(self._centred, len(self.item_text))  # rows added since have no text
        return self._centred[idx]

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
        return _logit((pos + _PRIOR * self.prior) / (n + _PRIOR))

    def _catalog_arrays(self) -> tuple[pa.Array, pa.Array]:
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
            cols[ns] = _context_column(context, ns, len(item_idx))
        return cols

    def _dense(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        ts: np.ndarray,
        labels: np.ndarray | None = None,
        cols: dict[str, Any] | None = None,
        pairs: list[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> np.ndarray:
        dense = np.zeros((len(item_idx), len(self.dense_names)), dtype=np.float32)
        if cols is not None:
            for j, enc in enumerate(self.crosses):
                dense[:, len(BASE_DENSE) + j], p = enc.encode(cols, self.prior, labels)
                if pairs is not None:
                    pairs.append(p)
        icnt, ictr, ictr_all = self.item_counts.read(item_idx, ts, self.prior, labels)
        ucnt, uctr, uctr_all = self.user_counts.read(user_idx, ts, self.prior, labels)
        # CTRs enter in logit space, where a weight of 1 reproduces them.
        dense[:, 0] = np.log1p(icnt)
        dense[:, 1] = _logit(ictr)
        dense[:, 2] = np.log1p(ucnt)
        dense[:, 3] = _logit(uctr)
        dense[:, 4] = _logit(ictr_all)
        dense[:, 5] = _logit(uctr_all)
        dense[:, 6] = _logit(self.user_recent.read(user_idx, ts, self.prior, labels)[1])
        if self.text_dim:
            dense[:, TEXT_NBR] = self._neighbour_ctr(item_idx)
            # Cosine between the centred item and the user's interest vector.
            user = self.user_vec[user_idx]
            norm = np.maximum(np.linalg.norm(user, axis=1), 1e-6)
            dense[:, TEXT_SIM] = np.einsum("ij,ij->i", self.centred_text(item_idx), user) / norm
        return dense

    def transform(self, ex: pa.Table, *, stats: bool = False) -> Batch:
        """Features of labelled examples (columns of the event log plus label and weight)."""
        user_col = pc.cast(ex.column("user_id"), pa.string()).combine_chunks()
        item_col = pc.cast(ex.column("item_id"), pa.string()).combine_chunks()
        user_idx = self.users.add_column(user_col)
        item_idx = self.items.add_column(item_col)
        self._ensure_users(len(self.users))
        self._ensure_items(len(self.items))
        ts = epoch_seconds(ex.column("ts"))
        ctx = ex.column("context") if "context" in ex.column_names else None
        cols = self._columns(user_col, item_col, item_idx, ts, ctx)
        hashed = self.hasher.hash(cols, stats=stats)
        if stats:
            self.collision_rate = hashed.collision_rate
        labels = ex.column("label").to_numpy().astype(np.float32)
        weights = ex.column("weight").to_numpy().astype(np.float32)
        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        dense = self._dense(user_idx, item_idx, ts, labels, cols, pairs)
        dense[:, WIDE] = self.wide.predict_learn(hashed.indices, hashed.offsets, labels, weights)
        return Batch(
            cross_pairs=pairs,
            indices=hashed.indices,
            offsets=hashed.offsets,
            dense=dense,
            item_idx=item_idx,
            user_idx=user_idx,
            labels=labels,
            weights=weights,
            ts=ts,
            item_n=self.item_counts.n[item_idx].copy(),
            user_n=self.user_counts.n[user_idx].copy(),
            seq=ex.column("seq").to_numpy().astype(np.int64)
            if "seq" in ex.column_names
            else np.zeros(len(ts), np.int64),
            collision_rate=hashed.collision_rate,
        )

    def candidates(self, user_id: str, item_idx: np.ndarray, ts: float, context: dict[str, Any] | None = None) -> Batch:
        """Rows pairing one user with many items, for ranking. Unknown users get no index state."""
        n = len(item_idx)
        u = self.users.get(user_id)
        user_idx = np.full(n, u if u is not None else -1, dtype=np.int64)
        ts_arr = np.full(n, ts, dtype=np.float64)
        if len(self._item_arr) != len(self.items):
            self._item_arr = pa.array(self.items.ids, pa.string())
        item_col = self._item_arr.take(pa.array(item_idx))
        user_col = pa.repeat(pa.scalar(user_id, pa.string()), n)
        ctx = pa.array([json.dumps(context)] * n) if context else None
        cols = self._columns(user_col, item_col, item_idx, ts_arr, ctx)
        hashed = self.hasher.hash(cols)
        safe_u = np.where(user_idx >= 0, user_idx, 0)
        if u is None:
            self._ensure_users(1)
        dense = self._dense(safe_u, item_idx, ts_arr, None, cols)
        dense[:, WIDE] = self.wide.predict(hashed.indices, hashed.offsets)
        if u is None:
            dense[:, 2] = 0.0
            dense[:, 3] = dense[:, 5] = dense[:, 6] = _logit(np.array(self.prior))
            dense[:, TEXT_SIM] = 0.0
        return Batch(
            indices=hashed.indices,
            offsets=hashed.offsets,
            dense=dense,
            item_idx=item_idx,
            user_idx=safe_u,
            labels=np.zeros(n, np.float32),
            weights=np.ones(n, np.float32),
            ts=ts_arr,
            item_n=self.item_counts.n[item_idx].copy(),
            user_n=np.full(n, self.user_counts.n[u] if u is not None else 0),
            seq=np.zeros(n, np.int64),
        )

    # -- state update after learning -------------------------------------------------------
    def update(self, b: Batch, event_types: list[str] | None = None) -> None:
        self.item_counts.update(b.item_idx, b.ts, b.labels)
        self.user_counts.update(b.user_idx, b.ts, b.labels)
        self.user_recent.update(b.user_idx, b.ts, b.labels)
        for enc, pairs in zip(self.crosses, b.cross_pairs, strict=False):
            enc.update(pairs, b.labels)
        n = float(len(b))
        if n:
            self._prior_n = min(self._prior_n + n, 10_000.0)
            self.prior += (float(b.labels.mean()) - self.prior) * n / self._prior_n
        for u, i in zip(b.user_idx.tolist(), b.item_idx.tolist(), strict=True):
            self.user_items.setdefault(u, set()).add(i)
        if self.text_dim and self.cfg.text.user_vector:
            self._update_user_vectors(b)

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
            "wide": self.wide.state(),
            "prior": (self.prior, self._prior_n),
            "category": self.category,
            "tags": self.tags,
            "text_dim": self.text_dim,
            "item_text": self.item_text,
            "has_text": self.has_text,
            "user_vec": self.user_vec,
            "user_items": {u: sorted(s) for u, s in self.user_items.items()},
            "crosses": [(enc.n, enc.npos) for enc in self.crosses],
        }

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.users, self.items = IdMap(s["users"]), IdMap(s["items"])
        self.item_counts, self.user_counts = Counters(**s["item_counts"]), Counters(**s["user_counts"])
        self.user_recent = Counters(**s["user_recent"])
        self.nbr_idx, self.nbr_sim = s["neighbours"]
        self.wide = _native.OnlineLinear.from_state(*s["wide"])
        self.prior, self._prior_n = s["prior"]
        self.category, self.tags = list(s["category"]), list(s["tags"])
        self.text_dim = s["text_dim"]
        self.item_text, self.has_text, self.user_vec = s["item_text"], s["has_text"], s["user_vec"]
        self._centred = None
        self.user_items = {int(u): set(v) for u, v in s["user_items"].items()}
        for enc, (n, npos) in zip(self.crosses, s["crosses"], strict=True):
            enc.n, enc.npos = n, npos
        self._catalog_dirty = True


def _context_column(context: Any, key: str, n: int) -> pa.Array:
    if context is None:
        return pa.nulls(n, pa.string())
    if isinstance(context, pa.ChunkedArray):
        context = context.combine_chunks()
    if context.null_count == len(context):
        return pa.nulls(n, pa.string())
    out: list[str | None] = []
    for raw in context.to_pylist():
        if not raw:
            out.append(None)
            continue
        try:
            value = json.loads(raw).get(key) if isinstance(raw, str) else raw.get(key)
        except (ValueError, AttributeError):
            value = None
        out.append(None if value is None else str(value))
    return pa.array(out, pa.string())
