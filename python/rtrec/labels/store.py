"""Columnar storage for the feature snapshots of pending impressions.

Each impression keeps, in one slot, what the ranker could see when it was shown: its hashed
feature indices (CSR, in a shared arena), its dense features, the predictions each model
made then, and the cold-start counts used for evaluation. Slots are reused after release;
the arena is compacted when it is full, and grown by half when that frees less than a third
of it. Everything is numpy:
about 190 bytes per held impression at the overload mix's 13 hashed indices and 12 dense
features, plus the arrays' spare capacity (``bench/steady.py`` prints the figure).

A checkpoint copies only what learning changes in place (each slot's state and key chain)
and shares the rest: while the copy lives, no slot it holds is handed out again and the
arena is never written below its end, so what it shares stays as it was.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

__all__ = ["Snapshot", "SnapshotStore", "StoreHold"]

_FREE, _PENDING, _EXPIRED, _ANSWERED, _RELEASING = 0, 1, 2, 3, 4
_MIN_CAPACITY = 1024
# Arrays grow by a quarter: at the held-impression cap doubling left up to half of every
# column allocated and never used (3.8 M slots for 2 M held, 220 MB).
_GROWTH = 1.25
# Indices gathered per pass: bounds the int64 temporaries of a large gather (a compaction of
# 2 M held impressions gathers 34 M indices; in one pass that took 800 MB of temporaries).
_GATHER_PASS = 1 << 20


def _grow(a: np.ndarray, n: int, fill: Any = 0) -> np.ndarray:
    if len(a) >= n:
        return a
    new = np.full((max(n, int(_GROWTH * len(a)), _MIN_CAPACITY), *a.shape[1:]), fill, dtype=a.dtype)
    new[: len(a)] = a
    return new


class StoreHold:
    """Part of a checkpoint copy (:meth:`SnapshotStore.raw`): while it lives, no slot the copy
    holds is handed out again. Dropping the copy drops it."""

    __slots__ = ("__weakref__",)


class Snapshot:
    """Features of some slots, gathered: CSR hashed ``indices``/``offsets``, CSR cross-encoder
    buckets ``xindices``/``xoffsets`` and per-row arrays."""

    __slots__ = ("dense", "indices", "item_n", "offsets", "preds", "user_n", "xindices", "xoffsets")

    def __init__(
        self,
        indices: np.ndarray,
        offsets: np.ndarray,
        xindices: np.ndarray,
        xoffsets: np.ndarray,
        dense: np.ndarray,
        preds: np.ndarray,
        item_n: np.ndarray,
        user_n: np.ndarray,
    ) -> None:
        self.indices, self.offsets, self.xindices, self.xoffsets = indices, offsets, xindices, xoffsets
        self.dense, self.preds, self.item_n, self.user_n = dense, preds, item_n, user_n


def csr_join(a: np.ndarray, a_off: np.ndarray, b: np.ndarray, b_off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row ``r`` of the result is row ``r`` of ``a`` followed by row ``r`` of ``b`` (CSR)."""
    la, lb = np.diff(a_off), np.diff(b_off)
    offsets = np.zeros(len(la) + 1, dtype=np.int64)
    np.cumsum(la + lb, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.int64)
    pos_a = np.repeat(offsets[:-1] - a_off[:-1], la) + np.arange(int(a_off[-1] - a_off[0])) + a_off[0]
    pos_b = np.repeat(offsets[:-1] + la - b_off[:-1], lb) + np.arange(int(b_off[-1] - b_off[0])) + b_off[0]
    out[pos_a] = a[a_off[0] : a_off[-1]]
    out[pos_b] = b[b_off[0] : b_off[-1]]
    return out, offsets


def csr_gather(indices: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``indices[starts[j] : starts[j] + lengths[j]]`` for each ``j``; return (values, offsets)."""
    lengths = lengths.astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:
        return np.zeros(0, dtype=indices.dtype), offsets
    shift = starts.astype(np.int64) - offsets[:-1]
    if total <= _GATHER_PASS:
        return indices[np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)], offsets
    out = np.empty(total, dtype=indices.dtype)
    lo = 0
    while lo < len(lengths):  # rows in passes of about _GATHER_PASS indices
        hi = max(int(np.searchsorted(offsets, offsets[lo] + _GATHER_PASS, side="right")) - 1, lo + 1)
        a, b = int(offsets[lo]), int(offsets[hi])
        out[a:b] = indices[np.repeat(shift[lo:hi], lengths[lo:hi]) + np.arange(a, b, dtype=np.int64)]
        lo = hi
    return out, offsets


class SnapshotStore:
    """Slots of impression metadata and feature snapshots.

    Metadata per slot: ``key`` (user index << 32 | item index), ``rid`` (64-bit hash of the
    request id, 0 for none), ``ts`` and ``deadline`` (epoch microseconds), ``seq`` (the
    impression's sequence number) and ``state``. Features: see :class:`Snapshot`.
    """

    def __init__(self, dense_dim: int, n_preds: int) -> None:
        self.dense_dim = dense_dim
        self.n_preds = n_preds
        self.key = np.zeros(0, np.int64)
        self.rid = np.zeros(0, np.int64)
        self.ts = np.zeros(0, np.int64)
        self.deadline = np.zeros(0, np.int64)
        self.seq = np.zeros(0, np.int64)
        self.next = np.zeros(0, np.int64)  # chain of slots that share a key (newest first)
        self.state = np.zeros(0, np.int8)
        self.start = np.zeros(0, np.int64)
        self.length = np.zeros(0, np.int32)  # hashed indices, then xlength cross buckets, in the arena
        self.xlength = np.zeros(0, np.int32)
        self.dense = np.zeros((0, dense_dim), np.float32)
        self.preds = np.zeros((0, n_preds), np.float32)
        self.item_n = np.zeros(0, np.float32)
        self.user_n = np.zeros(0, np.float32)
        self.arena = np.zeros(0, np.uint32)
        self.arena_used = 0
        self.arena_live = 0
        self.high = 0  # slots ever used: [0, high)
        self.free: list[int] = []
        self.live = 0
        # Checkpoint copies still alive, and the slots freed meanwhile (handed out once none is).
        self._holds: list[weakref.ref[StoreHold]] = []
        self._held_free: list[int] = []

    # -- slots ----------------------------------------------------------------------------------
    def _held(self) -> bool:
        """Whether a checkpoint copy is alive; once none is, the slots freed meanwhile are free."""
        if self._holds:
            self._holds = [h for h in self._holds if h() is not None]
        if not self._holds and self._held_free:
            self.free.extend(self._held_free)
            self._held_free = []
        return bool(self._holds)

    def alloc(self, n: int) -> np.ndarray:
        """``n`` free slots (reused ones first), marked pending and empty."""
        self._held()
        k = min(n, len(self.free))
        reused = [self.free.pop() for _ in range(k)]
        fresh = list(range(self.high, self.high + n - k))
        self.high += n - k
        self._ensure(self.high)
        slots = np.array(reused + fresh, dtype=np.int64)
        self.state[slots] = _PENDING
        self.length[slots] = 0
        self.xlength[slots] = 0
        self.live += n
        return slots

    def columns(self) -> tuple[np.ndarray, ...]:
        """The slot columns the native waiting-room indexes read and write:
        ``(key, rid, seq, deadline, state, next)``."""
        return self.key, self.rid, self.seq, self.deadline, self.state, self.next

    def release(self, slots: np.ndarray | list[int]) -> None:
        s = np.unique(np.asarray(slots, dtype=np.int64))
        s = s[self.state[s] != _FREE]
        if not len(s):
            return
        self.state[s] = _FREE
        # Lengths stay as they were (alloc clears them): a checkpoint copy may still read them.
        self.arena_live -= int(self.length[s].sum() + self.xlength[s].sum())
        (self._held_free if self._held() else self.free).extend(s.tolist())
        self.live -= len(s)

    def _ensure(self, n: int) -> None:
        for name in ("key", "rid", "ts", "deadline", "seq", "state", "start", "length", "xlength", "item_n", "user_n"):
            setattr(self, name, _grow(getattr(self, name), n))
        self.next = _grow(self.next, n, -1)
        self.dense = _grow(self.dense, n)
        self.preds = _grow(self.preds, n, np.nan)

    # -- features ----------------------------------------------------------------------------
    def put_indices(
        self, slots: np.ndarray, indices: np.ndarray, offsets: np.ndarray, xindices: np.ndarray, xoffsets: np.ndarray
    ) -> None:
        """Store hashed and cross-bucket CSR rows (one row per slot), replacing what the slots held."""
        values, joined = csr_join(indices, offsets, xindices, xoffsets)
        self.arena_live -= int(self.length[slots].sum() + self.xlength[slots].sum())
        total = len(values)
        if self.arena_used + total > len(self.arena):
            self._compact(total)
        base = self.arena_used
        self.arena[base : base + total] = values
        self.start[slots] = base + joined[:-1]
        self.length[slots] = np.diff(offsets)
        self.xlength[slots] = np.diff(xoffsets)
        self.arena_used += total
        self.arena_live += total

    def put(
        self,
        slots: np.ndarray,
        *,
        dense: np.ndarray | None = None,
        preds: np.ndarray | None = None,
        item_n: np.ndarray | None = None,
        user_n: np.ndarray | None = None,
    ) -> None:
        if dense is not None:
            self.dense[slots] = dense
        if preds is not None:
            self.preds[slots] = preds
        if item_n is not None:
            self.item_n[slots] = item_n
        if user_n is not None:
            self.user_n[slots] = user_n

    def gather(self, slots: np.ndarray) -> Snapshot:
        indices, offsets, xindices, xoffsets = self.indices(slots)
        return Snapshot(
            indices,
            offsets,
            xindices,
            xoffsets,
            self.dense[slots],
            self.preds[slots],
            self.item_n[slots],
            self.user_n[slots],
        )

    def indices(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Hashed indices and cross buckets of ``slots``, as two CSRs (int64)."""
        start, length = self.start[slots], self.length[slots]
        indices, offsets = csr_gather(self.arena, start, length)
        xindices, xoffsets = csr_gather(self.arena, start + length, self.xlength[slots])
        return indices.astype(np.int64), offsets, xindices.astype(np.int64), xoffsets

    def _compact(self, extra: int) -> None:
        """Make room for ``extra`` more indices: drop garbage, and grow when still short.

        The arena and the ``start`` column are replaced, never rewritten: a checkpoint copy may
        still share them."""
        live = np.flatnonzero(self.state[: self.high] != _FREE)
        values, offsets = csr_gather(self.arena, self.start[live], self.length[live] + self.xlength[live])
        need = len(values) + extra
        size = len(self.arena)
        if 3 * need > 2 * size:  # at least a third free after compacting, else grow by half
            size = max(3 * need // 2, 1 << 16)
        arena = np.zeros(size, dtype=np.uint32)
        arena[: len(values)] = values
        self.arena = arena
        start = self.start.copy()
        start[live] = offsets[:-1]
        self.start = start
        self.arena_used = self.arena_live = len(values)

    # -- accounting and persistence ------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes held by the store's arrays (the key index and deadline queue live in the labeller)."""
        arrays: list[np.ndarray] = [
            self.key,
            self.rid,
            self.ts,
            self.deadline,
            self.seq,
            self.next,
            self.state,
            self.start,
        ]
        arrays += [self.length, self.xlength]
        arrays += [self.dense, self.preds, self.item_n, self.user_n, self.arena]
        return sum(a.nbytes for a in arrays) + 8 * len(self.free)

    _ARRAYS: tuple[str, ...] = ("key", "rid", "ts", "deadline", "seq", "next", "state", "start", "length")
    _ARRAYS += ("xlength", "dense", "preds", "item_n", "user_n")

    # What learning writes in place in a slot that stays live: its state and its key chain.
    _CHANGING: tuple[str, ...] = ("state", "next")

    def raw(self, *, copy: bool) -> dict[str, Any]:
        """The used part of every array; :meth:`compact` turns it into :meth:`state_dict`'s form.

        With ``copy`` (a checkpoint taken under the learner's lock) it is a copy that later
        learning cannot change, at the cost of copying only the state and key-chain columns
        (9 of the 190 bytes per held impression): the rest is shared, and its ``hold`` (a
        :class:`StoreHold`) keeps every slot it holds from being handed out again while it
        lives. Slots free at the copy may be reused meanwhile; their rows are not read."""
        out: dict[str, Any] = {name: getattr(self, name)[: self.high] for name in self._ARRAYS}
        if copy:
            out.update({name: out[name].copy() for name in self._CHANGING})
        out.update(
            arena=self.arena[: self.arena_used],
            free=np.asarray(self.free + self._held_free, np.int64),
            high=self.high,
            dense_dim=self.dense_dim,
            n_preds=self.n_preds,
        )
        if copy:
            hold = StoreHold()
            self._holds.append(weakref.ref(hold))
            out["hold"] = hold
        return out

    @staticmethod
    def compact(raw: dict[str, Any]) -> dict[str, Any]:
        """Live slots only, with the arena compacted (:meth:`state_dict`, and a raw form read
        back from a checkpoint).

        Takes each array out of ``raw`` as it is compacted, so that a raw form read from a file
        is freed array by array (it is as large as the store: about 400 MB with the 2,000,000
        impressions that ``bench/load.py`` holds at the cap)."""
        live = np.flatnonzero(raw["state"] != _FREE)
        length = raw.pop("length")[live]
        values, offsets = csr_gather(raw.pop("arena"), raw.pop("start")[live], length + raw.pop("xlength")[live])
        out = {name: raw.pop(name)[live] for name in ("key", "rid", "ts", "deadline", "seq", "next", "state")}
        out["length"] = length
        out.update({name: raw.pop(name)[live] for name in ("dense", "preds", "item_n", "user_n")})
        out.update(
            dense_dim=raw["dense_dim"],
            n_preds=raw["n_preds"],
            slots=live,
            high=raw["high"],
            values=values,
            offsets=offsets,
            # The free list in its order, so that a restored store hands out the same slots.
            free=raw["free"],
        )
        return out

    def state_dict(self) -> dict[str, Any]:
        """Live slots only, with the arena compacted: a checkpoint holds no garbage."""
        return self.compact(self.raw(copy=False))

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> SnapshotStore:
        self = cls(int(s["dense_dim"]), int(s["n_preds"]))
        live = np.asarray(s["slots"], dtype=np.int64)
        self.high = int(s["high"])
        self._ensure(self.high)
        for name in ("key", "rid", "ts", "deadline", "seq", "next", "state", "dense", "preds", "item_n", "user_n"):
            getattr(self, name)[live] = s[name]
        offsets = np.asarray(s["offsets"], dtype=np.int64)
        values = np.asarray(s["values"], dtype=np.uint32)
        self.arena = np.zeros(max(2 * len(values), 1 << 16), dtype=np.uint32)
        self.arena[: len(values)] = values
        self.start[live] = offsets[:-1]
        self.length[live] = s["length"]
        self.xlength[live] = np.diff(offsets) - np.asarray(s["length"])
        self.arena_used = self.arena_live = len(values)
        self.free = np.asarray(s["free"], np.int64).tolist()
        self.live = len(live)
        return self


# Slot states: waiting for a label; kept after going out as a negative; kept after its label;
# done, to be freed once the examples that use it are learned.
PENDING, EXPIRED, ANSWERED, RELEASING, FREE = _PENDING, _EXPIRED, _ANSWERED, _RELEASING, _FREE
