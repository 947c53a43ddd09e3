"""A bot's positives learned before its verdict are taken back from the popularity counts and co-visitation."""

from __future__ import annotations

import numpy as np
import pytest

from rtrec.config import load_config
from rtrec.learn import OnlineLearner
from tests.clean.reference import stream

# A real user is shown an item (the stream logs impressions), then a bot clicks three items it
# was never shown, every 3 s; the real user clicks one of them too.
ROWS = [(0, "r1", "a", "impression")]
ROWS += [(1 + 3 * k, "bot", f"x{k % 3}", "click") for k in range(30)]
ROWS += [(200, "r1", "x0", "click")]


def learn(chunks: list[slice], clean: dict) -> OnlineLearner:
    learner = OnlineLearner(load_config(overrides={"text": {"enabled": False}, "clean": clean}))
    t = stream(ROWS)
    for sl in chunks:
        learner.learn(t.slice(sl.start, sl.stop - sl.start))
    return learner


@pytest.mark.parametrize("chunks", [[slice(0, 32)], [slice(0, 10), slice(10, 25), slice(25, 32)]])
def test_what_a_bot_did_before_its_verdict_is_taken_back(chunks: list[slice]) -> None:
    learner = learn(chunks, {})
    f = learner.featurizer
    x = np.array([f.items.get(f"x{k}") for k in range(3)])
    # The verdict comes at the bot's 20th click: 19 were learned, and taken back.
    assert learner.cleaner.counts()["bot_users"] == 1
    assert learner.recent_positives.retracted == 19
    assert learner.stats()["cleaning"]["retracted_positives"] == 19
    assert learner.retrieval.count[x].tolist() == [1.0, 0.0, 0.0]  # the real user's click stays
    assert f.item_counts.npos[x].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert f.item_counts.n[x].tolist() == [1, 0, 0]
    now = float(learner.labeler.watermark or 0.0)
    trending = learner.retrieval.trending_now(x, now)
    assert trending[0] == pytest.approx(1.0) and trending[1:] == pytest.approx([0.0, 0.0], abs=1e-9)
    # The pairs its clicks made leave co-visitation: x0, x1 and x2 are no longer neighbours.
    covisit = learner.retrieval.covisit
    assert [len(covisit.neighbours(int(i), 10)[0]) for i in x] == [0, 0, 0]
    assert len(covisit.history(f.users.get("bot"))) == 0


def test_without_cleaning_nothing_is_taken_back() -> None:
    learner = learn([slice(0, 32)], {"enabled": False})
    f = learner.featurizer
    x = np.array([f.items.get(f"x{k}") for k in range(3)])
    assert learner.recent_positives.retracted == 0
    assert learner.retrieval.count[x].tolist() == [11.0, 10.0, 10.0]
    ids, _ = learner.retrieval.covisit.neighbours(int(x[0]), 10)
    assert sorted(ids.tolist()) == sorted(x[1:].tolist())


@pytest.mark.parametrize("clean", [{}, {"enabled": False}])
def test_a_bots_examples_leave_the_replay_buffers_at_its_verdict(clean: dict) -> None:
    learner = learn([slice(0, 32)], clean)
    bot = learner.featurizer.user_features("bot")
    trainer = learner.trainers[learner.main]
    assert bot and trainer.replay is not None and len(trainer.replay) > 0
    # forget_feature counts (and removes) the rows still holding the bot's id feature.
    held = sum(trainer.replay.forget_feature(x) for x in bot)
    assert held == (0 if not clean else 30)


def test_kept_positives_come_back_oldest_first_across_the_ring_wrap() -> None:
    from rtrec.learn.probation import RecentPositives

    ring = RecentPositives(capacity=4)
    users = np.array([7, 1, 7, 7, 1, 7])
    items = np.array([10, 11, 12, 13, 14, 15])
    ts = np.arange(6, dtype=np.float64)
    ring.add(users[:3], items[:3], ts[:3], np.ones(3), np.ones(3, bool))
    ring.add(users[3:], items[3:], ts[3:], np.ones(3), np.ones(3, bool))  # wraps: the first two are overwritten
    who, got, when, _ = ring.take(np.array([7]))
    assert got.tolist() == [12, 13, 15] and when.tolist() == [2.0, 3.0, 5.0] and who.tolist() == [7, 7, 7]
    assert ring.take(np.array([7]))[1].tolist() == []  # taken once
