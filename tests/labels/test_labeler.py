"""Tests for rtrec.labels.labeler: the label policy, pending impressions, late labels and follow-ups."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from rtrec.config import LabelsConfig
from rtrec.errors import InvalidInputError
from rtrec.events import EVENT_SCHEMA
from rtrec.labels import Labeler
from tests.labels.helpers import Reader, batch

W = LabelsConfig().impression_window_s  # default window, seconds
LATE = LabelsConfig().late_window_s  # default late window, seconds


def test_event_types_weights_and_ratings() -> None:
    r = Reader(Labeler(LabelsConfig()))
    out = r.process(
        batch(
            {"t": 0, "type": "click"},
            {"t": 1, "type": "purchase"},
            {"t": 2, "type": "dismiss"},
            {"t": 3, "type": "skip"},
            {"t": 4, "type": "rating", "value": 4.0},
            {"t": 5, "type": "rating", "value": 3.5},
            {"t": 6, "type": "favorite"},
            {"t": 7, "type": "add_to_cart"},
        )
    )
    assert out == [
        (1, 1.0, 1.0, "event"),
        (2, 1.0, 4.0, "event"),
        (3, 0.0, 1.0, "event"),
        (4, 0.0, 0.5, "event"),
        (5, 1.0, 1.0, "event"),
        (6, 0.0, 1.0, "event"),
        (7, 1.0, 2.0, "event"),
        (8, 1.0, 2.0, "event"),
    ]
    assert r.lab.pending == 0


def test_configured_policy_changes_labels() -> None:
    cfg = LabelsConfig(positive={"purchase": 10.0}, negative={}, rating_threshold=3.0, rating_weight=0.5)
    out = Reader(Labeler(cfg)).process(
        batch({"t": 0, "type": "click"}, {"t": 1, "type": "purchase"}, {"t": 2, "type": "rating", "value": 3.0})
    )
    assert out == [(2, 1.0, 10.0, "event"), (3, 1.0, 0.5, "event")]


def test_labelled_events_are_read_where_they_arrive_and_resolve_just_after() -> None:
    lab = Labeler()
    t = batch({"t": 0, "type": "click"}, {"t": 1, "type": "impression"}, {"t": 2, "type": "rating", "value": 5.0})
    plan = lab.plan(t, np.array([0, 0, 0]), np.array([0, 1, 2]))
    assert plan.reads.tolist() == [0, 1, 2]
    assert plan.read_slot[0] == -1 and plan.read_slot[1] >= 0 and plan.read_slot[2] == -1
    # Order keys: read of row r at 2r + 1, its own label at 2r + 2.
    assert plan.ex_row.tolist() == [0, 2] and plan.ex_order.tolist() == [2, 6]


def test_impression_resolved_by_positive_in_time() -> None:
    r = Reader()
    out = r.process(
        batch(
            {"t": 0, "type": "impression", "req": "r1", "prop": 0.2, "ctx": '{"position": 2}'},
            {"t": 60, "type": "purchase", "req": "r1"},
        )
    )
    assert out == [(1, 1.0, 4.0, "impression")]  # the impression's example, the positive's weight
    assert r.lab.pending == 0


def test_impression_without_positive_becomes_negative_after_window() -> None:
    r = Reader()
    out = r.process(batch({"t": 0, "type": "impression"}, {"t": W - 1, "type": "click", "item": "other"}))
    assert out == [(2, 1.0, 1.0, "event")]
    assert r.lab.pending == 1
    # Another user's event moves the watermark past the deadline.
    out = r.process(batch({"t": W + 1, "type": "click", "user": "v", "item": "x"}, start_seq=3))
    assert out == [(1, 0.0, 1.0, "impression"), (3, 1.0, 1.0, "event")]
    assert r.lab.pending == 0


def test_expiry_is_ordered_before_the_row_that_moved_the_watermark() -> None:
    lab = Labeler()
    t = batch({"t": 0, "type": "impression"}, {"t": W + 1, "type": "click", "user": "v", "item": "x"})
    plan = lab.plan(t, np.array([0, 1]), np.array([0, 1]))
    # The expiry (key 2 * 1) comes before the click's read (2 * 1 + 1) and its label (2 * 1 + 2).
    assert plan.ex_order.tolist() == [2, 4] and plan.ex_slot[0] >= 0 and plan.ex_row.tolist() == [-1, 1]


def test_late_positive_is_learned_from_the_impression_then_followups() -> None:
    r = Reader()
    r.process(batch({"t": 0, "type": "impression", "req": "r"}, {"t": W + 5, "type": "click", "user": "other"}))
    out = r.process(batch({"t": W + 10, "type": "click", "req": "r"}, start_seq=3))
    assert out == [(1, 1.0, 1.0, "late")]  # the impression's features, now labelled positive
    # More feedback on the same showing is its outcome too, learned from the impression.
    out = r.process(batch({"t": W + 20, "type": "purchase", "req": "r"}, start_seq=4))
    assert out == [(1, 1.0, 4.0, "followup")]


def test_feedback_after_a_positive_is_a_followup_of_the_impression() -> None:
    r = Reader()
    out = r.process(
        batch(
            {"t": 0, "type": "impression", "req": "r"},
            {"t": 5, "type": "click", "req": "r"},
            {"t": 9, "type": "add_to_cart", "req": "r"},
        )
    )
    assert out == [(1, 1.0, 1.0, "impression"), (1, 1.0, 2.0, "followup")]


def test_snapshots_are_dropped_after_the_late_window() -> None:
    r = Reader()
    r.process(batch({"t": 0, "type": "impression", "req": "r"}))
    r.process(batch({"t": W + LATE + 1, "type": "click", "user": "other"}, start_seq=2))
    assert r.lab.pending == 0 and r.lab.retained == 0 and r.lab.store.live == 0
    out = r.process(batch({"t": W + LATE + 2, "type": "click", "req": "r"}, start_seq=3))
    assert out == [(3, 1.0, 1.0, "event")]  # too late: an ordinary positive, read as it arrives


def test_without_a_late_window_snapshots_go_at_once() -> None:
    r = Reader(Labeler(LabelsConfig(late_window_s=0.0)))
    out = r.process(batch({"t": 0, "type": "impression"}, {"t": 5, "type": "click"}, {"t": 6, "type": "purchase"}))
    assert out == [(1, 1.0, 1.0, "impression"), (3, 1.0, 4.0, "event")]
    assert r.lab.store.live == 0


def test_positive_after_deadline_in_same_batch_is_late() -> None:
    r = Reader()
    out = r.process(batch({"t": 0, "type": "impression"}, {"t": W + 1, "type": "click"}))
    assert out == [(1, 0.0, 1.0, "impression"), (1, 1.0, 1.0, "late")]


def test_negative_event_resolves_impression_as_negative() -> None:
    r = Reader()
    out = r.process(batch({"t": 0, "type": "impression"}, {"t": 5, "type": "skip"}))
    assert out == [(1, 0.0, 0.5, "impression")]
    assert r.lab.pending == 0


def test_request_id_must_match_when_both_carry_one() -> None:
    r = Reader()
    out = r.process(
        batch(
            {"t": 0, "type": "impression", "req": "r1"},
            {"t": 1, "type": "impression", "req": "r2"},
            {"t": 2, "type": "click", "req": "r1"},
        )
    )
    assert out == [(1, 1.0, 1.0, "impression")]
    assert r.lab.pending == 1  # r2 still waits
    out = r.process(batch({"t": 3, "type": "dismiss", "req": "r3"}, start_seq=4))  # another request: no match
    assert out == [(4, 0.0, 1.0, "event")]
    out = r.process(batch({"t": 3, "type": "click"}, start_seq=5))  # no request id: the newest showing
    assert out == [(2, 1.0, 1.0, "impression")]


def test_other_items_and_users_do_not_resolve() -> None:
    r = Reader()
    out = r.process(
        batch(
            {"t": 0, "type": "impression"},
            {"t": 1, "type": "click", "item": "j"},
            {"t": 2, "type": "click", "user": "v"},
        )
    )
    assert out == [(2, 1.0, 1.0, "event"), (3, 1.0, 1.0, "event")]
    assert r.lab.pending == 1


def test_expire_and_drain() -> None:
    r = Reader()
    r.process(batch({"t": 0, "type": "impression", "item": "a"}, {"t": 100, "type": "impression", "item": "b"}))
    assert r.expire() == []  # the watermark (100) is before both deadlines
    assert r.expire(now=W + 50) == [(1, 0.0, 1.0, "impression")]
    assert r.drain() == [(2, 0.0, 1.0, "impression")]
    assert r.lab.pending == 0
    # The positive for the drained impression comes afterwards: a late correction.
    out = r.process(batch({"t": 200, "type": "click", "item": "b"}, start_seq=3))
    assert out == [(2, 1.0, 1.0, "late")]


def _stream(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    events = []
    t = 0.0
    for k in range(n):
        t += float(rng.exponential(120))
        kind = rng.choice(["impression", "impression", "click", "dismiss", "rating", "purchase"])
        e: dict[str, Any] = {
            "t": t,
            "type": str(kind),
            "user": f"u{rng.integers(3)}",
            "item": f"i{rng.integers(4)}",
            "event_id": f"e{k}",
        }
        if rng.random() < 0.5:
            e["req"] = f"r{rng.integers(3)}"
        if kind == "rating":
            e["value"] = float(rng.integers(1, 6))
        events.append(e)
    return batch(*events)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batching_does_not_change_examples(seed: int) -> None:
    stream = _stream(300, seed)
    whole = Reader()
    ref = whole.process(stream) + whole.drain()
    for size in (1, 7, 64):
        r = Reader()
        got = [row for i in range(0, stream.num_rows, size) for row in r.process(stream.slice(i, size))]
        assert got + r.drain() == ref, size


def test_every_impression_yields_exactly_one_example_besides_corrections() -> None:
    stream = _stream(400, 5)
    r = Reader()
    out = r.process(stream) + r.drain()
    n_imp = sum(1 for t in stream.column("event_type").to_pylist() if t == "impression")
    origins = [o for *_, o in out]
    # Each impression is resolved once (origin "impression"); "late" and "followup" rows come on top.
    assert origins.count("impression") == n_imp
    assert r.lab.pending == 0


def test_state_dict_round_trip() -> None:
    stream = _stream(200, 3)
    ref_r = Reader()
    ref = ref_r.process(stream) + ref_r.drain()
    r = Reader()
    first = r.process(stream.slice(0, 120))
    state = pickle.loads(pickle.dumps(r.lab.state_dict()))
    restored = Labeler()
    restored.load_state_dict(state)
    assert restored.pending == r.lab.pending
    r.lab = restored
    assert first + r.process(stream.slice(120)) + r.drain() == ref


def test_fast_path_for_ratings_only() -> None:
    n = 10_000
    rng = np.random.default_rng(0)
    table = pa.Table.from_arrays(
        [
            pa.array(np.arange(1, n + 1), pa.int64()),
            pa.array([f"e{k}" for k in range(n)]),
            pa.array(np.arange(n, dtype=np.int64) * 1_000_000).cast(pa.timestamp("us")),
            pa.array([f"u{k % 50}" for k in range(n)]),
            pa.array([f"i{k % 70}" for k in range(n)]),
            pa.array(["rating"] * n),
            pa.array(rng.integers(1, 11, n) / 2.0),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.float64()),
            pa.nulls(n, pa.string()),
        ],
        schema=EVENT_SCHEMA,
    )
    plan = Labeler().plan(table, np.arange(n) % 50, np.arange(n) % 70)
    values = table.column("value").to_numpy()
    assert plan.n_examples == n and np.array_equal(plan.reads, np.arange(n))
    assert np.array_equal(plan.ex_label, (values >= 4.0).astype(np.float32))
    assert set(plan.ex_origin.tolist()) == {0}


def test_bad_batches_are_errors() -> None:
    lab = Labeler()
    with pytest.raises(InvalidInputError, match="missing column"):
        lab.plan(pa.table({"seq": [1]}), np.zeros(1, np.int64), np.zeros(1, np.int64))
    bad = batch({"t": 0, "type": "click"}).set_column(5, "event_type", pa.array(["clik"]))
    with pytest.raises(InvalidInputError, match="event_type: unknown value 'clik'"):
        Reader(lab).process(bad)


def test_accepts_tail_batches(tmp_path: Any) -> None:
    from rtrec.events import EventLog

    with EventLog.open(tmp_path / "x.duckdb") as log:
        log.ingest(
            [
                {"ts": 0, "user_id": "u", "item_id": "i", "event_type": "impression", "request_id": "r"},
                {"ts": 30, "user_id": "u", "item_id": "i", "event_type": "click", "request_id": "r"},
            ]
        )
        r = Reader()
        out = [row for b in log.tail(0) for row in r.process(b)]
    assert out == [(1, 1.0, 1.0, "impression")]


def test_the_snapshot_cap_drops_kept_ones_then_expires_the_oldest_early() -> None:
    r = Reader(Labeler(LabelsConfig(max_snapshots=3)))
    out = r.process(batch(*({"t": k, "type": "impression", "item": f"i{k}"} for k in range(3))))
    assert out == [] and r.lab.pending == 3
    r.process(batch({"t": 3, "type": "click", "item": "i0"}, start_seq=4))  # i0 answered, kept for follow-ups
    assert (r.lab.pending, r.lab.retained) == (2, 1)
    out = r.process(batch({"t": 4, "type": "impression", "item": "i4"}, start_seq=5))
    assert out == [] and (r.lab.pending, r.lab.retained, r.lab.dropped) == (3, 0, 1)
    out = r.process(batch({"t": 5, "type": "impression", "item": "i5"}, start_seq=6))
    # Full of pending impressions: the oldest (i1) is learned as a negative now, and not kept.
    assert out == [(2, 0.0, 1.0, "impression")]
    assert (r.lab.pending, r.lab.retained, r.lab.expired_early) == (3, 0, 1)
    assert r.lab.store.live == 3
