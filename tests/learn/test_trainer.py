"""Tests for rtrec.learn.trainer: the variants (ctr, lr, popularity, static), replay mixing and drift handling."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest
import torch

from rtrec import _native
from rtrec.config import Config, load_config
from rtrec.learn import OnlineLearner, Trainer, Variant, default_variant
from rtrec.learn.columns import LINEAR
from rtrec.learn.featurize import Batch, Featurizer
from tests.learn.streams import T0, events

SMALL = {
    "text": {"enabled": False},
    "features": {"bits": 14},
    # Replay mixing on, so that these tests exercise it (the default mix is off); the CTR model
    # served alone, without the per-example model's logit blended in.
    "learner": {"batch_size": 32, "replay_capacity": 1_000, "replay_ratio": 1.0, "linear_blend": 0.0},
}


@pytest.fixture
def cfg() -> Config:
    return load_config(overrides=copy.deepcopy(SMALL))


def pattern(steps: int, start: int = 0, flip: bool = False, xor: bool = False) -> list[tuple[int, str, str, str]]:
    """u0 clicks i0 and dismisses i1 (the other way round with ``flip``); u1 the same, or the
    opposite with ``xor`` (then only the user-item interaction predicts a click)."""
    out = []
    like, dislike = ("i1", "i0") if flip else ("i0", "i1")
    like1, dislike1 = (dislike, like) if xor else (like, dislike)
    for s in range(start, start + steps):
        out += [(10 * s, "u0", like, "click"), (10 * s + 1, "u0", dislike, "dismiss")]
        out += [(10 * s + 2, "u1", like1, "click"), (10 * s + 3, "u1", dislike1, "dismiss")]
    return out


def batch(feat: Featurizer, rows: list[tuple[int, str, str, str]], start_seq: int = 1) -> Batch:
    from rtrec.labels import Labeler

    t = events(rows, start_seq)
    _, has, label, weight = Labeler().labels(t)
    ex = (
        t.filter(pa.array(has))
        .append_column("label", pa.array(label[has]))
        .append_column("weight", pa.array(weight[has]))
    )
    b = feat.transform(ex)
    # The per-example model's logit, as the learner fills it in: each row predicted, then learned.
    linear = LINEAR_MODELS.setdefault(id(feat), _native.OnlineLinear(cfg_bits(feat), feat.cfg.learner.linear_lr))
    b.dense[:, LINEAR] = linear.predict_learn(b.indices, b.offsets, b.labels, b.weights)
    return b


LINEAR_MODELS: dict[int, _native.OnlineLinear] = {}


def cfg_bits(feat: Featurizer) -> int:
    return min(feat.cfg.features.bits, 30)


def params(tr: Trainer) -> dict[str, torch.Tensor]:
    assert tr.model is not None
    return {k: v.clone() for k, v in tr.model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_default_variant_follows_the_text_config(cfg: Config) -> None:
    v = default_variant(cfg)
    assert (v.name, v.kind, v.item_text, v.user_vector, v.distill) == ("rtrec", "ctr", False, False, False)
    on = default_variant(load_config(overrides={"text": {"enabled": True, "distill": False}}), "x")
    assert (on.name, on.item_text, on.user_vector, on.distill) == ("x", True, True, False)


def test_building_a_trainer_leaves_the_global_rng_alone(cfg: Config) -> None:
    torch.manual_seed(99)
    state = torch.random.get_rng_state()
    a = Trainer(default_variant(cfg), cfg)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.rand(100)
    b = Trainer(default_variant(cfg), cfg)
    assert same(params(a), params(b))


@pytest.mark.parametrize(("kind", "xor"), [("ctr", False), ("ctr", True), ("lr", False)])
def test_models_learn_a_pattern(cfg: Config, kind: str, xor: bool) -> None:
    feat = Featurizer(cfg)
    tr = Trainer(Variant("m", kind=kind, replay=kind == "ctr"), cfg)
    first = None
    for step in range(30):
        b = batch(feat, pattern(2, start=2 * step, xor=xor), 8 * step + 1)
        probs = tr.predict(b, feat)
        first = probs if first is None else first
        tr.learn(b, feat, probs)
        feat.update(b)
    assert tr.updates == 30 and tr.examples == 30 * 8
    assert first is not None and np.all(np.abs(first - 0.5) < 0.2)  # untrained: near the prior
    b = batch(feat, pattern(1, start=100, xor=xor), 10_000)
    p, y = tr.predict(b, feat), b.labels
    if xor:
        # Users and items click half the time: only the factorisation machine's interaction can tell.
        assert p[y == 1].min() > p[y == 0].max() + 0.2
    else:
        assert p[y == 1].min() > 0.65 and p[y == 0].max() < 0.35
    if kind == "ctr":
        assert tr.replay is not None and len(tr.replay) == 240 and tr.replay_drawn > 0


def test_logistic_model_cannot_learn_an_interaction(cfg: Config) -> None:
    feat = Featurizer(cfg)
    tr = Trainer(Variant("lr", kind="lr", replay=False), cfg)
    for step in range(30):
        b = batch(feat, pattern(2, start=2 * step, xor=True), 8 * step + 1)
        tr.learn(b, feat, tr.predict(b, feat))
        feat.update(b)
    b = batch(feat, pattern(1, start=100, xor=True), 10_000)
    np.testing.assert_allclose(tr.predict(b, feat), 0.5, atol=0.05)


def test_static_variant_freezes_after_its_examples(cfg: Config) -> None:
    feat = Featurizer(cfg)
    tr = Trainer(Variant("static", train_examples=16), cfg)
    b1 = batch(feat, pattern(4), 1)  # 16 examples
    tr.learn(b1, feat, tr.predict(b1, feat))
    feat.update(b1)
    assert tr.frozen and tr.updates == 1
    frozen = params(tr)
    for step in range(3):
        b = batch(feat, pattern(4, start=10 + 4 * step, flip=True), 100 + 20 * step)
        tr.learn(b, feat, tr.predict(b, feat))
        feat.update(b)
    assert same(frozen, params(tr)) and tr.updates == 1 and tr.examples == 64


def test_popularity_scores_decayed_positive_counts(cfg: Config) -> None:
    learner = OnlineLearner(cfg, variants=[Variant("popularity", kind="popularity", replay=False)])
    tr = learner.trainers["popularity"]
    assert tr.model is None and tr.opt is None and tr.replay is None
    rows = [(s, f"u{s}", "hit", "click") for s in range(5)] + [
        (10, "u9", "meh", "click"),
        (11, "u8", "miss", "dismiss"),
    ]
    learner.learn(events(rows))
    _ids, s = learner.score("anyone", ["hit", "meh", "miss", "new"], now=T0 + 11)
    assert s[0] > s[1] > s[2] == s[3] == 0.0
    assert s[0] == pytest.approx(5.0, rel=1e-3)
    later = learner.score("anyone", ["hit"], now=T0 + 11 + cfg.learner.counter_half_life_s)[1][0]
    assert later == pytest.approx(s[0] / 2, rel=1e-3)  # one half-life later
    assert learner.popular(2) == ["hit", "meh"]
    assert learner.popular(2, exclude=["hit"]) == ["meh", "miss"]


def test_all_time_popularity_scores_positives_so_far_without_decay(cfg: Config) -> None:
    learner = OnlineLearner(cfg, variants=[Variant("popularity_all_time", kind="popularity_all_time", replay=False)])
    tr = learner.trainers["popularity_all_time"]
    assert tr.model is None and tr.opt is None and tr.replay is None
    rows = [(s, f"u{s}", "hit", "click") for s in range(3)] + [
        (10, "u9", "meh", "click"),
        (11, "u8", "miss", "dismiss"),
    ]
    learner.learn(events(rows))
    now = T0 + 11 + 10 * cfg.learner.counter_half_life_s  # ten half-lives later: nothing decays
    _ids, s = learner.score("anyone", ["hit", "meh", "miss", "new"], now=now)
    assert s.tolist() == [3.0, 1.0, 0.0, 0.0]


def test_drift_alarm_boosts_learning_and_favours_recent_replay(cfg: Config) -> None:
    feat = Featurizer(cfg)
    tr = Trainer(default_variant(cfg), cfg)
    assert tr._replay_strategy() == ("recency", cfg.learner.replay_half_life_events)
    seq = 1
    for step in range(10):  # confident, right: a low loss (one detector observation per 512 examples)
        b = batch(feat, pattern(128, start=128 * step), seq)
        seq += len(b)
        tr.learn(b, feat, np.where(b.labels > 0.5, 0.99, 0.01))
        feat.update(b)
    assert tr.alarms == [] and tr.boost_left == 0
    b = batch(feat, pattern(128, start=2000, flip=True), seq)
    wrong = np.where(b.labels > 0.5, 1e-4, 1 - 1e-4)  # confident and wrong: a jump in loss
    tr.learn(b, feat, wrong, now=123.0)
    assert len(tr.alarms) == 1
    alarm = tr.alarms[0]
    assert alarm["detector"] == "page_hinkley" and alarm["model"] == "rtrec" and alarm["wall_time"] == 123.0
    assert alarm["stat"] > cfg.learner.drift_threshold
    pos = alarm["examples"] - 10 * 512
    assert 0 <= pos < len(b) and alarm["seq"] == int(b.seq[pos]) and alarm["ts"] == float(b.ts[pos])
    assert tr.boost_left == cfg.learner.drift_boost_events - len(b)
    strategy, half_life = tr._replay_strategy()
    assert strategy == "recency" and half_life is not None and half_life < cfg.learner.replay_half_life_events


def test_learner_raises_a_drift_alarm_when_a_taste_flips(cfg: Config) -> None:
    learner = OnlineLearner(cfg)
    learner.learn(events(pattern(1500)))  # the detector sees one observation per 512 examples
    before = len(learner.drift_alarms)
    flip_seq = learner.last_seq
    learner.learn(events(pattern(300, start=1500, flip=True), flip_seq + 1))
    alarms = learner.drift_alarms[before:]
    assert alarms, "no alarm after every user's taste flipped"
    assert flip_seq < alarms[0]["seq"] <= flip_seq + 2 * 512
    stats = learner.stats()
    assert stats["drift"]["alarms"] and stats["drift"]["boost_left"] > 0
    assert stats["replay"]["strategy"] == "recency"


def _scored_batch(rng: np.random.Generator, n: int, rate: float, informative: bool) -> tuple[Batch, np.ndarray]:
    labels = (rng.random(n) < rate).astype(np.float32)
    probs = np.where(labels > 0, 0.7, 0.3) if informative else np.full(n, rate)
    probs = np.clip(probs + rng.normal(0, 0.02, n), 0.01, 0.99)
    z = np.zeros(n, dtype=np.int64)
    b = Batch(
        indices=z,
        offsets=np.arange(n + 1, dtype=np.int64),
        dense=np.zeros((n, 1), np.float32),
        item_idx=z,
        user_idx=z,
        labels=labels,
        weights=np.ones(n, np.float32),
        ts=np.arange(n, dtype=np.float64),
        item_n=z,
        user_n=z,
        seq=np.arange(n, dtype=np.int64),
    )
    return b, probs


def test_drift_alarm_follows_ranking_quality_not_the_click_rate() -> None:
    """After the shift the click rate falls, so raw log loss falls too; the alarm must still fire."""
    rng = np.random.default_rng(0)
    tr = Trainer(Variant("lr", kind="lr"), load_config(overrides={"text": {"enabled": False}}))
    before = [_scored_batch(rng, 512, 0.5, informative=True) for _ in range(40)]
    after = [_scored_batch(rng, 512, 0.05, informative=False) for _ in range(10)]
    for b, p in before:
        tr._watch_drift(b, p, now=0.0)
    assert tr.alarms == []
    for b, p in after:
        tr._watch_drift(b, p, now=0.0)
    assert len(tr.alarms) >= 1
    assert tr.boost_left > 0
    mean_ll = [
        float(-(b.labels * np.log(p) + (1 - b.labels) * np.log(1 - p)).mean()) for b, p in (before[-1], after[0])
    ]
    assert mean_ll[1] < mean_ll[0]  # the raw log loss went down across the shift


def test_drift_observations_do_not_depend_on_the_batch_size(cfg: Config) -> None:
    # The daemon learns in small batches, replay in large ones: the detector must see the same
    # stream of observations (one per DRIFT_ROWS examples) either way.
    from rtrec.learn.trainer import DRIFT_ROWS

    stream = events(pattern(1500) + pattern(300, start=1500, flip=True))
    seen = {}
    for size in (16, 1024):
        learner = OnlineLearner(cfg)
        observed: list[float] = []
        tr = learner.trainers[learner.main]
        update = tr.drift.update
        tr.drift.update = lambda x, _u=update, _o=observed: (_o.append(x), _u(x))[1]  # type: ignore[method-assign]
        for start in range(0, stream.num_rows, size):
            learner.learn(stream.slice(start, size))
        seen[size] = (observed, [a["seq"] for a in learner.drift_alarms])
    assert len(seen[16][0]) == len(seen[1024][0]) == stream.num_rows // DRIFT_ROWS
    assert seen[16][1] and seen[16][1] == seen[1024][1]
