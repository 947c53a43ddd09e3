"""What ``rtrec replay`` counts of each item as of each ranked event: its examples, which say whether
the target is cold, and its positives, behind the trivial "most popular" baselines.

The learner's own popularity counters move once per learn chunk (a thousand events), so a
ranking read from them misses the chunk's latest positives: a recency-decayed count is
starved most, on a log whose recent activity is what it ranks by. The candidate sources see
every example before the ranked one, so the baselines beside them must too, and so must the
line between cold and warm targets. :class:`Popularity` folds each chunk's resolved examples in
stream order, up to the ranked row, into :class:`~rtrec.learn.counters.Counters` of its own (the
learner's kind, with the learner's counter half-life), and scores items by

- ``decayed``: their positives, time-decayed, and
- ``all_time``: their positives so far.
"""

from __future__ import annotations

import numpy as np

from rtrec.learn.counters import Counters
from rtrec.learn.step import Resolving

__all__ = ["Popularity"]


class Popularity:
    """Examples and positives per item, all-time and time-decayed, folded in stream order up to a ranked row.

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
        self.counts = Counters(half_life_s)
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
        items = r.item_idx[sl].astype(np.int64)
        self._cover(items)
        self.counts.update(items, np.asarray(r.ts[sl], np.float64), np.asarray(r.labels[sl], np.float64))

    def _cover(self, items: np.ndarray) -> None:
        if len(items):
            self.counts.ensure(int(items.max()) + 1)

    def examples(self, items: np.ndarray) -> np.ndarray:
        self._cover(items)
        return self.counts.n[items]

    def all_time(self, items: np.ndarray) -> np.ndarray:
        self._cover(items)
        return np.asarray(self.counts.npos[items], np.float64)

    def decayed(self, items: np.ndarray, now: float) -> np.ndarray:
        self._cover(items)
        return self.counts.positives(items, np.full(len(items), now))
