"""Bounded memories the cleaning rules read: windowed counts, recent items per user, recent keys.

Each works on a whole chunk at once with sorts and searches (numpy), and gives every row the
answer it would get if the rows came one at a time: a row sees the rows before it in the
stream, never one after, however the stream is cut into chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "NEVER",
    "RecentItems",
    "RecentKeys",
    "Rows",
    "WindowCounter",
    "group_ends",
    "group_starts",
    "segmented_cumsum",
]

NEVER = np.iinfo(np.int64).min // 4  # "no event yet": below any time, and safe to subtract from


def group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """For each position of a sorted array, where its run of equal keys starts."""
    n = len(sorted_keys)
    new = np.ones(n, bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    heads = np.flatnonzero(new)
    return heads[np.cumsum(new) - 1]


def group_ends(sorted_keys: np.ndarray) -> np.ndarray:
    """The last position of each run of equal keys of a sorted array."""
    n = len(sorted_keys)
    last = np.ones(n, bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=last[:-1])
    return np.flatnonzero(last)


def segmented_cumsum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Running sums of ``x`` (rows along axis 0) that restart at each group's start."""
    cs = np.cumsum(x, axis=0)
    return cs - cs[starts] + x[starts]


@dataclass
class Rows:
    """One chunk's columns the rules share, and its rows in two stable orders, sorted once."""

    users: np.ndarray  # dense user index (int64)
    items: np.ndarray  # 32-bit item hash (int64)
    ts: np.ndarray  # microseconds
    secs: np.ndarray = field(init=False)
    by_user: np.ndarray = field(init=False)  # row numbers sorted by user, then row
    _by_pair: np.ndarray | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.secs = self.ts // 1_000_000
        self.by_user = np.argsort(self.users, kind="stable")

    @property
    def pairs(self) -> np.ndarray:
        return (self.users << 32) | self.items

    @property
    def by_pair(self) -> np.ndarray:
        """Row numbers sorted by (user, item), then row."""
        if self._by_pair is None:
            self._by_pair = np.argsort(self.pairs, kind="stable")
        return self._by_pair


def _grow(a: np.ndarray, n: int, fill: Any = 0) -> np.ndarray:
    if len(a) >= n:
        return a
    out = np.full((n, *a.shape[1:]), fill, a.dtype)
    out[: len(a)] = a
    return out


class WindowCounter:
    """Events per key (a user, an item) in the last minute of that key's event time.

    The minute is six steps of 10 s: an event counts the events of its key whose step is its
    own or one of the five before (50 to 60 s back), itself included. A key's clock is the
    latest event time it has sent, so an event older than one before it counts at that time
    (a late event cannot open a window of its own). 32 bytes per key: six uint32 counts and
    the clock.
    """

    STEPS = 6

    def __init__(self, window_s: float = 60.0) -> None:
        self.step_us = max(1, round(window_s * 1e6) // self.STEPS)
        self.counts = np.zeros((0, self.STEPS), np.uint32)
        self.clock = np.zeros(0, np.int64)

    def reserve(self, n: int) -> None:
        self.counts = _grow(self.counts, n)
        self.clock = _grow(self.clock, n, NEVER)

    def clear(self, key: int) -> None:
        self.counts[key] = 0
        self.clock[key] = NEVER

    def count(self, keys: np.ndarray, ts_us: np.ndarray) -> np.ndarray:
        """For each row, its key's events in the window up to it; then remember them. The rows come
        sorted by key, and within a key in stream order; so do the answers."""
        m, B = len(keys), self.STEPS
        if m == 0:
            return np.zeros(0, np.int64)
        step = ts_us // self.step_us
        starts = group_starts(keys)
        gid = np.cumsum(starts == np.arange(m)) - 1
        # Each key's clock: the running maximum of its steps, from where the last chunk left it.
        base = int(step.min())
        rel = np.minimum(step - base, 2**32 - 1)
        run = (np.maximum.accumulate((gid << 32) | rel) & (2**32 - 1)) + base
        old = self.clock[keys]
        c = np.maximum(run, old)
        # In this chunk: earlier rows of the same key (and this one) whose clock is in the window.
        lowest = int(c.min()) - B
        key = (gid << 34) + (c - lowest)
        total = np.arange(1, m + 1) - np.searchsorted(key, key - (B - 1), "left")
        # Before this chunk: the remembered steps still inside the window.
        back = old[:, None] - np.arange(B)
        inside = back >= (c - (B - 1))[:, None]
        total += np.where(inside, self.counts[keys[:, None], back % B], 0).sum(axis=1, dtype=np.int64)
        # Remember: each key moves to its new clock; the steps it passes start from zero.
        ends = group_ends(keys)
        ek, new = keys[ends], c[ends]
        back = new[:, None] - np.arange(B)
        passed = back > self.clock[ek][:, None]
        self.counts[np.broadcast_to(ek[:, None], back.shape)[passed], back[passed] % B] = 0
        recent = c >= new[gid] - (B - 1)
        np.add.at(self.counts, (keys[recent], c[recent] % B), 1)
        self.clock[ek] = new
        return total

    def state(self, n: int) -> dict[str, Any]:
        return {"counts": self.counts[:n].copy(), "clock": self.clock[:n].copy()}

    def load(self, s: dict[str, Any]) -> None:
        self.counts = np.array(s["counts"], np.uint32).reshape(-1, self.STEPS)
        self.clock = np.array(s["clock"], np.int64)


class RecentItems:
    """The last ``size`` items each user did something with: 32-bit item hashes, and (when
    ``timed``) the time in seconds. ``4 * size`` bytes per user (``8 * size`` timed), plus 8.

    :meth:`match_then_add` asks, for each query row, whether the latest earlier row of the same
    user and item is still among the user's last ``size`` (and, when timed, within the window);
    then it adds the chunk's rows.
    """

    def __init__(self, size: int, *, timed: bool) -> None:
        if size < 1 or size & (size - 1):
            raise ValueError(f"RecentItems: size must be a power of two, got {size}")
        self.size = size
        self.items = np.zeros((0, size), np.uint32)
        self.secs: np.ndarray | None = np.zeros((0, size), np.uint32) if timed else None
        self.added = np.zeros(0, np.int64)  # items added per user, ever

    def reserve(self, n: int) -> None:
        self.items = _grow(self.items, n)
        if self.secs is not None:
            self.secs = _grow(self.secs, n)
        self.added = _grow(self.added, n)

    def clear(self, user: int) -> None:
        self.items[user] = 0
        if self.secs is not None:
            self.secs[user] = 0
        self.added[user] = 0

    def match_then_add(self, rows: Rows, query: np.ndarray, add: np.ndarray, window_s: float = np.inf) -> np.ndarray:
        """For each ``query`` row (a mask over the chunk), whether the latest earlier ``add`` row of the
        same user and item is remembered at that row; then remember the ``add`` rows."""
        N = self.size
        both = query | add
        # For each row, how many of its user's rows were added before it in this chunk.
        pos = rows.by_user[both[rows.by_user]]
        added = add[pos]
        before = np.empty(len(rows.users), np.int64)
        starts = group_starts(rows.users[pos])
        before[pos] = segmented_cumsum(added.astype(np.int64), starts) - added
        # The latest earlier added row of the same user and item, in this chunk.
        pp = rows.by_pair[both[rows.by_pair]]
        is_add = add[pp]
        q = np.flatnonzero(~is_add)
        j = np.maximum.accumulate(np.where(is_add, np.arange(len(pp)), -1))[q]
        jj = np.maximum(j, 0)
        pairs = rows.pairs[pp]
        in_chunk = (j >= 0) & (pairs[jj] == pairs[q])
        qrow, arow = pp[q], pp[jj]
        hit = in_chunk & (before[arow] >= before[qrow] - N)
        if self.secs is not None:
            hit &= np.abs(rows.secs[qrow] - rows.secs[arow]) <= window_s
        # Otherwise the latest remembered one, unless this chunk's rows have pushed it out.
        old = qrow[~in_chunk]
        if len(old):
            u = rows.users[old]
            n = self.added[u]
            age = (n[:, None] - 1 - np.arange(N)) & (N - 1)
            alive = age < np.minimum(n, N - before[old])[:, None]
            match = alive & (self.items[u] == rows.items[old, None].astype(np.uint32))
            youngest = np.where(match, age, N).min(axis=1)
            found = youngest < N
            if self.secs is not None:
                slot = (n - 1 - youngest) & (N - 1)
                found &= np.abs(rows.secs[old] - self.secs[u, slot].astype(np.int64)) <= window_s
            hit[~in_chunk] = found
        out = np.zeros(len(rows.users), bool)
        out[qrow] = hit
        a = pos[added]
        self._add(rows.users[a], rows.items[a], rows.secs[a], before[a])
        return out

    def _add(self, u: np.ndarray, h: np.ndarray, s: np.ndarray, rank: np.ndarray) -> None:
        """Remember added rows, given sorted by user and in stream order within a user, with their rank there."""
        if not len(u):
            return
        N = self.size
        last = np.ones(len(u), bool)  # only a user's last N rows can stay: no row N places on is theirs
        np.not_equal(u[N:], u[:-N], out=last[:-N])
        slot = (self.added[u] + rank) & (N - 1)
        self.items[u[last], slot[last]] = h[last].astype(np.uint32)
        if self.secs is not None:
            self.secs[u[last], slot[last]] = np.maximum(s[last], 0).astype(np.uint32)
        ends = group_ends(u)
        self.added[u[ends]] += rank[ends] + 1

    def state(self, n: int) -> dict[str, Any]:
        out = {"items": self.items[:n].copy(), "added": self.added[:n].copy()}
        if self.secs is not None:
            out["secs"] = self.secs[:n].copy()
        return out

    def load(self, s: dict[str, Any]) -> None:
        self.items = np.array(s["items"], np.uint32).reshape(-1, self.size)
        self.added = np.array(s["added"], np.int64)
        if self.secs is not None:
            self.secs = np.array(s["secs"], np.uint32).reshape(-1, self.size)


class RecentKeys:
    """Each key's latest time while that lies within ``window`` of the stream's clock (the
    latest event time seen): 24 bytes per key, about as many keys as events in a window.

    A row repeats when the latest earlier row of its key is within the window of it and of the
    clock. Keeping, per key, only the latest row and only while the clock allows a match
    makes the answer the same however the stream is chunked. An event from the future moves the
    clock ahead, and copies go unnoticed until event time catches up: a miss, never a row set
    aside wrongly (the log refuses events more than ``events.max_future_s`` ahead).
    """

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.uint64)
        self.ts = np.zeros(0, np.int64)
        self.users = np.zeros(0, np.int64)
        self.clock = int(NEVER)

    def repeats(self, keys: np.ndarray, ts_us: np.ndarray, users: np.ndarray, window_us: int) -> np.ndarray:
        n, c = len(keys), len(self.keys)
        if n == 0:
            return np.zeros(0, bool)
        clock = np.maximum(np.maximum.accumulate(ts_us), self.clock)
        allk = np.concatenate([self.keys, keys])
        allts = np.concatenate([self.ts, ts_us])
        pos = np.concatenate([np.full(c, -1), np.arange(n)])
        order = np.lexsort((pos, allk))
        k, t, p = allk[order], allts[order], pos[order]
        same = k[1:] == k[:-1]
        cur = p[1:]
        at = clock[np.maximum(cur, 0)]
        rep = same & (np.abs(t[1:] - t[:-1]) <= window_us) & (t[:-1] >= at - window_us)
        out = np.zeros(n, bool)
        out[cur[rep]] = True
        ends = group_ends(k)
        end_clock = int(clock[-1])
        keep = ends[t[ends] >= end_clock - window_us]
        self.users = np.concatenate([self.users, users])[order[keep]]
        self.keys, self.ts = k[keep], t[keep]
        self.clock = end_clock
        return out

    def forget(self, user: int) -> None:
        keep = self.users != user
        self.keys, self.ts, self.users = self.keys[keep], self.ts[keep], self.users[keep]

    def state(self) -> dict[str, Any]:
        return {"keys": self.keys.copy(), "ts": self.ts.copy(), "users": self.users.copy(), "clock": self.clock}

    def load(self, s: dict[str, Any]) -> None:
        self.keys = np.array(s["keys"], np.uint64)
        self.ts = np.array(s["ts"], np.int64)
        self.users = np.array(s["users"], np.int64)
        self.clock = int(s["clock"])
