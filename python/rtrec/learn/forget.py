"""Erasing one user from the learner: every per-user state, and the user's own hashed weights.

What goes: the id (its index stays taken by an empty tombstone, so no other index moves),
the user's counters and interest vector, the items they consumed and interacted with, their
recent history in the co-visitation source, their pending and retained impressions (never
learned), every replay row that holds their id feature, the row of each hashed table at
that feature (the user's own weights), and what their engagements still among the learner's
kept ones (:class:`rtrec.learn.probation.RecentPositives`) added to co-visitation pairs and
to the popularity counts. What stays: what their events moved in weights that other users
share (item weights, crosses, the factorisation machine's other rows, the per-example
linear model), and the pairs and counts of their older engagements, which cannot be unlearned
exactly."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import numpy as np

from rtrec.learn.probation import take_back

if TYPE_CHECKING:
    from rtrec.learn.online import OnlineLearner

__all__ = ["Forgotten", "forget_user"]


class Forgotten(TypedDict):
    known: bool  # whether the learner held the user at all
    examples: int  # examples the user's counters had taken in
    pending: int  # impressions waiting for (or kept after) their label, dropped unlearned
    replay_rows: int  # replay rows removed, summed over the models


def forget_user(learner: OnlineLearner, user_id: str, learned_events: int = 0) -> Forgotten:
    """Erase ``user_id`` from ``learner`` (the caller holds the learner's lock); ``learned_events``
    (the user's events that were learned, deleted from the log) leave the event count."""
    f = learner.featurizer
    learner.events_seen = max(0, learner.events_seen - learned_events)
    learner.cleaner.forget_user(user_id)
    u = f.users.get(user_id)
    if u is None:
        return Forgotten(known=False, examples=0, pending=0, replay_rows=0)
    examples = int(f.user_counts.n[u]) if u < len(f.user_counts.n) else 0
    replay = sum(t.forget_feature(x) for t in learner.trainers.values() for x in f.user_features(user_id))
    f.forget_user(user_id)
    learner.consumed.remove(u)
    # Their kept positives leave co-visitation and the popularity counts, as a bot's do at its verdict.
    take_back(learner, np.array([u], np.int64))
    learner.retrieval.forget_user(u)
    pending = learner.labeler.forget_user(u)
    learner.examples_seen = max(0, learner.examples_seen - examples)
    learner.model_version += 1
    return Forgotten(known=True, examples=examples, pending=pending, replay_rows=replay)
