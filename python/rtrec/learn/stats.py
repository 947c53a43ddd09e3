"""What the learner reports about itself: the typed stats the daemon, ``rtrec inspect`` and replay read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rtrec.contracts import LiveRanking, RetrievalStats, UserItemStats
from rtrec.learn.metrics import rank_metrics

if TYPE_CHECKING:
    from rtrec.learn.online import OnlineLearner

__all__ = ["learner", "retrieval"]


def retrieval(self: OnlineLearner) -> RetrievalStats:
    tried = self.rank_recall[1]
    cv = self.retrieval.covisit
    return {
        "covisit_items": cv.items,
        "covisit_users": cv.users,
        "covisit_pairs": cv.pairs,
        "covisit_bytes": cv.memory_bytes,
        "candidate_recall": self.rank_recall[0] / tried if tried else None,
        "live": _live(list(self.live_ranks)),
        "rankers": {k: {"trained": r.trained, "weights": r.weights()} for k, r in self.rankers.items()},
    }


def learner(self: OnlineLearner) -> dict[str, Any]:
    """Replay and state sizes: :class:`~rtrec.contracts.LearnerStats` but its progressive
    metrics, which the caller computes outside the learner's lock (it holds the lock for this)."""
    tr = self.trainers[self.main]
    return {
        "model_version": self.model_version,
        "last_seq": self.last_seq,
        "events_seen": self.events_seen,
        "examples_seen": self.examples_seen,
        "pending_impressions": self.labeler.pending,
        "labels": {
            "pending": self.labeler.pending,
            "retained": self.labeler.retained,
            "snapshot_bytes": self.labeler.store.nbytes,
            "index_bytes": self.labeler.index_bytes,
            "expired_early": self.labeler.expired_early,
            "dropped": self.labeler.dropped,
            "window_s": self.cfg.labels.impression_window_s,
            "late_window_s": self.cfg.labels.late_window_s,
        },
        "served_snapshots": {"held": len(self.served), "used": self.served.used},
        "user_items": _user_items(self),
        "users": len(self.featurizer.users.index),
        "items": len(self.featurizer.items),
        "replay": tr.replay_stats(),
        "drift": {"alarms": self.drift_alarms[-20:], "stat": tr.drift.stat, "boost_left": tr.boost_left},
        "hashing": {"bits": self.cfg.features.bits, "collision_rate": self.featurizer.collision_rate},
        "text": {"dim": self.text_dim, "items_with_text": int(self.featurizer.has_text.sum())},
        "retrieval": retrieval(self),
        "cleaning": {**self.cleaner.counts(), "retracted_positives": self.recent_positives.retracted},
    }


def _user_items(self: OnlineLearner) -> UserItemStats:
    sets = (self.featurizer.user_items, self.retrieval.interacted, self.consumed)
    return {
        "pairs": sum(s.pairs for s in sets),
        "bytes": sum(s.memory_bytes for s in sets),
        "evicted": sum(s.evicted for s in sets),
        "max_per_user": self.cfg.learner.items_per_user,
    }


def _live(ranks: list[int]) -> LiveRanking:
    hr, ndcg = rank_metrics(ranks)
    return {"n": len(ranks), "hr_at_10": hr, "ndcg_at_10": ndcg}
