"""What ``rtrec replay`` counts of each item as of each ranked event: its examples, which say whether
the target is cold, and its positives, behind the trivial "most popular" baselines.

The learner's own popularity counters move once per learn chunk (a thousand events), so a
ranking read from them misses the chunk's latest positives: a recency-decayed count is
starved most, on a log whose recent activity is what it ranks by. The candidate sources see
every example before the ranked one, so the baselines beside them must too, and so must the
line between cold and warm targets. :class:`Popularity` folds each chunk's resolved examples in
stream order, up to the ranked row, and counts per item its examples and scores it by

- ``decayed``: their positives with a half-life (the learner's counter half-life), and
- ``all_time``: their positives so far.
"""

from __future__ import annotations

import numpy as np

from rtrec.learn.step import Resolving

__all__ = ["Popularity"]

_RESCALE = 512.0  # exponent (in half-lives past the reference time) at which the decayed counts are rescaled


class Popularity:
    """Positives per item, all-time and time-decayed, folded in stream order up to a ranked row.

    >>> import numpy as np
    >>> p = Popularity(half_life_s=10.0)
    >>> r = Resolving(np.zeros(3, np.int64), np.array([0, 1, 1]), np.array([0.0, 20.0, 20.0]),
    ...               np.array([1.0, 1.0, 0.0]), np.zeros(3, np.int8), np.ones(3, bool))
    >>> p.start(r); p.upto(3)
    >>> p.all_time(np.array([0, 1, 2])).tolist()
    [1.0, 1.0, 0.0]
    >>> p.examples(np.array([0, 1, 2])).tolist()
    [1, 2, 0]
    >>> [round(x, 2) for x in p.decayed(np.array([0, 1]), now=20.0).tolist()]
    [0.25, 1.0]
    """

    def __init__(self, half_life_s: float) -> None:
        self.half = float(half_life_s)
        self.count = np.zeros(0, np.float64)
        self.seen = np.zeros(0, np.int64)  # examples, whatever their label
        self.weighted = np.zeros(0, np.float64)  # positives weighted 2^((t - t_ref) / half)
        self.t_ref: float | None = None
        self._r: Resolving | None = None
        self._done = 0

    def start(self, r: Resolving) -> None:
        """A new chunk: what is left of the previous one counts first."""
        if self._r is not None:
            self.upto(len(self._r))
        self._r, self._done = r, 0

    def upto(self, row: int) -> None:
        """Count the chunk's examples before ``row`` (those not counted yet)."""
        r = self._r
        if r is None or row <= self._done:
            return
        sl = slice(self._done, row)
        self._done = row
        labels = np.asarray(r.labels[sl], np.float64)
        every = r.item_idx[sl].astype(np.int64)
        if not len(every):
            return
        n = int(every.max()) + 1
        if n > len(self.count):
            grow = max(n, 2 * len(self.count)) - len(self.count)
            self.count = np.concatenate([self.count, np.zeros(grow)])
            self.weighted = np.concatenate([self.weighted, np.zeros(grow)])
            self.seen = np.concatenate([self.seen, np.zeros(grow, np.int64)])
        np.add.at(self.seen, every, 1)
        pos = labels > 0
        if not pos.any():
            return
        items, ts, w = every[pos], np.asarray(r.ts[sl], np.float64)[pos], labels[pos]
        if self.t_ref is None:
            self.t_ref = float(ts.min())
        if (float(ts.max()) - self.t_ref) / self.half > _RESCALE:
            t_new = float(ts.max())
            self.weighted *= float(np.exp2(max(-(t_new - self.t_ref) / self.half, -1000.0)))
            self.t_ref = t_new
        np.add.at(self.count, items, w)
        np.add.at(self.weighted, items, w * np.exp2((ts - self.t_ref) / self.half))

    def examples(self, items: np.ndarray) -> np.ndarray:
        out = np.zeros(len(items), np.int64)
        ok = items < len(self.seen)
        out[ok] = self.seen[items[ok]]
        return out

    def all_time(self, items: np.ndarray) -> np.ndarray:
        out = np.zeros(len(items))
        ok = items < len(self.count)
        out[ok] = self.count[items[ok]]
        return out

    def decayed(self, items: np.ndarray, now: float) -> np.ndarray:
        out = np.zeros(len(items))
        ok = items < len(self.weighted)
        if self.t_ref is not None:
            out[ok] = self.weighted[items[ok]] * float(np.exp2(max(-(now - self.t_ref) / self.half, -1000.0)))
        return out
