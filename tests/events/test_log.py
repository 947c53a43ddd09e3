"""Tests for rtrec.events.log: ingest, validation, idempotency, tail, items."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtrec.errors import InvalidInputError
from rtrec.events import EVENT_COLUMNS, EVENT_SCHEMA, EventLog

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def ev(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"ts": T0, "user_id": "u1", "item_id": "i1", "event_type": "click"}
    base.update(kw)
    return base


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    lg = EventLog.open(tmp_path / "db" / "rtrec.duckdb")
    yield lg
    lg.close()


def rows(log: EventLog) -> list[dict[str, Any]]:
    return [r for b in log.tail(0) for r in b.to_pylist()]


def test_open_creates_parent_and_migrations_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "rtrec.duckdb"
    with EventLog.open(path) as lg:
        cur = lg.cursor()
        versions = [r[0] for r in cur.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()]
        tables = {r[0] for r in cur.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert path.exists()
    assert versions == [1, 2, 3, 4]
    assert {"events", "rejected_events", "items", "checkpoints", "drift_alarms", "item_embeddings"} <= tables
    assert {"forget_audit", "privacy_salt", "retention_runs", "flagged_events"} <= tables
    with EventLog.open(path) as lg:  # reopening applies nothing twice
        assert lg.count_events() == 0


def test_ingest_assigns_increasing_seq_and_normalises_fields(log: EventLog) -> None:
    s = log.ingest(
        [
            ev(event_id="a", user_id=7, item_id=42),
            ev(event_id="b", ts=(T0 + 1) * 1000, event_type="rating", value=4.5),
            ev(event_id="c", ts="2024-01-01T10:00:00+02:00", context={"device": "mobile", "position": 3}),
            ev(event_id="d", ts=datetime(2024, 1, 1, 9, 0, tzinfo=UTC), propensity=0.25, request_id="r1"),
        ]
    )
    assert (s.accepted, s.duplicates, s.rejected) == (4, 0, [])
    assert (s.first_seq, s.last_seq) == (1, 4)
    got = rows(log)
    assert [r["seq"] for r in got] == [1, 2, 3, 4]
    assert got[0]["user_id"] == "7" and got[0]["item_id"] == "42"
    assert got[0]["ts"] == datetime(2023, 11, 14, 22, 13, 20)
    assert got[1]["ts"] == datetime(2023, 11, 14, 22, 13, 21)  # milliseconds recognised
    assert got[2]["ts"] == datetime(2024, 1, 1, 8, 0)  # converted to UTC
    assert json.loads(got[2]["context"]) == {"device": "mobile", "position": 3}
    assert got[3]["propensity"] == 0.25 and got[3]["request_id"] == "r1"
    assert log.last_seq() == 4
    s2 = log.ingest([ev(event_id="e")])
    assert (s2.first_seq, s2.last_seq) == (5, 5)


def test_tail_schema_and_paging(log: EventLog) -> None:
    log.ingest([ev(event_id=str(i), ts=T0 + i) for i in range(10)])
    batches = list(log.tail(3, batch_size=4))
    assert all(b.schema.equals(EVENT_SCHEMA) for b in batches)
    assert tuple(batches[0].schema.names) == EVENT_COLUMNS
    assert [s for b in batches for s in b.column("seq").to_pylist()] == list(range(4, 11))
    limited = list(log.tail(0, max_rows=2))
    assert sum(b.num_rows for b in limited) == 2
    assert list(log.tail(10)) == []


def test_event_id_is_idempotent_within_and_across_batches(log: EventLog) -> None:
    s = log.ingest([ev(event_id="x"), ev(event_id="x", item_id="other"), ev(event_id="y")])
    assert (s.accepted, s.duplicates) == (2, 1)
    assert [r["item_id"] for r in rows(log)] == ["i1", "i1"]  # the first occurrence wins
    s = log.ingest([ev(event_id="y"), ev(event_id="z")])
    assert (s.accepted, s.duplicates, s.first_seq, s.last_seq) == (1, 1, 3, 3)
    assert log.count_events() == 3


def test_missing_event_id_is_generated(log: EventLog) -> None:
    s = log.ingest([ev(), ev()])
    assert s.accepted == 2
    ids = [r["event_id"] for r in rows(log)]
    assert len(set(ids)) == 2 and all(ids)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (ev(ts=None), "ts: missing"),
        ({"user_id": "u", "item_id": "i", "event_type": "click"}, "ts: missing"),
        (ev(ts="yesterday"), "ts: malformed value 'yesterday'"),
        (ev(ts=10**16), "ts: malformed value"),
        (ev(user_id=None), "user_id: missing"),
        (ev(user_id="  "), "user_id: malformed"),
        (ev(item_id=None), "item_id: missing"),
        (ev(event_type=None), "event_type: missing"),
        (ev(event_type="clik"), "event_type: unknown value 'clik' (expected one of impression, click"),
        (ev(value=float("nan")), "value: non-finite"),
        (ev(value=float("inf")), "value: non-finite"),
        (ev(value="lots"), "value: malformed value 'lots'"),
        (ev(event_type="rating"), "value: missing (rating events"),
        (ev(propensity=0.0), "propensity: 0.0 is outside (0, 1]"),
        (ev(propensity=1.5), "propensity: 1.5 is outside (0, 1]"),
        (ev(propensity=float("nan")), "propensity: nan is outside"),
        (ev(context="not json"), "context: malformed value 'not json'"),
        (ev(context=[1, 2]), "context: malformed"),
        (ev(event_id=""), "event_id: malformed"),
        (ev(colour="red"), "row: unknown field 'colour'"),
    ],
)
def test_each_rule_rejects_with_a_reason(log: EventLog, row: dict[str, Any], reason: str) -> None:
    s = log.ingest([ev(event_id="good"), row])
    assert s.accepted == 1
    assert len(s.rejected) == 1
    assert s.rejected[0].index == 1
    assert s.rejected[0].reason.startswith(reason), s.rejected[0].reason
    stored = log.rejected().to_pylist()
    assert len(stored) == 1 and stored[0]["reason"] == s.rejected[0].reason
    assert stored[0]["row_index"] == 1
    assert stored[0]["raw"]  # the raw row is kept
    assert log.count_rejected() == 1


def test_rejected_rows_keep_the_raw_row(log: EventLog) -> None:
    log.ingest([ev(event_type="clik", item_id="zz")], source="unit")
    (rej,) = log.rejected().to_pylist()
    assert rej["source"] == "unit"
    assert json.loads(rej["raw"])["item_id"] == "zz"


def test_arrow_input_with_typed_columns(log: EventLog) -> None:
    table = pa.table(
        {
            "ts": pa.array([T0 * 1_000_000, T0 * 1_000_000], pa.timestamp("us", tz="UTC")),
            "user_id": pa.array([1, 2], pa.int64()),
            "item_id": pa.array([1.0, 2.5]),
            "event_type": ["click", "click"],
            "context": pa.array([{"device": "tv"}, None], pa.struct([("device", pa.string())])),
        }
    )
    s = log.ingest(table)
    assert s.accepted == 1
    assert s.rejected[0].reason.startswith("item_id: malformed value '2.5'")
    (r,) = rows(log)
    assert r["item_id"] == "1" and json.loads(r["context"]) == {"device": "tv"}


def test_arrow_input_unknown_column_is_an_error(log: EventLog) -> None:
    with pytest.raises(InvalidInputError, match="unknown event field 'colour'"):
        log.ingest(pa.table({"ts": [T0], "user_id": ["u"], "item_id": ["i"], "event_type": ["click"], "colour": [1]}))
    assert log.count_events() == 0


def test_not_a_list_is_an_error_and_a_row_that_is_not_an_object_is_rejected_and_kept(log: EventLog) -> None:
    with pytest.raises(InvalidInputError, match="list of objects"):
        log.ingest({"ts": T0})  # type: ignore[arg-type]
    s = log.ingest([ev(), 3, [1, 2]])  # type: ignore[list-item]
    assert s.accepted == 1
    assert [(r.index, r.reason) for r in s.rejected] == [
        (1, "row: expected a JSON object, got int"),
        (2, "row: expected a JSON object, got list"),
    ]
    stored = log.rejected().to_pylist()
    assert [(r["row_index"], r["raw"]) for r in stored] == [(1, "3"), (2, "[1, 2]")]


def test_order_by_ts(log: EventLog) -> None:
    log.ingest(
        [ev(event_id="late", ts=T0 + 10), ev(event_id="early", ts=T0), ev(event_id="bad", ts="x")], order_by_ts=True
    )
    assert [r["event_id"] for r in rows(log)] == ["early", "late"]


def _write_events(tmp_path: Path) -> dict[str, Path]:
    good = [ev(event_id=f"e{i}", ts=T0 + i, user_id=f"u{i % 3}") for i in range(5)]
    bad = ev(event_id="e9", event_type="clik")
    table = pa.Table.from_pylist([*good, bad])
    out = {"parquet": tmp_path / "ev.parquet", "csv": tmp_path / "ev.csv", "jsonl": tmp_path / "ev.jsonl"}
    pq.write_table(table, out["parquet"])
    lines = ["event_id,ts,user_id,item_id,event_type,value"]
    lines += [f"{r['event_id']},{r['ts']},{r['user_id']},{r['item_id']},{r['event_type']}," for r in [*good, bad]]
    out["csv"].write_bytes(("\r\n".join(lines) + "\r\n").encode())
    jl = [json.dumps(r) for r in [*good, bad]]
    jl.insert(2, "{not json")
    out["jsonl"].write_bytes(("\r\n".join(jl) + "\r\n").encode())
    return out


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_ingest_file_formats(log: EventLog, tmp_path: Path, fmt: str) -> None:
    path = _write_events(tmp_path)[fmt]
    s = log.ingest_file(path)
    assert s.accepted == 5
    reasons = [r.reason for r in s.rejected]
    assert any(r.startswith("event_type: unknown value 'clik'") for r in reasons)
    if fmt == "jsonl":
        assert any(r.startswith("row: line 3 is not valid JSON") for r in reasons)  # the line is named
    assert log.count_events() == 5
    assert log.count_rejected() == len(s.rejected)
    assert [r["event_id"] for r in rows(log)] == [f"e{i}" for i in range(5)]
    again = log.ingest_file(path)
    assert (again.accepted, again.duplicates) == (0, 5)


def test_ingest_file_in_batches_is_atomic_per_batch(log: EventLog, tmp_path: Path) -> None:
    path = _write_events(tmp_path)["parquet"]
    s = log.ingest_file(path, batch_size=2)
    assert s.accepted == 5 and len(s.rejected) == 1
    assert s.rejected[0].index == 5  # index counts across batches
    assert [r["seq"] for r in rows(log)] == [1, 2, 3, 4, 5]


def test_ingest_file_errors(log: EventLog, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        log.ingest_file(tmp_path / "missing.parquet")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match="unknown extension"):
        log.ingest_file(tmp_path / "x.txt")
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(InvalidInputError, match="cannot read"):
        log.ingest_file(tmp_path / "x.parquet")


def test_ingest_file_order_by_ts(log: EventLog, tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pq.write_table(pa.Table.from_pylist([ev(event_id="b", ts=T0 + 5), ev(event_id="a", ts=T0)]), path)
    log.ingest_file(path, order_by_ts=True)
    assert [r["event_id"] for r in rows(log)] == ["a", "b"]


def test_items_upsert_and_read(log: EventLog, tmp_path: Path) -> None:
    n = log.upsert_items(
        [
            {"item_id": "a", "title": "A", "tags": "x| y |", "year": 1999},
            {"item_id": 2, "title": "B", "tags": ["p"], "attrs": {"k": 1}},
        ]
    )
    assert n == 2
    items = {r["item_id"]: r for r in log.items().to_pylist()}
    assert items["a"]["tags"] == ["x", "y"] and json.loads(items["a"]["attrs"]) == {"year": 1999}
    assert json.loads(items["2"]["attrs"]) == {"k": 1}
    assert items["a"]["updated_at"] is not None
    log.upsert_items(pa.table({"item_id": ["a", "a"], "title": ["old", "new"]}))
    items = {r["item_id"]: r for r in log.items().to_pylist()}
    assert items["a"]["title"] == "new" and len(items) == 2
    path = tmp_path / "items.csv"
    path.write_bytes(b"item_id,title,tags\r\nc,C,u|v\r\n")
    assert log.ingest_file(path, items=True).accepted == 1
    assert {r["item_id"]: r for r in log.items().to_pylist()}["c"]["tags"] == ["u", "v"]


def test_items_without_id_fail_whole_call(log: EventLog) -> None:
    with pytest.raises(InvalidInputError, match="items row 1: item_id: missing"):
        log.upsert_items([{"item_id": "a"}, {"title": "no id"}])
    with pytest.raises(InvalidInputError, match=r"items row 1: item_id: missing"):
        log.upsert_items(pa.table({"item_id": ["a", None]}))
    with pytest.raises(InvalidInputError, match="attrs"):
        log.upsert_items(pa.table({"item_id": ["a"], "attrs": ["[1]"]}))
    assert log.items().num_rows == 0


def test_user_items(log: EventLog) -> None:
    log.ingest([ev(item_id="a"), ev(item_id="b", event_type="impression"), ev(item_id="c", user_id="u2")])
    assert log.user_items("u1", ["click"]) == {"a"}
    assert log.user_items("u1", ["click", "impression"]) == {"a", "b"}
    assert log.user_items("u1", []) == set()


def test_concurrent_ingest_and_tail(log: EventLog) -> None:
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for j in range(10):
                log.ingest([ev(event_id=f"{k}-{j}-{m}") for m in range(20)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(20):
                seqs = [s for b in log.tail(0) for s in b.column("seq").to_pylist()]
                assert seqs == sorted(seqs)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert log.count_events() == 600
    assert [r["seq"] for r in rows(log)] == list(range(1, 601))


def test_committed_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.duckdb"
    lg = EventLog.open(path)
    lg.ingest([ev(event_id="a")])
    # Another connection sees the row before close: the ingest was committed.
    lg.close()
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*) FROM events").fetchall() == [(1,)]
    con.close()
    with EventLog.open(path) as again:
        assert again.last_seq() == 1
        assert again.ingest([ev(event_id="b")]).first_seq == 2


# -- fast paths: one-statement insert, duplicate check in memory, group commit -----------------


def _table_rows(log: EventLog) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items()} for r in rows(log)]


FAST_BATCHES: list[list[dict[str, Any]]] = [
    [ev(event_id=f"a{i}", ts=T0 + i * 0.5) for i in range(50)],
    [ev(event_id=f"b{i}", ts=(T0 + i) * 1000, event_type="impression", request_id="r1") for i in range(20)],
    [ev(event_id="c1", event_type="rating", value=4.5), ev(event_id="c2", value=1, propensity=0.25)],
    [ev(event_id="d1", ts="2024-05-01T12:00:00Z"), ev(event_id="d2", ts="1700000000", context={"device": "m", "n": 2})],
    [ev(event_id="e1", user_id=" padded", item_id="\tx"), ev(event_id="e2", propensity=1)],
]


def test_fast_paths_store_what_the_staging_path_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rtrec.events import log as log_mod

    def no_staging(*args: Any, **kw: Any) -> str:
        raise AssertionError("valid new rows took the staging path")

    fast = EventLog.open(tmp_path / "fast.duckdb")
    with monkeypatch.context() as m:
        m.setattr(log_mod, "staging_sql", no_staging)
        for batch in FAST_BATCHES:
            assert fast.ingest(batch).accepted == len(batch)
    monkeypatch.setattr(EventLog, "_insert_if_all_valid", lambda self, table, source: None)
    slow = EventLog.open(tmp_path / "slow.duckdb")
    for batch in FAST_BATCHES:
        assert slow.ingest(batch).accepted == len(batch)
    assert _table_rows(fast) == _table_rows(slow)
    fast.close()
    slow.close()


def test_fast_path_falls_back_for_invalid_rows_and_names_the_field(log: EventLog) -> None:
    s = log.ingest([ev(event_id="ok1"), ev(event_id="bad", event_type="teleport"), ev(event_id="ok2")])
    assert (s.accepted, s.duplicates) == (2, 0)
    assert [(r.index, r.reason.split(":")[0]) for r in s.rejected] == [(1, "event_type")]
    assert [r["event_id"] for r in rows(log)] == ["ok1", "ok2"]
    assert [r["seq"] for r in rows(log)] == [1, 2]


def test_duplicates_are_found_after_a_restart_and_within_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    with EventLog.open(path) as lg:
        assert lg.ingest([ev(event_id=f"x{i}") for i in range(10)]).accepted == 10
    with EventLog.open(path) as lg:
        s = lg.ingest([ev(event_id="x3"), ev(event_id="new"), ev(event_id="new"), ev(event_id="x9")])
        assert (s.accepted, s.duplicates, s.first_seq, s.last_seq) == (1, 3, 11, 11)
        assert lg.ingest([ev(event_id="new")]).duplicates == 1
        assert lg.count_events() == 11


def test_hash_collisions_are_confirmed_against_the_table(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from rtrec.events import log as log_mod

    monkeypatch.setattr(log_mod, "id_hashes", lambda ids: np.zeros(len(ids), dtype=np.int64))
    assert log.ingest([ev(event_id="a")]).accepted == 1
    s = log.ingest([ev(event_id="b"), ev(event_id="a"), ev(event_id="c")])  # every hash collides
    assert (s.accepted, s.duplicates) == (2, 1)
    assert [r["event_id"] for r in rows(log)] == ["a", "b", "c"]


def test_stored_ids_merge_runs() -> None:
    import numpy as np

    from rtrec.events.rows import StoredIds

    ids = StoredIds(np.array([5, 1, 3], dtype=np.int64))
    rng = np.random.default_rng(0)
    added = rng.integers(-(2**62), 2**62, size=200_000)
    for lo in range(0, len(added), 1000):
        ids.add(added[lo : lo + 1000])
    assert len(ids) == 200_003
    assert ids.contains(added[::997]).all()
    assert ids.contains(np.array([1, 3, 5])).all()
    assert not ids.contains(np.array([2, 4, 6])).any()


def test_group_commit_keeps_each_callers_counts(log: EventLog) -> None:
    batches = [[ev(event_id=f"g{k}-{i}") for i in range(5)] for k in range(4)]
    batches.append([ev(event_id="g0-0"), ev(event_id="fresh")])  # one duplicate of an earlier caller
    batches.append([ev(event_id="bad", ts=None), ev(event_id="fine")])  # one invalid row
    out: dict[int, Any] = {}

    def call(k: int) -> None:
        out[k] = log.ingest(batches[k])

    # Hold the write lock so that every call queues, then let one of them commit the lot.
    with log._lock:
        threads = []
        for k in range(len(batches)):
            t = threading.Thread(target=call, args=(k,))
            t.start()
            threads.append(t)
            while len(log._queue) < k + 1:  # keep the queue in call order
                threading.Event().wait(0.001)
    for t in threads:
        t.join()
    assert [out[k].accepted for k in range(4)] == [5, 5, 5, 5]
    seqs = [(out[k].first_seq, out[k].last_seq) for k in range(4)]
    assert seqs == [(1, 5), (6, 10), (11, 15), (16, 20)]
    assert (out[4].accepted, out[4].duplicates, out[4].first_seq) == (1, 1, 21)
    assert (out[5].accepted, len(out[5].rejected), out[5].rejected[0].index) == (1, 1, 0)
    stored = rows(log)
    assert [r["event_id"] for r in stored[:5]] == [f"g0-{i}" for i in range(5)]
    assert [r["event_id"] for r in stored[-2:]] == ["fresh", "fine"]
    assert log.count_events() == 22


def _mostly(good: list[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nine draws in ten from ``good``: the test only checks batches whose every row looks valid."""
    return st.integers(0, 9).flatmap(lambda k: bad if k == 0 else st.sampled_from(good))


_IDS = _mostly(["u1", "x", "x ", "0", "~é", "a\tb"], st.sampled_from([" x", " ", "", "\t", "\u00a0", "é"]))
_TS = _mostly([float(T0), 0.0, -5.0, 1e11 - 1, 1e11, 1e14 - 1, 1.7e12], st.floats())
_VALUE = _mostly([None, 0.0, 4.5, 1e300, -2.0], st.floats())
_PROP = _mostly([None, 1.0, 0.5, 1e-300, 5e-324], st.floats())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "event_id": st.one_of(st.none(), _IDS),
                "ts": _TS,
                "user_id": _IDS,
                "item_id": _IDS,
                "event_type": _mostly(["click", "rating", "impression"], st.sampled_from(["teleport", " click"])),
                "value": _VALUE,
                "request_id": st.one_of(st.none(), _IDS),
                "propensity": _PROP,
            }
        ),
        min_size=1,
        max_size=3,
    )
)
def test_surely_valid_implies_the_staging_checks_pass(events: list[dict[str, Any]]) -> None:
    from rtrec.events._sql import kind_of, staging_sql, surely_valid

    table = pa.Table.from_pylist(
        events,
        schema=pa.schema(
            [
                ("event_id", pa.string()),
                ("ts", pa.float64()),
                ("user_id", pa.string()),
                ("item_id", pa.string()),
                ("event_type", pa.string()),
                ("value", pa.float64()),
                ("request_id", pa.string()),
                ("propensity", pa.float64()),
            ]
        ),
    )
    if not surely_valid(table):
        return
    con = duckdb.connect()
    staged = table.append_column("_idx", pa.array(range(table.num_rows), pa.int64()))
    con.register("src", staged)
    kinds = {f.name: kind_of(f.type) for f in table.schema}
    reasons = con.execute(f"SELECT reason FROM ({staging_sql('src', kinds)}) WHERE reason IS NOT NULL").fetchall()
    assert reasons == []
