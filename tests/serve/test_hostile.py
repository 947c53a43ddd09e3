"""Hostile but fair input through a real daemon: no row stops learning, fails its batch, or escapes its verdict."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import pytest

from rtrec.serve.testing import DaemonProcess
from tests.serve.test_daemon import catalog, event, wait_learned


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    d = DaemonProcess(tmp_path_factory.mktemp("hostile") / "home").start()
    d.post("/v1/items", catalog(5))
    yield d
    d.kill()


def now() -> float:
    return time.time()


def test_times_outside_the_accepted_range_are_rejected_and_learning_goes_on(daemon: DaemonProcess) -> None:
    d = daemon
    t = now()
    bad = [
        event("far-past", "u1", "sport-1", "impression", -99999999999999),
        event("year-10000", "u1", "sport-1", "impression", "10000-01-01T00:00:00Z"),
        event("year-9999", "u1", "sport-1", "impression", "9999-12-31T00:00:00Z"),
        event("tomorrow-and-more", "u1", "sport-1", "impression", t + 3 * 86400),
    ]
    good = [event(f"ok{i}", "u1", f"sport-{i}", "impression", t, request_id="r-ok") for i in range(3)]
    out = d.post("/v1/events", [*bad, *good])
    assert out["accepted"] == 3
    assert [r["index"] for r in out["rejected"]] == [0, 1, 2, 3]
    assert all(r["reason"].startswith("ts:") for r in out["rejected"]), out["rejected"]
    stats = wait_learned(d, out["last_seq"])
    assert stats["learn"]["error"] is None and stats["model"]["pending_impressions"] >= 3
    # A click on one of them still resolves it: nothing expired them early.
    stats = wait_learned(d, d.post("/v1/events", [event("ok-click", "u1", "sport-1", "click", t + 1)])["last_seq"])
    assert stats["model"]["labels"]["expired_early"] == 0


def test_an_event_at_the_edge_of_the_future_does_not_expire_every_pending_impression(daemon: DaemonProcess) -> None:
    d = daemon
    t = now()
    shown = [event(f"edge{i}", "u2", f"music-{i}", "impression", t, request_id="r-edge") for i in range(4)]
    wait_learned(d, d.post("/v1/events", shown)["last_seq"])
    before = d.get("/v1/stats")["model"]["labels"]["pending"]
    # Accepted (within events.max_future_s), but the watermark stays near the daemon's clock.
    out = d.post("/v1/events", [event("edge-future", "u3", "travel-1", "click", t + 80_000)])
    assert out["accepted"] == 1
    stats = wait_learned(d, out["last_seq"])
    assert stats["model"]["labels"]["pending"] >= before  # the four impressions still wait
    clicked = d.post("/v1/events", [event("edge-click", "u2", "music-2", "click", t + 2, request_id="r-edge")])
    stats = wait_learned(d, clicked["last_seq"])
    assert stats["model"]["labels"]["pending"] == before - 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_id", "\ud800"),
        ("item_id", "x\udfff"),
        ("request_id", "\ud83d"),
        ("event_id", "e-\ud800"),
        ("context", {"device": "\ud800"}),
        ("context", {"\ud800": 1}),
    ],
)
def test_a_lone_surrogate_rejects_its_row_only(daemon: DaemonProcess, field: str, value: object) -> None:
    d = daemon
    t = now()
    row = event(f"sur-{field}-{len(str(value))}", "u4", "sport-2", "click", t)
    row[field] = value
    ok = event(f"sur-ok-{field}-{len(str(value))}-{id(value)}", "u4", "sport-3", "click", t)
    # json.dumps writes the lone surrogate as its \\u escape: exactly what a client would send.
    status, out = d.request("POST", "/v1/events", json.dumps([row, ok]).encode())
    assert status == 200, out
    assert out["accepted"] == 1 and [r["index"] for r in out["rejected"]] == [0]
    assert field in out["rejected"][0]["reason"] and "surrogate" in out["rejected"][0]["reason"]


def test_deep_nesting_rejects_its_row_only(daemon: DaemonProcess) -> None:
    d = daemon
    t = now()
    for depth in (40, 490, 5000):
        nested = '{"a": ' * depth + "1" + "}" * depth
        common = f'"ts": {t}, "user_id": "u5", "event_type": "click"'
        deep = f'{{"event_id": "deep-{depth}", {common}, "item_id": "sport-1", "context": {nested}}}'
        ok = f'{{"event_id": "deep-ok-{depth}", {common}, "item_id": "sport-2"}}'
        body = f"[{deep}, {ok}]"
        status, out = d.request("POST", "/v1/events", body.encode())
        assert status == 200, (depth, out)
        assert out["accepted"] == 1 and [r["index"] for r in out["rejected"]] == [0], (depth, out)
        assert "context" in out["rejected"][0]["reason"] or "nested too deep" in out["rejected"][0]["reason"]
    # NDJSON: a line that is not JSON is one rejected row.
    lines = [json.dumps(event("nd-ok", "u5", "sport-4", "click", t)), "{broken", '{"a": ' * 5000 + "1" + "}" * 5000]
    status, out = d.request(
        "POST", "/v1/events", "\n".join(lines).encode(), headers={"Content-Type": "application/x-ndjson"}
    )
    assert status == 200 and out["accepted"] == 1 and [r["index"] for r in out["rejected"]] == [1, 2]


def test_bad_items_are_rejected_one_by_one(daemon: DaemonProcess) -> None:
    d = daemon
    rows = [
        {"item_id": "fine-1", "title": "ok"},
        {"item_id": "bad-title", "title": "\ud800"},
        {
            "item_id": "bad-attrs",
            "attrs": {
                "a": {
                    "b": {
                        "c": {
                            "d": {
                                "e": {
                                    "f": {"g": {"h": {"i": {"j": {"k": {"l": {"m": {"n": {"o": {"p": {"q": 1}}}}}}}}}}}
                                }
                            }
                        }
                    }
                }
            },
        },
        {"item_id": "x" * 600},
        "not an object",
        {"item_id": "fine-2", "tags": ["a", "b"]},
    ]
    status, out = d.request("POST", "/v1/items", json.dumps(rows).encode())
    assert status == 200, out
    assert out["upserted"] == 2 and [r["index"] for r in out["rejected"]] == [1, 2, 3, 4]
    reasons = [r["reason"] for r in out["rejected"]]
    assert reasons[0].startswith("title:") and reasons[1].startswith("attrs:") and reasons[2].startswith("item_id:")


def test_the_verdict_of_a_row_does_not_depend_on_its_batch(daemon: DaemonProcess) -> None:
    d = daemon
    t = now()
    odd = [
        {"ts": True},
        {"value": True},
        {"propensity": True},
        {"request_id": True},
        {"user_id": "u" * 100_000},
        {"item_id": "i" * 513},
    ]
    for k, change in enumerate(odd):
        alone = {**event(f"alone-{k}", "u6", "sport-1", "click", t), **change}
        mixed = {**event(f"mixed-{k}", "u6", "sport-1", "click", t), **change}
        one = d.post("/v1/events", [alone])
        many = d.post("/v1/events", [event(f"n{k}-{j}", "u6", "sport-2", "click", t) for j in range(5)] + [mixed])
        assert one["accepted"] == 0 and len(one["rejected"]) == 1, (change, one)
        assert many["accepted"] == 5 and [r["index"] for r in many["rejected"]] == [5], (change, many)
        assert one["rejected"][0]["reason"] == many["rejected"][0]["reason"]
    # The id limit is the one recommend enforces: an accepted user can always be served.
    ok = d.post("/v1/events", [event("long-user", "u" * 512, "sport-1", "click", t)])
    assert ok["accepted"] == 1
    assert d.request("GET", "/v1/recommend?user_id=" + "u" * 512 + "&k=2")[0] == 200


def test_rows_that_are_not_objects_are_kept_in_rejected_events(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "home").start()
    try:
        out = d.post("/v1/events", ["just text", 42, None, [1, 2], event("fine", "u", "i", "click", now())])
        assert out["accepted"] == 1 and [r["index"] for r in out["rejected"]] == [0, 1, 2, 3]
        assert d.terminate() == 0
    finally:
        d.kill()
    con = duckdb.connect(str(tmp_path / "home" / "rtrec.duckdb"), read_only=True)
    rows = con.execute("SELECT row_index, reason, raw FROM rejected_events ORDER BY row_index").fetchall()
    con.close()
    assert [(i, raw) for i, _, raw in rows] == [(0, '"just text"'), (1, "42"), (2, "null"), (3, "[1, 2]")]
    assert all(reason.startswith("row: expected a JSON object") for _, reason, _ in rows)


def test_events_the_learner_cannot_learn_are_quarantined_and_learning_goes_on(tmp_path: Path) -> None:
    home = tmp_path / "home"
    d = DaemonProcess(home).start()
    t = now()
    first = d.post("/v1/events", [event("a", "u1", "i1", "click", t)])
    wait_learned(d, first["last_seq"])
    assert d.terminate() == 0
    # Rows a log written by hand (or by an older rtrec) may hold: no ingest check saw them.
    con = duckdb.connect(str(home / "rtrec.duckdb"))
    con.execute(
        "INSERT INTO events (seq, event_id, ts, user_id, item_id, event_type, source) VALUES "
        "(2, 'hand-1', TIMESTAMP '9999-12-31 00:00:00', 'u1', 'i1', 'impression', 'hand'), "
        "(3, 'hand-2', now()::TIMESTAMP, 'u1', 'i1', 'teleport', 'hand')"
    )
    con.close()
    d.start()
    try:
        after = d.post("/v1/events", [event(f"b{i}", "u2", f"i{i + 2}", "click", t) for i in range(3)])
        stats = wait_learned(d, after["last_seq"])
        assert stats["learn"]["quarantined_total"] == 2 and stats["learn"]["error"] is None
        assert stats["model"]["events_seen"] == after["last_seq"]
        assert d.terminate() == 0
        d.start()  # after a restart: still past them, and counted
        stats = d.get("/v1/stats")
        assert stats["learn"]["quarantined_total"] == 2 and stats["learn"]["learned_seq"] == after["last_seq"]
        assert d.terminate() == 0
    finally:
        d.kill()
    con = duckdb.connect(str(home / "rtrec.duckdb"), read_only=True)
    q = con.execute("SELECT seq, reason FROM quarantined_events ORDER BY seq").fetchall()
    con.close()
    assert [s for s, _ in q] == [2, 3]
    assert q[0][1].startswith("ts:") and q[1][1].startswith("event_type:")


def test_recommend_with_unknown_candidates_changes_nothing(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "home").start()
    try:
        d.post("/v1/items", catalog(25))
        t = now()
        wait_learned(
            d,
            d.post("/v1/events", [event(f"w{i}", f"u{i % 3}", f"sport-{i % 25}", "click", t) for i in range(60)])[
                "last_seq"
            ],
        )
        items_before = d.get("/v1/stats")["model"]["items"]
        for r in range(40):
            junk = ",".join(f"junk-{r}-{j}" for j in range(25))
            rec = d.get(f"/v1/recommend?user_id=u1&k=5&candidates={junk},sport-1")
            assert {it["item_id"] for it in rec["items"]} <= {*junk.split(","), "sport-1"}
        stats = d.get("/v1/stats")
        assert stats["model"]["items"] == items_before == 100
        for user in ("u0", "u1", "stranger"):
            rec = d.get(f"/v1/recommend?user_id={user}&k=50&policy=epsilon")
            assert not any(it["item_id"].startswith("junk") for it in rec["items"])
        assert d.terminate() == 0
        d.start()  # and nothing of it was checkpointed
        assert d.get("/v1/stats")["model"]["items"] == 100
    finally:
        d.kill()


def test_temporary_files_of_interrupted_checkpoints_are_removed_at_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "checkpoints").mkdir(parents=True)
    left = [home / "checkpoints" / f"learner-000000000042.ckpt.{k}.tmp" for k in ("x1y2", "abcd")]
    for p in left:
        p.write_bytes(b"half a checkpoint")
    keep = home / "checkpoints" / "notes.txt"
    keep.write_text("not ours")
    d = DaemonProcess(home).start()
    try:
        assert not any(p.exists() for p in left) and keep.exists()
    finally:
        d.kill()


def test_a_public_address_needs_a_token_or_insecure(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rtrec.cli import app

    r = CliRunner().invoke(app, ["serve", "--home", str(tmp_path / "h"), "--host", "0.0.0.0", "--port", "0"])
    assert r.exit_code == 1
    assert "refusing to serve on 0.0.0.0 without a token" in r.stderr and "--insecure" in r.stderr
    d = DaemonProcess(tmp_path / "h2", args=("--host", "0.0.0.0", "--insecure")).start()
    try:
        assert d.get("/healthz")["status"] == "ok"
        assert "without a token (--insecure)" in d.log()
    finally:
        d.kill()
    d = DaemonProcess(tmp_path / "h3", args=("--host", "0.0.0.0"), env={"RTREC_TOKEN": "s3cret"}).start()
    try:
        assert d.get("/healthz")["status"] == "ok"
    finally:
        d.kill()


def wait_inbox(d: DaemonProcess, done: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = d.get("/v1/stats")
        if sum(stats["inbox"].values()) >= done:
            return stats
        time.sleep(0.1)
    raise AssertionError(f"inbox did not process {done} files: {d.get('/v1/stats')['inbox']}\n{d.log()}")


def test_inbox_links_long_lines_and_gzip(tmp_path: Path) -> None:
    import gzip

    home = tmp_path / "home"
    d = DaemonProcess(home).start()
    try:
        inbox = home / "inbox"
        t = now()
        secret = tmp_path / "secret.jsonl"
        secret.write_text(json.dumps(event("stolen", "u", "i", "click", t)) + "\n" + "password=hunter2\n")
        (inbox / "link.jsonl").symlink_to(secret)
        lines = [json.dumps(event("l0", "u", "i", "click", t)), '{"pad": "' + "x" * 3_000_000 + '"}']
        lines += [json.dumps(event("l2", "u", "j", "click", t)), "not json"]
        (inbox / "long.jsonl.part").write_text("\n".join(lines) + "\n")
        os_rename(inbox / "long.jsonl.part", inbox / "long.jsonl")
        with gzip.open(inbox / "zipped.jsonl.gz.part", "wt") as fh:
            fh.write("\n".join(json.dumps(event(f"z{k}", "u", "k", "click", t)) for k in range(5)) + "\n")
        os_rename(inbox / "zipped.jsonl.gz.part", inbox / "zipped.jsonl.gz")
        stats = wait_inbox(d, 3)
        assert stats["inbox"] == {"done": 2, "rejected": 1}
        assert (inbox / "rejected" / "link.jsonl").is_symlink()
        assert "outside the inbox" in (inbox / "rejected" / "link.jsonl.reason").read_text()
        reason = (inbox / "done" / "long.jsonl.reason").read_text()
        assert "2 rows rejected" in reason and "3000011 characters" in reason and "not valid JSON" in reason
        assert stats["ingest"]["accepted_total"] == 7  # two lines of long.jsonl, five of zipped.jsonl.gz
        assert d.terminate() == 0
    finally:
        d.kill()
    con = duckdb.connect(str(home / "rtrec.duckdb"), read_only=True)
    raws = [r[0] for r in con.execute("SELECT raw FROM rejected_events").fetchall()]
    ids = {r[0] for r in con.execute("SELECT event_id FROM events").fetchall()}
    con.close()
    assert "stolen" not in ids and not any("hunter2" in r for r in raws)
    assert ids == {"l0", "l2", *(f"z{k}" for k in range(5))}


def os_rename(a: Path, b: Path) -> None:
    a.rename(b)


SLOW_CONFIG = """\
[text]
enabled = false

[learner]
batch_size = 64

[serve]
request_timeout_s = 2.0
max_connections = 100
"""


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_idle_and_half_sent_connections_are_closed_and_capped(tmp_path: Path) -> None:
    import socket
    import urllib.parse

    d = DaemonProcess(tmp_path / "home", config=SLOW_CONFIG).start()
    try:
        url = urllib.parse.urlsplit(d.url)
        assert url.hostname is not None
        base = open_fds(d.pid)
        socks = []
        for k in range(300):
            s = socket.create_connection((url.hostname, url.port), timeout=5)
            if k % 3 == 1:
                s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[{")  # a body that stops
            elif k % 3 == 2:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers that never end
            socks.append(s)
        time.sleep(3.5)  # past request_timeout_s: every one of them is closed by now
        assert d.get("/healthz")["status"] == "ok"
        http = d.get("/v1/stats")["http"]
        assert http["timed_out"] >= 50 and http["refused"] >= 150, http
        assert open_fds(d.pid) <= base + 10
        for s in socks:
            s.close()
        # An ordinary client on a keep-alive connection is not cut off between requests it makes in time.
        assert d.post("/v1/events", [event("after", "u", "i", "click", now())])["accepted"] == 1
    finally:
        d.kill()


def test_a_background_thread_that_fails_is_restarted(tmp_path: Path) -> None:
    import threading

    from rtrec.config import load_config
    from rtrec.serve.daemon import Daemon

    cfg = load_config(home=tmp_path / "home", overrides={"text": {"enabled": False}})
    daemon = Daemon(cfg)
    calls = []

    def flaky() -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RuntimeError("boom")

    try:
        t = threading.Thread(target=daemon._guard("flaky", flaky))
        t.start()
        t.join(timeout=10)
        assert not t.is_alive() and len(calls) == 3
        assert daemon.stats()["threads"]["restarts"] == {"flaky": 2}
    finally:
        daemon.log.close()


BACKPRESSURE_CONFIG = """\
[text]
enabled = false

[learner]
batch_size = 64

[serve]
max_lag_events = 500
max_lag_s = 0.2
"""


def test_a_learner_that_falls_behind_gets_429_with_retry_after(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "home", config=BACKPRESSURE_CONFIG).start()
    try:
        t = now()
        refused = accepted = 0
        retry_after = None
        for b in range(40):
            batch = [
                event(f"bp{b}-{j}", f"u{j % 50}", f"i{j % 300}", "impression", t, request_id=f"r{b}")
                for j in range(2000)
            ]
            status, out = d.request("POST", "/v1/events", batch, timeout=60)
            if status == 429:
                refused += 1
                retry_after = out.get("retry_after_s")
                assert "behind" in out["error"] and "send it again" in out["hint"]
            else:
                assert status == 200, out
                accepted += out["accepted"]
        assert refused > 0 and retry_after is not None and retry_after >= 1
        stats = d.get("/v1/stats")
        assert stats["ingest"]["throttled_total"] == refused
        assert stats["ingest"]["accepted_total"] == accepted  # a refused batch stored nothing
        stats = wait_learned(d, stats["ingest"]["log_seq"])
        # The learned sequence number moves before the worker retires the batch's acknowledgement
        # times (what the lag in seconds is measured from): wait for both to say caught up.
        deadline = time.monotonic() + 30
        while stats["learn"]["lag_events"] or stats["learn"]["lag_s"] > 0.2:
            assert time.monotonic() < deadline, stats["learn"]
            time.sleep(0.05)
            stats = d.get("/v1/stats")
        assert d.request("POST", "/v1/events", [event("later", "u", "i", "click", t)])[0] == 200
    finally:
        d.kill()
