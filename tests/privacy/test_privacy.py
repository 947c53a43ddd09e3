"""Forget, pseudonymous ids and retention below the daemon: the log, the learner and the inbox files."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rtrec.config import Config
from rtrec.events import EventLog
from rtrec.learn import OnlineLearner
from rtrec.privacy import Pseudonymizer, salted_hash, scrub_files
from rtrec.sim import SimConfig, Simulator

SECRET = "zq-secret-user-5e1"
T0 = 1_700_000_000


def rows(user: str, n: int, prefix: str, t0: float = T0) -> list[dict]:
    out = []
    for i in range(n):
        out.append(
            {
                "event_id": f"{prefix}i{i}",
                "ts": t0 + i,
                "user_id": user,
                "item_id": f"it{i % 7}",
                "event_type": "impression",
                "request_id": f"{prefix}r{i}",
            }
        )
        if i % 2 == 0:
            out.append(
                {
                    "event_id": f"{prefix}c{i}",
                    "ts": t0 + i + 0.5,
                    "user_id": user,
                    "item_id": f"it{i % 7}",
                    "event_type": "click",
                    "request_id": f"{prefix}r{i}",
                }
            )
    return out


def test_pseudonyms_are_keyed_stable_and_redact_rejected_rows() -> None:
    a, b = Pseudonymizer("key number one, long"), Pseudonymizer("key number two, long")
    assert a("alice") == a("alice") and a("alice") != b("alice") and a("alice") != a("bob")
    assert "alice" not in a("alice")
    red = a.redact_row(json.dumps({"user_id": "alice", "ts": "x"}))
    assert red is not None and "alice" not in red and a("alice") in red
    assert a.redact_row("not json alice") is None
    assert salted_hash("s1", "alice") != salted_hash("s2", "alice")


def test_log_forgets_a_user_and_compaction_leaves_no_bytes(tmp_path: Path) -> None:
    db = tmp_path / "rtrec.duckdb"
    log = EventLog.open(db)
    log.ingest(rows(SECRET, 20, "s") + rows("someone-else", 20, "o"))
    log.ingest([{"ts": "bad", "user_id": SECRET, "item_id": "x", "event_type": "click"}])
    total = log.count_events()
    seq_of_mine = [r["seq"] for b in log.tail(0) for r in b.to_pylist() if r["user_id"] == SECRET]
    log.quarantine([(seq_of_mine[0], "test")])
    erased = log.forget_users([SECRET], learned_seq=seq_of_mine[4])
    assert erased == {"events": 30, "learned_events": 5, "rejected": 1, "quarantined": 1}
    assert log.count_events() == total - 30 and log.count_quarantined() == 0
    log.record_forget(salted_hash(log.salt(), SECRET), dict(erased))
    assert log.needs_compaction() is not None
    log.close()
    assert SECRET.encode() in db.read_bytes()  # deleted rows linger in free pages...
    log = EventLog.open(db)
    log.compact()  # ...until the file is rewritten
    assert log.needs_compaction() is None and log.count_events() == total - 30
    again = log.ingest(rows(SECRET, 2, "s"))  # the forgotten event ids come in as new events
    assert again.accepted == 3 and again.duplicates == 0
    log.close()
    assert SECRET.encode() in db.read_bytes()  # it is back: the new events hold it
    log = EventLog.open(db)
    log.forget_users([SECRET], learned_seq=0)
    log.record_forget("h", {})
    log.compact()
    log.close()
    assert SECRET.encode() not in db.read_bytes()


def test_pseudonymized_log_stores_no_raw_id_from_any_ingest_path(tmp_path: Path) -> None:
    p = Pseudonymizer("a key that is long enough")
    log = EventLog.open(tmp_path / "rtrec.duckdb", pseudonymize=p)
    log.ingest([*rows(SECRET, 4, "a"), {"ts": "bad", "user_id": SECRET, "item_id": "x", "event_type": "click"}])
    pq.write_table(
        pa.table({"ts": [T0], "user_id": [SECRET], "item_id": ["a"], "event_type": ["click"]}), tmp_path / "f.parquet"
    )
    (tmp_path / "f.jsonl").write_text(
        json.dumps({"ts": T0, "user_id": SECRET, "item_id": "b", "event_type": "click"}) + "\n{broken " + SECRET + "\n"
    )
    log.ingest_file(tmp_path / "f.parquet")
    log.ingest_file(tmp_path / "f.jsonl")
    users = {r["user_id"] for b in log.tail(0) for r in b.to_pylist()}
    assert users == {p(SECRET)}
    rejected = log.rejected().to_pylist()
    assert len(rejected) == 2 and all(SECRET not in (r["raw"] or "") + r["reason"] for r in rejected)
    assert log.forget_users([p(SECRET), SECRET], learned_seq=0)["events"] == 8


def test_retention_drops_only_learned_events_before_the_cutoff() -> None:
    log = EventLog.open(":memory:")
    log.ingest(rows("u", 10, "r"))  # 15 events, ts T0 .. T0 + 9.5
    got = log.drop_before(T0 + 5, learned_seq=4)
    assert got["events"] == 4 and log.count_events() == 11
    got = log.drop_before(T0 + 5, learned_seq=100)
    assert got["events"] == 4 and log.count_events() == 7


def test_learner_forgets_every_per_user_state() -> None:
    ev = Simulator(SimConfig(n_users=30, n_items=40, n_events=4000)).generate()
    first = ev.column("user_id")[0].as_py()
    ids = [SECRET if u == first else u for u in ev.column("user_id").to_pylist()]
    ev = ev.set_column(ev.schema.get_field_index("user_id"), "user_id", pa.array(ids, pa.string()))
    user = SECRET
    log = EventLog.open(":memory:")
    log.ingest(ev)
    learner = OnlineLearner(Config())
    for b in log.tail(0):
        learner.learn(b)
    f = learner.featurizer
    u = f.users.get(user)
    assert u is not None and learner.user_state(user)[0]
    replay_before = {k: len(t.replay) for k, t in learner.trainers.items() if t.replay is not None}
    n_users = learner.stats()["users"]
    kept = int((learner.recent_positives.user == u).sum())
    count_before, pairs_before = float(learner.retrieval.count.sum()), learner.retrieval.covisit.pairs
    got = learner.forget_user(user)
    assert got["known"] and got["examples"] > 0 and got["replay_rows"] > 0
    # Their kept positives leave the all-time counts and the co-visitation pairs they made.
    assert kept > 0 and float(learner.retrieval.count.sum()) == pytest.approx(count_before - kept)
    assert learner.retrieval.covisit.pairs < pairs_before
    assert (learner.recent_positives.user == u).sum() == 0
    assert learner.user_state(user) == (False, set())
    assert learner.stats()["users"] == n_users - 1
    assert f.user_counts.n[u] == 0 and len(f.user_items.get(u)) == 0 == len(learner.consumed.get(u))
    assert len(learner.retrieval.history(u)) == 0
    assert not np.any(
        (learner.labeler.store.key[: learner.labeler.store.high] >> 32)[
            learner.labeler.store.state[: learner.labeler.store.high] != 0
        ]
        == u
    )
    after = {k: len(t.replay) for k, t in learner.trainers.items() if t.replay is not None}
    assert sum(replay_before.values()) - sum(after.values()) == got["replay_rows"]
    assert user.encode() not in pickle.dumps(learner.state_dict())
    # The same id later is a new user, with a new index.
    assert learner.forget_user(user)["known"] is False


def test_scrub_files_removes_rows_naming_the_user(tmp_path: Path) -> None:
    other = json.dumps({"user_id": "bob", "item_id": "2"})
    mine = json.dumps({"user_id": SECRET, "item_id": "b"})
    short = json.dumps({"user_id": "2", "item_id": "a"})
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "a.jsonl").write_text(f"{other}\n{mine}\n{short}\nbroken {SECRET}\n")
    (tmp_path / "done" / "b.jsonl.gz").write_bytes(gzip.compress(f"{mine}\n".encode()))
    (tmp_path / "done" / "a.jsonl.reason").write_text(f'1 rows rejected\n{{"reason": "{SECRET}"}}\n{{"index": 2}}\n')
    pq.write_table(pa.table({"user_id": [SECRET, "bob"], "item_id": ["x", "y"]}), tmp_path / "c.parquet")
    pq.write_table(pa.table({"user_id": [1, 2, 22], "item_id": ["2", "y", "z"]}), tmp_path / "d.parquet")
    (tmp_path / "e.jsonl").write_text(other + "\n")
    assert scrub_files(tmp_path, [SECRET, "2"]) == 5
    # An id is matched in its field; only a long id also in free text: "2" elsewhere stays.
    assert (tmp_path / "done" / "a.jsonl").read_text() == other + "\n"
    assert not (tmp_path / "done" / "b.jsonl.gz").exists()
    assert (tmp_path / "done" / "a.jsonl.reason").read_text() == '1 rows rejected\n{"index": 2}\n'
    assert pq.read_table(tmp_path / "c.parquet").column("user_id").to_pylist() == ["bob"]
    assert pq.read_table(tmp_path / "d.parquet").column("user_id").to_pylist() == [1, 22]
    assert all(SECRET.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_a_short_id_only_matches_rejected_rows_by_field() -> None:
    log = EventLog.open(":memory:")
    log.ingest([{"ts": "bad", "user_id": "2", "item_id": "a", "event_type": "click"}])
    log.ingest([{"ts": "bad", "user_id": "3", "item_id": "2", "event_type": "click"}])
    assert log.forget_users(["2"], learned_seq=0)["rejected"] == 1
    assert log.count_rejected() == 1


@pytest.mark.parametrize("key", [None, "short"])
def test_pseudonymize_needs_a_long_enough_key(key: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from rtrec.config import load_config
    from rtrec.errors import ConfigError

    monkeypatch.delenv("RTREC_ID_KEY", raising=False)
    over: dict = {"privacy": {"pseudonymize": True}}
    if key is not None:
        over["privacy"]["id_key"] = key
    with pytest.raises(ConfigError, match="privacy"):
        load_config(overrides=over)
