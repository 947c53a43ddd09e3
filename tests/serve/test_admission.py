"""Admission control looks ahead: a batch is refused when learning it and what waits would take
longer than ``serve.max_lag_s`` at the rate the learner sustains, before the lag passes the bound."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from rtrec.config import load_config
from rtrec.errors import Overloaded
from rtrec.serve.metrics import Meters
from rtrec.serve.worker import ADMIT_WAIT_S, MAX_STEP_FACTOR, STEP_LAG_SHARE, InFlight, LearnerWorker


class _Log:
    def last_seq(self) -> int:
        return 0


def _worker(**serve: object) -> tuple[LearnerWorker, SimpleNamespace]:
    cfg = load_config(overrides={"text": {"enabled": False}, "serve": {"max_lag_s": 0.5, **serve}})
    learner = SimpleNamespace(last_seq=0, yield_point=None)
    w = LearnerWorker(cfg, learner, _Log(), Meters(), threading.RLock(), InFlight())  # type: ignore[arg-type]
    return w, learner


def test_without_a_measured_rate_only_the_present_lag_counts() -> None:
    w, _ = _worker()
    assert w.capacity() is None
    w.committed(400, 400)
    assert w.behind(10_000)[0] is False  # fresh events, and no rate to look ahead with


def test_a_batch_that_would_take_the_lag_past_the_bound_is_refused_before_it_does() -> None:
    w, learner = _worker()
    w._count_busy(1000, 1.0)  # the learner sustains 1,000 events/s
    assert w.capacity() == pytest.approx(1000.0)
    w.committed(400, 400)  # 0.4 s of work waits
    behind, lag_events, _ = w.behind(0)
    assert (behind, lag_events) == (False, 400)
    assert w.behind(50)[0] is False  # 0.45 s
    assert w.behind(200)[0] is True  # 0.6 s: over max_lag_s = 0.5
    learner.last_seq = 400  # learned: nothing waits, so any batch is taken
    assert w.behind(5_000)[0] is False


def test_the_rate_follows_the_recent_batches() -> None:
    w, _ = _worker()
    w._count_busy(1000, 1.0)
    for _ in range(50):
        w._count_busy(1000, 0.1)  # the learner got faster: 10,000 events/s
    rate = w.capacity()
    assert rate is not None and 9_000 < rate <= 10_000


def test_the_event_bound_still_applies() -> None:
    w, _ = _worker(max_lag_events=100)
    w._count_busy(1_000_000, 1.0)
    w.committed(150, 150)
    assert w.behind(0)[0] is True


def test_a_batch_waits_for_room_and_is_taken_once_the_learner_catches_up() -> None:
    w, learner = _worker()
    w._count_busy(1000, 1.0)
    w.committed(450, 450)

    def learn_later() -> None:
        time.sleep(0.2)
        learner.last_seq = 450
        w._learned_batch(450)

    t = threading.Thread(target=learn_later)
    t.start()
    t0 = time.monotonic()
    w.admit_or_refuse(200, t0)  # 0.65 s of work: it waits for the learner rather than refusing
    waited = time.monotonic() - t0
    t.join()
    assert 0.1 < waited < 5.0


def test_a_batch_with_no_room_in_time_is_refused_with_retry_after() -> None:
    w, _ = _worker()
    w._count_busy(1000, 1.0)
    w.committed(450, 450)
    with pytest.raises(Overloaded) as err:
        w.admit_or_refuse(200, time.monotonic() - ADMIT_WAIT_S)  # its wait is spent already
    assert err.value.retry_after_s >= 1.0 and "450 events" in str(err.value)
    assert w.meters.throttled.value == 1
    w.admit_or_refuse(200)  # at arrival it is not refused: waiting could help


def test_arrival_refuses_at_once_only_what_waiting_could_not_help() -> None:
    w, _ = _worker()
    w._count_busy(1000, 1.0)
    w.committed(5000, 5000)  # 5 s of work waits: more than max_lag_s plus the wait
    with pytest.raises(Overloaded):
        w.admit_or_refuse(0)


def test_the_event_bound_counts_the_incoming_batch_unless_nothing_waits() -> None:
    w, learner = _worker(max_lag_events=100)
    w.committed(60, 60)
    assert w.behind(30)[0] is False
    assert w.behind(50)[0] is True
    learner.last_seq = 60
    assert w.behind(5_000)[0] is False


def test_a_learn_step_is_bounded_by_time_at_the_measured_rate() -> None:
    w, _ = _worker(max_lag_s=0.5)
    base = w.cfg.learner.batch_size
    w.committed(100_000, 100_000)  # a backlog: steps grow up to MAX_STEP_FACTOR batches
    assert w.step_size() == base * MAX_STEP_FACTOR  # no rate measured yet
    w._count_busy(80_000, 1.0)  # a fast learner: 8 batches take well under the bound
    assert w.step_size() == base * MAX_STEP_FACTOR
    for _ in range(200):
        w._count_busy(4_000, 1.0)  # 4,000 events/s: a step may take 0.25 s, 1,000 events
    assert w.step_size() == base  # never below one batch
    for _ in range(200):
        w._count_busy(12_000, 1.0)
    size = w.step_size()
    assert base < size < base * MAX_STEP_FACTOR
    assert size / w.capacity() <= w.cfg.serve.max_lag_s * STEP_LAG_SHARE + 1e-9
