"""Tests for rtrec.learn.metrics: AUC, log loss, calibration, ranking metrics and Page-Hinkley."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtrec.learn.metrics import (
    PageHinkley,
    ProgressiveMemo,
    auc,
    calibration,
    logloss,
    progressive,
    rank_metrics,
    summarise,
)


def brute_auc(y: list[int], s: list[float]) -> float:
    pos = [b for a, b in zip(y, s, strict=True) if a]
    neg = [b for a, b in zip(y, s, strict=True) if not a]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=1, max_size=60))
def test_auc_against_pairwise_count_with_ties(rows: list[tuple[bool, int]]) -> None:
    y = [int(a) for a, _ in rows]
    s = [b / 3.0 for _, b in rows]  # few distinct scores: many ties
    got = auc(np.array(y), np.array(s))
    if 0 < sum(y) < len(y):
        assert got == pytest.approx(brute_auc(y, s), abs=1e-12)
    else:
        assert got is None


def test_auc_known_values() -> None:
    assert auc(np.array([0, 1]), np.array([0.1, 0.9])) == 1.0
    assert auc(np.array([1, 0]), np.array([0.1, 0.9])) == 0.0
    assert auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    # Labels are thresholded at 0.5; scores need not be probabilities.
    assert auc(np.array([0.0, 0.7]), np.array([-3.0, 10.0])) == 1.0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.floats(0.0, 1.0), st.floats(0.1, 5.0)),
        min_size=1,
        max_size=30,
    )
)
def test_logloss_against_definition(rows: list[tuple[bool, float, float]]) -> None:
    y = np.array([float(a) for a, _, _ in rows])
    p = np.array([b for _, b, _ in rows])
    w = np.array([c for _, _, c in rows])
    clip = np.clip(p, 1e-7, 1 - 1e-7)
    terms = [-(math.log(q) if a else math.log(1 - q)) for a, q in zip(y, clip, strict=True)]
    assert logloss(y, p) == pytest.approx(sum(terms) / len(terms), rel=1e-9)
    assert logloss(y, p, w) == pytest.approx(sum(t * c for t, c in zip(terms, w, strict=True)) / w.sum(), rel=1e-9)
    assert math.isfinite(logloss(y, p) or 0.0)


def test_logloss_and_calibration_edges() -> None:
    assert logloss(np.zeros(0), np.zeros(0)) is None
    assert logloss(np.array([1.0]), np.array([0.5])) == pytest.approx(math.log(2))
    assert logloss(np.array([1.0]), np.array([0.0])) == pytest.approx(-math.log(1e-7))  # clipped, finite
    assert calibration(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == 1.0
    assert calibration(np.array([1.0, 0.0, 0.0, 0.0]), np.array([0.5] * 4)) == 2.0
    assert calibration(np.zeros(3), np.array([0.2] * 3)) is None
    s = summarise(np.array([0.0, 1.0]), np.array([0.2, 0.6]), scores=np.array([5.0, 1.0]))
    assert s == {
        "n": 2.0,
        "auc": 0.0,
        "logloss": pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2),
        "calibration": 0.8,
    }
    assert summarise(np.array([0.0, 1.0]), None, scores=np.array([0.0, 1.0]))["logloss"] is None


def test_rank_metrics() -> None:
    assert rank_metrics([]) == (None, None)
    hr, ndcg = rank_metrics([0, 1, 9, 10, 50])
    assert hr == pytest.approx(3 / 5)
    assert ndcg == pytest.approx((1.0 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)
    assert rank_metrics([0, 0]) == (1.0, 1.0)
    assert rank_metrics([3], k=3) == (0.0, 0.0)
    assert rank_metrics([2], k=3) == (1.0, pytest.approx(0.5))


# -- Page-Hinkley -----------------------------------------------------------------------------------


def test_page_hinkley_stays_quiet_on_a_stationary_stream() -> None:
    rng = np.random.default_rng(0)
    ph = PageHinkley(delta=0.05, threshold=20.0)
    assert ph.update_many(rng.normal(0.5, 0.2, 20_000)) == []
    assert ph.stat < 20.0 and ph.n == 20_000


def test_page_hinkley_alarms_soon_after_a_mean_jump() -> None:
    rng = np.random.default_rng(1)
    ph = PageHinkley(delta=0.05, threshold=20.0)
    before = rng.normal(0.4, 0.2, 2_000)
    after = rng.normal(1.4, 0.2, 2_000)
    alarms = ph.update_many(np.concatenate([before, after]))
    assert alarms, "no alarm after the jump"
    assert 2_000 <= alarms[0] < 2_000 + 60
    # After the alarm it resets and adapts to the new level: no alarm storm.
    assert len(alarms) <= 2


def test_page_hinkley_ignores_a_decrease() -> None:
    rng = np.random.default_rng(2)
    ph = PageHinkley(delta=0.05, threshold=20.0)
    assert ph.update_many(np.concatenate([rng.normal(1.4, 0.2, 2_000), rng.normal(0.4, 0.2, 2_000)])) == []


def test_page_hinkley_needs_min_samples() -> None:
    ph = PageHinkley(delta=0.0, threshold=0.5, min_samples=30)
    xs = np.r_[np.zeros(10), np.full(10, 5.0)]
    assert ph.update_many(xs) == []
    ph2 = PageHinkley(delta=0.0, threshold=0.5, min_samples=5)
    assert ph2.update_many(xs) == [10]


def test_page_hinkley_does_not_judge_its_warm_up() -> None:
    """A cold model's first observations move a lot; the first eligible one must not alarm on them."""
    xs = np.r_[np.zeros(4), np.full(6, 3.0), np.full(40, 1.8)]  # the warm-up's mean is 1.8
    assert PageHinkley(delta=0.0, threshold=0.5, min_samples=10).update_many(xs) == []
    # A real rise after the warm-up still raises one.
    assert PageHinkley(delta=0.0, threshold=0.5, min_samples=10).update_many(np.r_[xs, np.full(5, 3.0)]) == [50]


@settings(max_examples=100, deadline=None)
@given(
    xs=st.lists(st.floats(0.0, 3.0) | st.just(math.nan) | st.just(math.inf), max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=5),
    threshold=st.sampled_from([0.5, 2.0, 10.0]),
)
def test_update_many_equals_repeated_update(xs: list[float], cuts: list[int], threshold: float) -> None:
    one = PageHinkley(delta=0.01, threshold=threshold, min_samples=5)
    many = PageHinkley(delta=0.01, threshold=threshold, min_samples=5)
    expected = [k for k, x in enumerate(xs) if one.update(x)]
    arr = np.array(xs, dtype=np.float64)
    bounds = [0, *sorted(min(c, len(xs)) for c in cuts), len(xs)]
    got = [lo + p for lo, hi in itertools.pairwise(bounds) for p in many.update_many(arr[lo:hi])]
    # Positions index the input, non-finite observations included (they are skipped).
    assert got == expected
    s1, s2 = one.state_dict(), many.state_dict()
    assert s1["n"] == s2["n"]
    for key in ("mean", "cum", "min_cum"):
        assert s1[key] == pytest.approx(s2[key], rel=1e-9, abs=1e-9)


def test_page_hinkley_state_round_trip() -> None:
    a = PageHinkley(0.01, 5.0)
    a.update_many(np.linspace(0, 1, 50))
    b = PageHinkley(0.01, 5.0)
    b.load_state_dict(a.state_dict())
    xs = np.r_[np.full(40, 0.5), np.full(40, 3.0)]
    assert a.update_many(xs) == b.update_many(xs)
    assert a.stat == b.stat


def _history(n_batches: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n_batches):
        p = rng.random(50).astype(np.float32)
        out.append({"wall": 1_000_000.0 + 7.0 * b, "labels": (rng.random(50) < p).astype(np.float32), "probs": p})
    return out


def test_kept_minutes_give_the_same_figures_and_are_recomputed_when_their_batches_change() -> None:
    history = _history(40)  # 280 s: five minutes
    now = history[-1]["wall"]
    minutes: dict = {}
    first = progressive(history, now, 3600.0, minutes)
    assert first == progressive(history, now, 3600.0)
    closed = first["per_minute"][1]
    again = progressive(history, now, 3600.0, minutes)
    assert again["per_minute"][1] is closed  # kept, not recomputed
    # The history drops its oldest batches (a bounded deque) and learns new ones.
    moved = [*history[5:], *_history(46, seed=1)[40:]]
    later = progressive(moved, moved[-1]["wall"], 3600.0, minutes)
    assert later == progressive(moved, moved[-1]["wall"], 3600.0)
    assert set(minutes) == {m["minute"] // 60 for m in later["per_minute"]}


def test_the_memo_shares_one_answer_for_its_ttl_then_reads_the_history_again() -> None:
    history = _history(10)
    now = history[-1]["wall"]
    memo = ProgressiveMemo(ttl_s=1.0)
    a = memo(history, now, 3600.0)
    assert memo([*history, *_history(11, seed=2)[10:]], now + 0.5, 3600.0) is a
    b = memo([*history, *_history(11, seed=2)[10:]], now + 1.5, 3600.0)
    assert b["n"] == a["n"] + 50
