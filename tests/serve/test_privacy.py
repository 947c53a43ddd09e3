"""Privacy through a real daemon: forget a user everywhere, pseudonymous ids, retention, and the CLI."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from rtrec.serve.testing import FAST_CONFIG
from tests.serve.test_daemon import catalog, event, wait_learned

SECRET = "zq-forget-me-7d1c"  # distinctive: its bytes appear nowhere else


def files_holding(home: Path, needle: str) -> list[str]:
    """Every file under ``home`` whose bytes (gunzipped too) contain ``needle``."""
    hits = []
    for p in home.rglob("*"):
        if not p.is_file():
            continue
        data = p.read_bytes()
        if p.name.endswith(".gz"):
            data += gzip.decompress(data)
        if needle.encode() in data:
            hits.append(str(p.relative_to(home)))
    return hits


def history(user: str, t: float, prefix: str) -> list[dict]:
    out = []
    for i in range(6):
        rid = f"{prefix}-r{i}"
        out += [
            event(f"{prefix}-imp{i}-{j}", user, f"sport-{j}", "impression", t + i, request_id=rid) for j in range(3)
        ]
        out.append(event(f"{prefix}-clk{i}", user, f"sport-{i % 3}", "click", t + i + 0.5, request_id=rid))
    out.append(event(f"{prefix}-rate", user, "sport-7", "rating", t + 9, value=5.0))
    out.append(event(f"{prefix}-imp-late", user, "music-1", "impression", t + 10, request_id=f"{prefix}-late"))
    return out


def wait_for(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_forget_erases_the_user_from_every_file_and_the_model(daemon_factory, tmp_path: Path) -> None:
    d = daemon_factory(checkpoint_every_s=0.5).start()
    d.post("/v1/items", catalog(10))
    t = time.time() - 60
    others = [event(f"o{i}", f"other{i % 4}", f"sport-{i % 10}", "click", t + i) for i in range(40)]
    d.post("/v1/events", others)
    mine = history(SECRET, t, "me")
    out = d.post("/v1/events", [*mine, {"ts": "not a time", "user_id": SECRET, "item_id": "x", "event_type": "click"}])
    assert len(out["rejected"]) == 1
    inbox_event = event("me-inbox", SECRET, "music-2", "click", t + 20)
    (d.home / "inbox" / "mine.jsonl").write_text(json.dumps(inbox_event) + "\n")
    wait_for(lambda: (d.home / "inbox" / "done" / "mine.jsonl").exists())
    stats = wait_learned(d, d.get("/v1/stats")["ingest"]["log_seq"])
    users_before, stored_before = stats["model"]["users"], stats["ingest"]["stored"]
    wait_for(lambda: any((d.home / "checkpoints").glob("*.ckpt")))
    assert not d.get(f"/v1/recommend?user_id={SECRET}")["cold_start"]

    status, gone = d.request("DELETE", f"/v1/users/{SECRET}")
    assert status == 200, gone
    assert gone["events"] == len(mine) + 1 and gone["rejected"] == 1 and gone["files"] == 1
    assert gone["examples"] > 0 and gone["pending"] >= 1 and gone["known"]
    assert d.get(f"/v1/recommend?user_id={SECRET}")["cold_start"]
    stats = d.get("/v1/stats")
    assert stats["model"]["users"] == users_before - 1
    assert stats["ingest"]["stored"] == stored_before - len(mine) - 1
    assert stats["privacy"]["forgotten"] == 1

    assert d.terminate() == 0
    assert files_holding(d.home, SECRET) == []
    with duckdb.connect(str(d.home / "rtrec.duckdb"), read_only=True) as con:
        audit = con.execute("SELECT id_hash, events, compacted_at FROM forget_audit").fetchall()
    assert len(audit) == 1 and SECRET not in audit[0][0] and audit[0][1] == len(mine) + 1 and audit[0][2] is not None

    # After a restart the same id is a stranger, and its old event ids come in as new events.
    d.start()
    assert d.get(f"/v1/recommend?user_id={SECRET}")["cold_start"]
    again = d.post("/v1/events", [mine[0]])
    assert again["accepted"] == 1 and again["duplicates"] == 0
    d.kill()


def test_forget_of_an_unknown_user_removes_nothing(daemon_factory) -> None:
    d = daemon_factory().start()
    status, out = d.request("DELETE", "/v1/users/nobody-at-all")
    assert status == 200 and out["events"] == 0 and not out["known"]
    status, out = d.request("DELETE", "/v1/users/" + "x" * 600)
    assert status == 422 and "user_id" in out["error"]


PSEUDO_CONFIG = (
    FAST_CONFIG.format(checkpoint_every_s=0.5)
    + """
[privacy]
pseudonymize = true
inbox_keep_days = 0.0
"""
)


def test_pseudonymous_ids_never_reach_disk(daemon_factory, tmp_path: Path) -> None:
    env = {"RTREC_ID_KEY": "a test key that is long enough"}
    d = daemon_factory(config=PSEUDO_CONFIG, env=env).start()
    d.post("/v1/items", catalog(10))
    t = time.time() - 60
    mine = history(SECRET, t, "p")
    d.post("/v1/events", [*mine, {"ts": "bad", "user_id": SECRET, "item_id": "x", "event_type": "click"}])
    (d.home / "inbox" / "drop.jsonl").write_text(
        json.dumps(event("p-inbox", SECRET, "music-3", "click", t + 30)) + "\n"
    )
    wait_for(lambda: not (d.home / "inbox" / "drop.jsonl").exists())
    wait_for(lambda: not any((d.home / "inbox" / "done").iterdir()))  # inbox_keep_days = 0
    wait_learned(d, d.get("/v1/stats")["ingest"]["log_seq"])
    wait_for(lambda: any((d.home / "checkpoints").glob("*.ckpt")))
    rec = d.get(f"/v1/recommend?user_id={SECRET}")
    assert not rec["cold_start"]  # the API takes the raw id
    assert d.get("/v1/stats")["privacy"]["pseudonymize"]
    assert files_holding(d.home, SECRET) == []  # the live database, its checkpoints and rejected rows
    status, gone = d.request("DELETE", f"/v1/users/{SECRET}")
    assert status == 200 and gone["events"] == len(mine) + 1 and gone["rejected"] == 1
    assert d.get(f"/v1/recommend?user_id={SECRET}")["cold_start"]
    d.terminate()
    assert files_holding(d.home, SECRET) == []


RETENTION_CONFIG = (
    FAST_CONFIG.format(checkpoint_every_s=30.0)
    + """
[privacy]
retention_days = 1.0
retention_every_s = 0.2
"""
)


def test_retention_drops_learned_events_older_than_the_limit(daemon_factory) -> None:
    d = daemon_factory(config=RETENTION_CONFIG).start()
    d.post("/v1/items", catalog(5))
    now = time.time()
    old = [event(f"old{i}", "u1", f"sport-{i % 5}", "click", now - 3 * 86400 + i) for i in range(7)]
    new = [event(f"new{i}", "u1", f"music-{i % 5}", "click", now - 60 + i) for i in range(5)]
    wait_learned(d, d.post("/v1/events", old + new)["last_seq"])
    wait_for(lambda: d.get("/v1/stats")["ingest"]["stored"] == len(new))
    stats = d.get("/v1/stats")
    assert stats["privacy"]["retention"]["events"] == len(old)
    assert stats["model"]["examples_seen"] >= len(old) + len(new)  # the model keeps what it learned
    assert not d.get("/v1/recommend?user_id=u1")["cold_start"]


def test_cli_forget_on_a_stopped_home(daemon_factory) -> None:
    d = daemon_factory(checkpoint_every_s=0.5).start()
    d.post("/v1/items", catalog(5))
    wait_learned(d, d.post("/v1/events", history(SECRET, time.time() - 60, "c"))["last_seq"])
    wait_for(lambda: any((d.home / "checkpoints").glob("*.ckpt")))
    d.terminate()
    assert files_holding(d.home, SECRET)
    src = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("RTREC_CONFIG", None)
    run = subprocess.run(
        [sys.executable, "-m", "rtrec", "forget", SECRET, "--home", str(d.home), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["events"] == len(history(SECRET, 0, "c")) and out["examples"] > 0
    assert files_holding(d.home, SECRET) == []
