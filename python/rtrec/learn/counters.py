"""The state features read: id maps, time-decayed counters, target encodings of crosses.

Within a chunk of the stream, :func:`resolved_before` gives each read the counts of exactly
the examples resolved before it in stream order, so features equal those of one-row-at-a-time
processing however the stream is chunked, and never depend on labels that resolve later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec.features import Hasher

PRIOR_COUNT = 2.0  # pseudo-count behind the smoothed CTRs


class IdMap:
    """String ids to dense indices, in order of first sight."""

    def __init__(self, ids: list[str] | None = None) -> None:
        self.ids: list[str] = list(ids or [])
        # An empty id is the tombstone of a forgotten one (ingest never accepts an empty id).
        self.index: dict[str, int] = {k: i for i, k in enumerate(self.ids) if k}

    def forget(self, key: str) -> int | None:
        """Drop ``key``; its index stays taken (by an empty tombstone) so no other index moves."""
        i = self.index.pop(key, None)
        if i is not None:
            self.ids[i] = ""
        return i

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, key: str) -> int | None:
        return self.index.get(key)

    def add_all(self, keys: list[str], reserve: Callable[[int], None] | None = None) -> np.ndarray:
        """Indices of ``keys``, new ones appended. ``reserve(n)`` is called with the count the
        new ones bring before any of them can be found: readers that look ids up without the
        learner's lock (recommend) then find rows for every id they see."""
        index = self.index
        new = [k for k in dict.fromkeys(keys) if k not in index]
        if new and reserve is not None:
            reserve(len(self.ids) + len(new))
        for k in new:
            self.ids.append(k)
            index[k] = len(self.ids) - 1
        return np.fromiter((index[k] for k in keys), np.int64, len(keys))

    def add_column(self, col: pa.Array, reserve: Callable[[int], None] | None = None) -> np.ndarray:
        """:meth:`add_all` for an Arrow string column: Python touches each distinct id once."""
        uniq = pc.unique(col)
        codes = self.add_all(uniq.to_pylist(), reserve)
        return codes[pc.index_in(col, value_set=uniq).to_numpy(zero_copy_only=False)]


def grow(a: np.ndarray, n: int) -> np.ndarray:
    if len(a) >= n:
        return a
    new = np.zeros((max(n, 2 * len(a), 64), *a.shape[1:]), dtype=a.dtype)
    new[: len(a)] = a
    return new


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def resolved_before(
    read_idx: np.ndarray, read_key: np.ndarray, res_idx: np.ndarray, res_key: np.ndarray, res_label: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each read: how many resolved examples share its index with a smaller order key, and their label sum.

    Order keys place reads and resolutions on one stream line (see :mod:`rtrec.labels`);
    a read and a resolution never share a key.

    >>> cnt, pos = resolved_before(np.array([7, 7]), np.array([1, 5]), np.array([7, 7]), np.array([2, 6]),
    ...                            np.array([1.0, 0.0]))
    >>> cnt.tolist(), pos.tolist()
    ([0.0, 1.0], [0.0, 1.0])
    """
    n_read = len(read_idx)
    if n_read == 0 or len(res_idx) == 0:
        return np.zeros(n_read), np.zeros(n_read)
    idx = np.concatenate([res_idx, read_idx])
    key = np.concatenate([res_key, read_key])
    c = np.concatenate([np.ones(len(res_idx)), np.zeros(n_read)])
    y = np.concatenate([np.asarray(res_label, np.float64), np.zeros(n_read)])
    order = np.lexsort((key, idx))
    sidx = idx[order]
    cs_c, cs_y = np.cumsum(c[order]), np.cumsum(y[order])
    starts = np.flatnonzero(np.r_[True, sidx[1:] != sidx[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(idx)]))
    base_c = cs_c[group_start] - c[order][group_start]
    base_y = cs_y[group_start] - y[order][group_start]
    cnt_sorted, pos_sorted = cs_c - base_c, cs_y - base_y
    out_cnt, out_pos = np.empty(len(idx)), np.empty(len(idx))
    out_cnt[order], out_pos[order] = cnt_sorted, pos_sorted
    return out_cnt[len(res_idx) :], out_pos[len(res_idx) :]


def earlier_in_group(idx: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`resolved_before` where row ``j`` is read and then resolved, in order (ratings): for
    each row, how many earlier rows share its index, and their label sum. One sort instead of two.

    >>> cnt, pos = earlier_in_group(np.array([3, 3, 5, 3]), np.array([1.0, 0.0, 1.0, 1.0]))
    >>> cnt.tolist(), pos.tolist()
    ([0.0, 1.0, 0.0, 2.0], [0.0, 1.0, 0.0, 1.0])
    """
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    y = np.asarray(labels, np.float64)[order]
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(idx)]))
    pos_cum = np.cumsum(y) - y
    out_cnt, out_pos = np.empty(len(idx)), np.empty(len(idx))
    out_cnt[order] = np.arange(len(idx)) - group_start
    out_pos[order] = pos_cum - pos_cum[group_start]
    return out_cnt, out_pos


def in_stream_order(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Order keys of ``n`` rows each read and then resolved at once, in order (ratings)."""
    r = np.arange(n, dtype=np.int64)
    return 2 * r + 1, 2 * r + 2


@dataclass
class Resolved:
    """Examples that resolve within the chunk being read, for :func:`resolved_before`."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    labels: np.ndarray
    keys: np.ndarray
    xindices: np.ndarray  # cross-encoder buckets (tagged), CSR
    xoffsets: np.ndarray
    # Example j is read j, resolved right after its read (a chunk of ratings): the counts
    # reduce to "earlier rows of the chunk", computed with one sort (earlier_in_group).
    aligned: bool = False

    def before(
        self, read_idx: np.ndarray, read_keys: np.ndarray, res_idx: np.ndarray, res_rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`resolved_before` for reads at ``read_idx`` against resolutions at ``res_idx``."""
        labels = self.labels if res_rows is None else self.labels[res_rows]
        if self.aligned:
            return earlier_in_group(read_idx, labels)
        keys = self.keys if res_rows is None else self.keys[res_rows]
        return resolved_before(read_idx, read_keys, res_idx, keys, labels)


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
        self.cnt, self.pos, self.last = grow(self.cnt, size), grow(self.pos, size), grow(self.last, size)
        self.n, self.npos = grow(self.n, size), grow(self.npos, size)

    def read(
        self, idx: np.ndarray, ts: np.ndarray, prior: float, earlier: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decayed count, smoothed decayed CTR and smoothed all-time CTR of ``idx`` as of ``ts``.

        ``earlier`` (counts and positives per row, from :func:`resolved_before`) adds the
        examples of the same chunk that resolved before each row: what sequential learning
        would have seen, without a Python loop.
        """
        decay = np.exp2(-np.maximum(ts - self.last[idx], 0.0) / self.half_life_s)
        cnt, pos = self.cnt[idx] * decay, self.pos[idx] * decay
        n, npos = self.n[idx].astype(np.float64), self.npos[idx]
        if earlier is not None:
            earlier_cnt, earlier_pos = earlier
            cnt, pos = cnt + earlier_cnt, pos + earlier_pos
            n, npos = n + earlier_cnt, npos + earlier_pos
        return cnt, (pos + PRIOR_COUNT * prior) / (cnt + PRIOR_COUNT), (npos + PRIOR_COUNT * prior) / (n + PRIOR_COUNT)

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

    def retract(self, idx: np.ndarray, ts: np.ndarray, labels: np.ndarray) -> None:
        """Take back examples :meth:`update` folded in (at ``ts``, epoch seconds), as they weigh now."""
        if len(idx) == 0:
            return
        w = np.exp2(-np.maximum(self.last[idx] - ts, 0.0) / self.half_life_s)
        np.subtract.at(self.cnt, idx, w)
        np.subtract.at(self.pos, idx, w * labels)
        np.subtract.at(self.n, idx, 1)
        np.subtract.at(self.npos, idx, labels)
        for a in (self.cnt, self.pos, self.n, self.npos):
            np.maximum(a, 0, out=a)


class CrossEncoder:
    """All-time smoothed CTR of each value of a cross (e.g. user x genre): a target encoding.

    Counts live in a hashed table of ``2**bits`` buckets (``bits`` at most 24). A row's
    buckets are tagged with the encoder's number in the top byte, so that one CSR holds the
    buckets of every encoder; a row counts once per bucket (a repeated tag, or two values
    hashing alike), otherwise its second pair would see the first pair's label, i.e. its own.
    """

    def __init__(self, a: str, b: str, bits: int, seed: int, tag: int) -> None:
        self.name = (a, b)
        self.hasher = Hasher([a, b], bits=bits, seed=seed, crosses=[(a, b)], emit=[])
        self.n = np.zeros(1 << bits, dtype=np.float32)
        self.npos = np.zeros(1 << bits, dtype=np.float32)
        self.tag = tag

    def buckets(self, cols: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Distinct tagged buckets of each row: (buckets, row of each bucket)."""
        h = self.hasher.hash({k: cols[k] for k in self.name})
        rows = len(h.offsets) - 1
        row_of = np.repeat(np.arange(rows), np.diff(h.offsets))
        bucket = h.indices.astype(np.int64)
        if len(bucket) > 1:
            _, first = np.unique(row_of * len(self.n) + bucket, return_index=True)
            keep = np.sort(first)
            bucket, row_of = bucket[keep], row_of[keep]
        return bucket | (self.tag << 24), row_of

    def encode(
        self, xindices: np.ndarray, xoffsets: np.ndarray, prior: float, earlier: Resolved | None, read_keys: Any
    ) -> np.ndarray:
        """Logit of the smoothed CTR, averaged over each row's buckets of this encoder."""
        rows = len(xoffsets) - 1
        bucket, row_of = _own(xindices, xoffsets, self.tag)
        n = self.n[bucket].astype(np.float64)
        pos = self.npos[bucket].astype(np.float64)
        if earlier is not None and len(bucket):
            if earlier.aligned:
                e_n, e_pos = earlier_in_group(bucket, earlier.labels[row_of])
            else:
                res_bucket, res_row = _own(earlier.xindices, earlier.xoffsets, self.tag)
                e_n, e_pos = earlier.before(bucket, read_keys[row_of], res_bucket, res_row)
            n, pos = n + e_n, pos + e_pos
        ctr = (pos + PRIOR_COUNT * prior) / (n + PRIOR_COUNT)
        sums = np.bincount(row_of, weights=ctr, minlength=rows)
        counts = np.bincount(row_of, minlength=rows)
        return logit(np.where(counts > 0, sums / np.maximum(counts, 1), prior))

    def update(self, xindices: np.ndarray, xoffsets: np.ndarray, labels: np.ndarray) -> None:
        bucket, row_of = _own(xindices, xoffsets, self.tag)
        np.add.at(self.n, bucket, 1.0)
        np.add.at(self.npos, bucket, labels[row_of])


def _own(xindices: np.ndarray, xoffsets: np.ndarray, tag: int) -> tuple[np.ndarray, np.ndarray]:
    """The untagged buckets of encoder ``tag`` in a tagged CSR, with the row of each."""
    row_of = np.repeat(np.arange(len(xoffsets) - 1), np.diff(xoffsets))
    mine = (xindices >> 24) == tag
    return xindices[mine] & ((1 << 24) - 1), row_of[mine]
