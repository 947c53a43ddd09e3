"""Take back what a bot taught the popularity counts before its verdict.

Cleaning (:mod:`rtrec.clean`) quarantines a bot's events from the row that tips the verdict
on; what the bot did before was learned. The learner keeps the engagements (positives, and
ratings of any value) the candidate sources learned most recently (user, item, time, label)
in a ring; when the cleaner flags a user, that user's engagements still in the ring are
subtracted from the item counters (the ``item_pop`` and ``item_ctr`` features), from the
trending and all-time popularity of the candidate sources and from co-visitation (the pairs
they made, replayed), so that the items a bot pushed lose the rank its earlier clicks bought
them and a crawler's walk through the catalog stops tying items together; and the bot's
examples leave the models' replay buffers, so that no later replay teaches them again.
Shared weights (the CTR model, the linear model, the ranker) are not unlearned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rtrec.learn.online import OnlineLearner

__all__ = ["RecentPositives", "retract_bots", "take_back"]


class RecentPositives:
    """The last ``capacity`` examples the candidate sources learned from (positives, and ratings
    of any value: :data:`rtrec.learn.step.ENGAGED_TYPES`): user index, item index, time, label
    (28 bytes each)."""

    def __init__(self, capacity: int = 1 << 18) -> None:
        self.user = np.full(capacity, -1, np.int64)
        self.item = np.zeros(capacity, np.int64)
        self.ts = np.zeros(capacity, np.float64)
        self.label = np.zeros(capacity, np.float32)
        self._next = 0  # where the next entry goes; the ring wraps
        self.retracted = 0  # entries taken back so far

    def add(
        self, users: np.ndarray, items: np.ndarray, ts: np.ndarray, labels: np.ndarray, engaged: np.ndarray
    ) -> None:
        """Keep the ``engaged`` rows of resolved examples (``ts`` in epoch seconds)."""
        pos = np.flatnonzero(engaged)
        cap = len(self.user)
        if not len(pos) or not cap:
            return
        pos = pos[-cap:]
        at = (self._next + np.arange(len(pos))) % cap
        self.user[at], self.item[at], self.ts[at], self.label[at] = users[pos], items[pos], ts[pos], labels[pos]
        self._next = int((self._next + len(pos)) % cap)

    def take(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Remove and return (users, items, times, labels) of what ``users`` left in the ring, oldest first."""
        rows = np.flatnonzero(np.isin(self.user, users))  # users are indices (>= 0); a taken entry is -1
        rows = rows[np.argsort((rows - self._next) % len(self.user), kind="stable")]  # in the order added
        out = self.user[rows].copy(), self.item[rows].copy(), self.ts[rows].copy(), self.label[rows].copy()
        self.user[rows] = -1
        return out


def retract_bots(learner: OnlineLearner, user_ids: list[str]) -> int:
    """Subtract the kept engagements of newly flagged bots from the popularity counts; how many."""
    f = learner.featurizer
    users = np.array([u for u in (f.users.get(x) for x in user_ids) if u is not None], np.int64)
    if not len(users):
        return 0
    # A replay buffer would teach the models the bots' examples again (after a drift alarm): they go.
    for user_id in user_ids:
        for x in f.user_features(user_id):
            for t in learner.trainers.values():
                if t.replay is not None:
                    t.replay.forget_feature(x)
    taken = take_back(learner, users)
    learner.recent_positives.retracted += taken
    return taken


def take_back(learner: OnlineLearner, users: np.ndarray) -> int:
    """Subtract the kept engagements of ``users`` (indices) from the item counters, the candidate
    sources' popularity and co-visitation, and drop them from the ring; how many there were."""
    who, items, ts, labels = learner.recent_positives.take(users)
    if len(items):
        learner.featurizer.item_counts.retract(items, ts, labels)
        learner.retrieval.retract(who, items, ts)
    return len(items)
