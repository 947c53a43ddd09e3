"""Tests for rtrec.events.labels: the label policy, impressions, late and missing positives."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from rtrec.config import LabelsConfig
from rtrec.errors import InvalidInputError
from rtrec.events import EVENT_SCHEMA, EXAMPLE_SCHEMA, Labeler

W = 1800  # default window, seconds


def batch(*events: dict[str, Any], start_seq: int = 1) -> pa.Table:
    rows = []
    for k, e in enumerate(events):
        rows.append(
            {
                "seq": start_seq + k,
                "event_id": e.get("event_id", f"e{start_seq + k}"),
                "ts": int(e["t"] * 1_000_000),
                "user_id": e.get("user", "u"),
                "item_id": e.get("item", "i"),
                "event_type": e["type"],
                "value": e.get("value"),
                "request_id": e.get("req"),
                "propensity": e.get("prop"),
                "context": e.get("ctx"),
            }
        )
    cols = {f.name: [r[f.name] for r in rows] for f in EVENT_SCHEMA}
    arrays = [
        pa.array(cols["ts"], pa.int64()).cast(pa.timestamp("us")) if f.name == "ts" else pa.array(cols[f.name], f.type)
        for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def summary(t: pa.Table) -> list[tuple[int, float, float, str]]:
    return list(
        zip(
            t.column("seq").to_pylist(),
            t.column("label").to_pylist(),
            t.column("weight").to_pylist(),
            t.column("origin").to_pylist(),
            strict=True,
        )
    )


def test_event_types_weights_and_ratings() -> None:
    lab = Labeler(LabelsConfig())
    out = lab.process(
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
    assert out.schema.equals(EXAMPLE_SCHEMA)
    assert summary(out) == [
        (1, 1.0, 1.0, "event"),
        (2, 1.0, 4.0, "event"),
        (3, 0.0, 1.0, "event"),
        (4, 0.0, 0.5, "event"),
        (5, 1.0, 1.0, "event"),
        (6, 0.0, 1.0, "event"),
        (7, 1.0, 2.0, "event"),
        (8, 1.0, 2.0, "event"),
    ]
    assert lab.pending == 0


def test_configured_policy_changes_labels() -> None:
    cfg = LabelsConfig(positive={"purchase": 10.0}, negative={}, rating_threshold=3.0, rating_weight=0.5)
    out = Labeler(cfg).process(
        batch({"t": 0, "type": "click"}, {"t": 1, "type": "purchase"}, {"t": 2, "type": "rating", "value": 3.0})
    )
    assert summary(out) == [(2, 1.0, 10.0, "event"), (3, 1.0, 0.5, "event")]


def test_impression_resolved_by_positive_in_time() -> None:
    lab = Labeler()
    out = lab.process(
        batch(
            {"t": 0, "type": "impression", "req": "r1", "prop": 0.2, "ctx": '{"position": 2}'},
            {"t": 60, "type": "purchase", "req": "r1"},
        )
    )
    assert summary(out) == [(1, 1.0, 4.0, "impression")]  # the impression's row, the positive's weight
    assert out.column("propensity").to_pylist() == [0.2]
    assert out.column("context").to_pylist() == ['{"position": 2}']
    assert lab.pending == 0


def test_impression_without_positive_becomes_negative_after_window() -> None:
    lab = Labeler()
    out = lab.process(batch({"t": 0, "type": "impression"}, {"t": W - 1, "type": "click", "item": "other"}))
    assert summary(out) == [(2, 1.0, 1.0, "event")]
    assert lab.pending == 1
    # Another user's event moves the watermark past the deadline.
    out = lab.process(batch({"t": W + 1, "type": "click", "user": "v", "item": "x"}, start_seq=3))
    assert summary(out) == [(1, 0.0, 1.0, "impression"), (3, 1.0, 1.0, "event")]
    assert lab.pending == 0


def test_late_positive_is_emitted_as_correction() -> None:
    lab = Labeler()
    lab.process(batch({"t": 0, "type": "impression", "req": "r"}, {"t": W + 5, "type": "click", "user": "other"}))
    out = lab.process(batch({"t": W + 10, "type": "click", "req": "r"}, start_seq=3))
    assert summary(out) == [(1, 1.0, 1.0, "late")]  # the impression's features, now labelled positive
    # A second click finds nothing left to correct and is an ordinary positive.
    out = lab.process(batch({"t": W + 20, "type": "click", "req": "r"}, start_seq=4))
    assert summary(out) == [(4, 1.0, 1.0, "event")]


def test_positive_after_deadline_in_same_batch_is_late() -> None:
    lab = Labeler()
    out = lab.process(batch({"t": 0, "type": "impression"}, {"t": W + 1, "type": "click"}))
    assert summary(out) == [(1, 0.0, 1.0, "impression"), (1, 1.0, 1.0, "late")]


def test_negative_event_resolves_impression_as_negative() -> None:
    lab = Labeler()
    out = lab.process(batch({"t": 0, "type": "impression"}, {"t": 5, "type": "skip"}))
    assert summary(out) == [(1, 0.0, 0.5, "impression")]
    assert lab.pending == 0


def test_request_id_must_match_when_both_carry_one() -> None:
    lab = Labeler()
    out = lab.process(
        batch(
            {"t": 0, "type": "impression", "req": "r1"},
            {"t": 1, "type": "impression", "req": "r2"},
            {"t": 2, "type": "click", "req": "r1"},
        )
    )
    assert summary(out) == [(1, 1.0, 1.0, "impression")]
    assert lab.pending == 1  # r2 still waits
    out = lab.process(batch({"t": 3, "type": "click"}, start_seq=4))  # no request id: matches r2
    assert summary(out) == [(2, 1.0, 1.0, "impression")]


def test_other_items_and_users_do_not_resolve() -> None:
    lab = Labeler()
    out = lab.process(
        batch(
            {"t": 0, "type": "impression"},
            {"t": 1, "type": "click", "item": "j"},
            {"t": 2, "type": "click", "user": "v"},
        )
    )
    assert summary(out) == [(2, 1.0, 1.0, "event"), (3, 1.0, 1.0, "event")]
    assert lab.pending == 1


def test_expire_and_drain() -> None:
    lab = Labeler()
    lab.process(batch({"t": 0, "type": "impression", "item": "a"}, {"t": 100, "type": "impression", "item": "b"}))
    assert lab.expire().num_rows == 0  # the watermark (100) is before both deadlines
    out = lab.expire(now=W + 50)
    assert summary(out) == [(1, 0.0, 1.0, "impression")]
    out = lab.drain()
    assert summary(out) == [(2, 0.0, 1.0, "impression")]
    assert lab.pending == 0
    # The positive for the drained impression comes afterwards: a late correction.
    out = lab.process(batch({"t": 200, "type": "click", "item": "b"}, start_seq=3))
    assert summary(out) == [(2, 1.0, 1.0, "late")]


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
    whole = Labeler()
    ref = pa.concat_tables([whole.process(stream), whole.drain()])
    for size in (1, 7, 64):
        lab = Labeler()
        parts = [lab.process(stream.slice(i, size)) for i in range(0, stream.num_rows, size)]
        got = pa.concat_tables([*parts, lab.drain()])
        assert got.equals(ref), size


def test_every_impression_yields_exactly_one_example_or_late_pair() -> None:
    stream = _stream(400, 5)
    lab = Labeler()
    out = pa.concat_tables([lab.process(stream), lab.drain()])
    n_imp = sum(1 for t in stream.column("event_type").to_pylist() if t == "impression")
    origins = out.column("origin").to_pylist()
    # Each impression is resolved once (origin "impression"); "late" rows are extra corrections.
    assert origins.count("impression") == n_imp
    assert lab.pending == 0


def test_state_dict_round_trip() -> None:
    stream = _stream(200, 3)
    ref_lab = Labeler()
    ref = pa.concat_tables([ref_lab.process(stream), ref_lab.drain()])
    lab = Labeler()
    first = lab.process(stream.slice(0, 120))
    state = pickle.loads(pickle.dumps(lab.state_dict()))
    restored = Labeler()
    restored.load_state_dict(state)
    assert restored.pending == lab.pending
    rest = pa.concat_tables([restored.process(stream.slice(120)), restored.drain()])
    assert pa.concat_tables([first, rest]).equals(ref)


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
    out = Labeler().process(table)
    values = table.column("value").to_numpy()
    assert out.num_rows == n
    assert np.array_equal(out.column("label").to_numpy(), (values >= 4.0).astype(np.float32))
    assert set(out.column("origin").to_pylist()) == {"event"}


def test_bad_batches_are_errors() -> None:
    lab = Labeler()
    with pytest.raises(InvalidInputError, match="missing column"):
        lab.process(pa.table({"seq": [1]}))
    bad = batch({"t": 0, "type": "click"}).set_column(5, "event_type", pa.array(["clik"]))
    with pytest.raises(InvalidInputError, match="event_type: unknown value 'clik'"):
        lab.process(bad)


def test_accepts_tail_batches(tmp_path: Any) -> None:
    from rtrec.events import EventLog

    with EventLog.open(tmp_path / "x.duckdb") as log:
        log.ingest(
            [
                {"ts": 0, "user_id": "u", "item_id": "i", "event_type": "impression", "request_id": "r"},
                {"ts": 30, "user_id": "u", "item_id": "i", "event_type": "click", "request_id": "r"},
            ]
        )
        lab = Labeler()
        out = pa.concat_tables([lab.process(b) for b in log.tail(0)])
    assert summary(out) == [(1, 1.0, 1.0, "impression")]
