"""End to end: a real daemon process on a free loopback port, in a temporary home."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from pathlib import Path

import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtrec.contracts import Health
from rtrec.serve.testing import DaemonProcess

TOPICS = ("sport", "cooking", "travel", "music")
T0 = 1_700_000_000


def catalog(per_topic: int = 25) -> list[dict]:
    return [
        {"item_id": f"{t}-{i}", "title": f"{t} item {i}", "category": t, "tags": [t]}
        for t in TOPICS
        for i in range(per_topic)
    ]


def event(eid: str, user: str, item: str, kind: str = "click", ts: float = T0, **kw) -> dict:
    return {"event_id": eid, "ts": ts, "user_id": user, "item_id": item, "event_type": kind, **kw}


def wait_learned(d: DaemonProcess, seq: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = d.get("/v1/stats")
        if stats["learn"]["learned_seq"] >= seq:
            return stats
        time.sleep(0.05)
    raise AssertionError(f"learner did not reach seq {seq}: {stats['learn']}\n{d.log()}")


def topic_share(d: DaemonProcess, user: str, topic: str, k: int = 20) -> float:
    rec = d.get(f"/v1/recommend?user_id={user}&k={k}&policy=none&exclude_seen=false")
    return sum(it["item_id"].startswith(topic) for it in rec["items"]) / len(rec["items"])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    d = DaemonProcess(tmp_path_factory.mktemp("serve") / "home").start()
    yield d
    d.kill()


def test_api_end_to_end(daemon: DaemonProcess):
    d = daemon
    assert d.get("/healthz")["status"] == "ok"
    spec = d.get("/openapi.json")
    assert {"/v1/events", "/v1/items", "/v1/recommend", "/v1/stats", "/healthz", "/metrics"} <= set(spec["paths"])

    assert d.post("/v1/items", catalog()) == {"upserted": 100, "rejected": []}
    events = [event(f"a{i}", f"u{i % 5}", f"sport-{i % 25}", "impression", T0 + i) for i in range(50)]
    out = d.post("/v1/events", events)
    assert out["accepted"] == 50 and out["duplicates"] == 0 and out["rejected"] == []
    assert out["last_seq"] - out["first_seq"] == 49
    again = d.post("/v1/events", events[:10])
    assert again["accepted"] == 0 and again["duplicates"] == 10

    # NDJSON body
    nd = "\n".join(json.dumps(event(f"n{i}", "u9", "music-1", "click", T0 + i)) for i in range(3)).encode()
    status, out = d.request("POST", "/v1/events", nd, headers={"Content-Type": "application/x-ndjson"})
    assert status == 200 and out["accepted"] == 3

    rec = d.get("/v1/recommend?user_id=u1&k=7")
    assert len(rec["items"]) == 7
    assert isinstance(rec["model_version"], int) and rec["request_id"]
    assert all(0 < it["propensity"] <= 1 for it in rec["items"])
    assert len({it["item_id"] for it in rec["items"]}) == 7

    cands = d.get("/v1/recommend?user_id=u1&k=5&candidates=travel-1,travel-2,nope")
    assert {it["item_id"] for it in cands["items"]} == {"travel-1", "travel-2", "nope"}

    cold = d.get("/v1/recommend?user_id=never-seen&k=5")
    assert cold["cold_start"] is True and len(cold["items"]) == 5

    # Purchased, rated and dismissed items are left out by default, and only by default.
    d.post("/v1/events", [event("x1", "u7", "cooking-3", "purchase"), event("x2", "u7", "cooking-4", "dismiss")])
    shown = {it["item_id"] for it in d.get("/v1/recommend?user_id=u7&k=100")["items"]}
    assert "cooking-3" not in shown and "cooking-4" not in shown and len(shown) == 98
    shown = {it["item_id"] for it in d.get("/v1/recommend?user_id=u7&k=100&exclude_seen=false")["items"]}
    assert "cooking-3" in shown

    stats = wait_learned(d, d.get("/v1/stats")["ingest"]["log_seq"])
    for key in ("ingest", "learn", "freshness", "recommend", "model_version", "checkpoint", "text", "top_items"):
        assert key in stats
    assert stats["learn"]["lag_events"] == 0
    # Start-up's objects are frozen out of collections, and the collections that run are timed.
    assert stats["gc"]["frozen"] > 10_000 and stats["gc"]["pauses"]["gen0"]["count"] > 0
    metrics = d.request("GET", "/metrics")[1]
    for name in (
        "rtrec_events_accepted_total",
        "rtrec_model_version",
        "rtrec_recommend_latency_seconds_bucket",
        "rtrec_gc_pause_gen2_seconds_bucket",
    ):
        assert name in metrics
    families = {f.name: f for f in text_string_to_metric_families(metrics)}  # parses as a scraper reads it
    assert families["rtrec_events_accepted"].samples[0].value >= 1
    assert {s.labels["metric"] for s in families["rtrec_progressive"].samples} >= {"logloss"}


def test_bad_input_gets_clear_4xx_and_daemon_stays_up(daemon: DaemonProcess):
    d = daemon
    bad = [
        event("b1", "u1", "sport-1"),
        {"event_id": "b2", "ts": T0, "item_id": "sport-1", "event_type": "click"},
        event("b3", "u1", "sport-1", "teleport"),
        "not an object",
    ]
    out = d.post("/v1/events", bad)
    assert out["accepted"] == 1
    reasons = {r["index"]: r["reason"] for r in out["rejected"]}
    assert set(reasons) == {1, 2, 3}
    assert ("user_id" in reasons[1] and "teleport" in reasons[2]) or "event_type" in reasons[2]
    assert "object" in reasons[3]

    status, body = d.request("POST", "/v1/events", b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]
    status, body = d.request("POST", "/v1/events", b'"a string"')
    assert status == 400 and "array" in body["error"]
    # Ten times the limit: the client sends it all before reading, and still gets the answer.
    status, body = d.request("POST", "/v1/events", b"x" * 20_000_000)
    assert status == 413 and "limit" in body["error"]
    # The same without Content-Length (chunked).
    import http.client

    url = urllib.parse.urlsplit(d.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    chunks = iter([b"x" * 500_000] * 5)
    conn.request("POST", "/v1/events", body=chunks, headers={"Content-Type": "application/json"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413 and "limit" in json.loads(resp.read())["error"]
    conn.close()
    status, body = d.request("POST", "/v1/events", [event(f"big{i}", "u", "i") for i in range(5001)])
    assert status == 413 and "5000" in body["error"]
    status, body = d.request("GET", "/v1/recommend?user_id=u1&k=0")
    assert status == 422 and "k" in body["error"]
    status, body = d.request("GET", "/v1/recommend?k=3")
    assert status == 422 and "user_id" in body["error"]
    status, body = d.request("GET", "/v1/recommend?user_id=u1&policy=bogus")
    assert status == 422 and "policy" in body["error"]
    status, body = d.request("GET", "/v1/recommend?user_id=u1&context=[1")
    assert status == 422 and "context" in body["error"]
    out = d.post("/v1/items", [{"title": "no id"}])
    assert out["upserted"] == 0 and out["rejected"] == [{"index": 0, "reason": "item_id: missing"}]
    assert d.get("/healthz")["status"] == "ok"


def test_clicking_a_topic_moves_it_up(daemon: DaemonProcess):
    d = daemon
    before = topic_share(d, "fan", "travel")
    events = []
    for r in range(150):
        ts = T0 + 10_000 + r
        for t in TOPICS:
            item = f"{t}-{(r * 7) % 25}"
            events.append(event(f"f{r}-{t}-i", "fan", item, "impression", ts, request_id=f"r{r}"))
            kind = "click" if t == "travel" else "skip"
            events.append(event(f"f{r}-{t}-c", "fan", item, kind, ts + 1, request_id=f"r{r}"))
    out = d.post("/v1/events", events)
    assert out["accepted"] == len(events)
    wait_learned(d, out["last_seq"])
    after = topic_share(d, "fan", "travel")
    assert after > before
    assert after >= 0.5


def test_auth_token_protects_all_but_healthz(daemon_factory):
    d = daemon_factory(env={"RTREC_TOKEN": "s3cret"}).start()
    assert d.request("GET", "/healthz") == (200, {"status": "ok"})
    assert set(d.get("/healthz", headers={"Authorization": "Bearer s3cret"})) == set(Health.__annotations__)
    status, body = d.request("GET", "/v1/stats")
    assert status == 401 and "bearer" in body["error"]
    assert d.request("GET", "/v1/stats", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert d.request("GET", "/metrics", headers={"Authorization": "Bearer s3cret"})[0] == 200
    auth = {"Authorization": "Bearer s3cret"}
    assert d.request("POST", "/v1/items", catalog(2), headers=auth)[0] == 200

    # The inbox, in the same daemon: a good file is ingested and moved, a bad one rejected with a reason.
    inbox = d.home / "inbox"
    good = "\n".join(json.dumps(event(f"in{i}", "u1", "sport-1", "click", T0 + i)) for i in range(20))
    (inbox / "good.jsonl.tmp").write_text(good + "\n")
    (inbox / "good.jsonl.tmp").rename(inbox / "good.jsonl")
    (inbox / "bad.jsonl").write_text("this is not json\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        (inbox / "done" / "good.jsonl").exists() and (inbox / "rejected" / "bad.jsonl.reason").exists()
    ):
        time.sleep(0.1)
    assert (inbox / "done" / "good.jsonl").exists(), d.log()
    assert (inbox / "rejected" / "bad.jsonl.reason").read_text().strip()
    stats = d.request("GET", "/v1/stats", headers=auth)[1]
    assert stats["ingest"]["accepted_total"] >= 20


def test_read_token_reads_and_cannot_write(daemon_factory):
    d = daemon_factory(env={"RTREC_TOKEN": "full-s3cret", "RTREC_READ_TOKEN": "read-s3cret"}).start()
    full, read = {"Authorization": "Bearer full-s3cret"}, {"Authorization": "Bearer read-s3cret"}
    assert d.post("/v1/items", catalog(2), headers=full)["upserted"] == 8
    assert d.post("/v1/events", [event("w1", "u1", "sport-1")], headers=full)["accepted"] == 1
    before = d.get("/v1/stats", headers=read)

    reads = ("/v1/recommend?user_id=u1&k=3", "/v1/similar?item_id=sport-1", "/v1/stats", "/metrics", "/openapi.json")
    for path in reads:
        assert d.request("GET", path, headers=read)[0] == 200, path
        assert d.request("GET", path, headers=full)[0] == 200, path
        assert d.request("GET", path)[0] == 401, path
        assert d.request("GET", path, headers={"Authorization": "Bearer nope"})[0] == 401, path

    writes = [
        ("POST", "/v1/events", [event("r1", "u1", "sport-2")]),
        ("POST", "/v1/items", [{"item_id": "read-only-item", "title": "x"}]),
        ("DELETE", "/v1/users/u1", None),
    ]
    for method, path, body in writes:
        status, err = d.request(method, path, body, headers=read)
        assert status == 403, (method, path, err)
        assert set(err) == {"error", "hint"} and "may only read" in err["error"]
        assert d.request(method, path, body)[0] == 401
    after = d.get("/v1/stats", headers=read)
    assert after["ingest"]["accepted_total"] == before["ingest"]["accepted_total"] == 1
    assert after["catalog"]["items"] == before["catalog"]["items"] == 8

    # /healthz: the status alone to strangers, everything to either token.
    assert d.request("GET", "/healthz") == (200, {"status": "ok"})
    assert d.request("GET", "/healthz", headers={"Authorization": "Bearer nope"}) == (200, {"status": "ok"})
    for headers in (read, full):
        assert set(d.get("/healthz", headers=headers)) == set(Health.__annotations__)

    spec = d.get("/openapi.json", headers=read)
    assert set(spec["components"]["securitySchemes"]) == {"token", "read_token"}
    assert spec["paths"]["/v1/events"]["post"]["security"] == [{"token": []}]
    assert spec["paths"]["/v1/stats"]["get"]["security"] == [{"token": []}, {"read_token": []}]
    assert {} in spec["paths"]["/healthz"]["get"]["security"]

    from typer.testing import CliRunner

    from rtrec.cli import app

    r = CliRunner().invoke(app, ["inspect", "--url", d.url, "--token", "read-s3cret", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ingest"]["accepted_total"] == 1


def _read_events(home: Path) -> tuple[int, int, set[str]]:
    con = duckdb.connect(str(home / "rtrec.duckdb"), read_only=True)
    try:
        total, distinct = con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
        ids = {r[0] for r in con.execute("SELECT event_id FROM events").fetchall()}
    finally:
        con.close()
    return total, distinct, ids


def test_kill_9_mid_ingest_loses_nothing_and_learns_once(daemon_factory, tmp_path):
    d = daemon_factory(checkpoint_every_s=0.5).start()
    d.post("/v1/items", catalog(5))
    acked: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        now = time.time()  # impressions within their window: they wait, with their snapshots, across the kill
        while not stop.is_set():
            batch = [
                event(f"k{n}-{j}", f"u{j % 13}", f"{TOPICS[j % 4]}-{j % 5}", kind, now + n, request_id=f"r{n}-{j % 13}")
                for j in range(200)
                for kind in (("impression", "click") if j % 7 == 0 else ("impression",))
            ]
            try:
                status, _ = d.request("POST", "/v1/events", batch, timeout=10)
            except (OSError, http.client.HTTPException):
                return  # the daemon died mid-request (even mid-answer): that batch was never acknowledged
            if status == 200:
                acked.extend(e["event_id"] for e in batch)
            n += 1

    t = threading.Thread(target=produce)
    t.start()
    # Mid-ingest, once a checkpoint has been written (the restart must resume from one): on a busy
    # machine the first one can take longer than a fixed pause.
    started, deadline = time.monotonic(), time.monotonic() + 60
    while time.monotonic() < deadline:
        ckpt = d.get("/v1/stats")["checkpoint"]
        if ckpt is not None and ckpt["seq"] > 0 and time.monotonic() - started >= 3.0:
            break
        time.sleep(0.2)
    d.kill()  # SIGKILL, mid-ingest
    stop.set()
    t.join(timeout=30)
    assert acked, d.log()

    d2 = daemon_factory(d.home).start()
    stats = d2.get("/v1/stats")
    resumed = stats["checkpoint"]
    assert resumed is not None and resumed["seq"] > 0, "no checkpoint was written before the kill"
    log_seq = stats["ingest"]["log_seq"]
    stats = wait_learned(d2, log_seq)
    # Learned once each: the restored model plus what it tailed adds up to the log, no more.
    assert stats["model"]["events_seen"] == log_seq
    assert stats["model"]["pending_impressions"] > 0
    assert stats["model"]["labels"]["index_bytes"] > 0  # the restart rebuilt the indexes of what waits
    assert d2.terminate() == 0
    total, distinct, ids = _read_events(d.home)
    assert total == distinct
    assert set(acked) <= ids


def test_sigterm_checkpoints_and_restart_resumes(daemon_factory):
    d = daemon_factory().start()
    d.post("/v1/items", catalog(5))
    out = d.post("/v1/events", [event(f"s{i}", "u1", "music-2", "click", T0 + i) for i in range(300)])
    version = d.get("/healthz")["model_version"]
    t0 = time.monotonic()
    assert d.terminate() == 0
    assert time.monotonic() - t0 < 10.0
    assert not (d.home / "serve.json").exists()
    ckpts = sorted((d.home / "checkpoints").glob("learner-*.ckpt"))
    assert ckpts  # at whatever it had learned: the rest comes after the restart
    d2 = daemon_factory(d.home).start()
    stats = wait_learned(d2, out["last_seq"])
    assert stats["learn"]["learned_seq"] == out["last_seq"]
    assert stats["model_version"] >= version
    assert stats["model"]["events_seen"] == 300  # each event learned once, across the restart


TEXT_CONFIG = """\
[text]
enabled = true
model = "{model}"
device = "cpu"
batch_size = 16

[learner]
batch_size = 64

[serve]
inbox_poll_s = 0.2
"""


def wait_text(d: DaemonProcess, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = d.get("/v1/stats")["text"]
        if text["status"] == "ready" and text.get("queue", 0) == 0 and text.get("encoded") is not None:
            return text
        time.sleep(0.1)
    raise AssertionError(f"text encoder not ready: {d.get('/v1/stats')['text']}\n{d.log()}")


def test_text_features_in_the_daemon_encode_learn_and_survive_a_restart(daemon_factory, tmp_path):
    from rtrec.text.testing import build_tiny_gpt2

    model = build_tiny_gpt2(tmp_path / "tiny-gpt2")
    d = daemon_factory(config=TEXT_CONFIG.format(model=model)).start()
    odd = {"item_id": "travel-odd", "title": "Wireless headphones with a long battery life", "category": "travel"}
    assert d.post("/v1/items", [*catalog(10), odd]) == {"upserted": 41, "rejected": []}
    text = wait_text(d)
    assert (text["encoded"], text["model"], text["device"]) == (41, str(model), "cpu")
    # A user who clicks sport items: the interest vector moves and the learner uses the text.
    clicks = [event(f"c{i}", "fan", f"sport-{i % 10}", "click", T0 + i) for i in range(60)]
    out = d.post("/v1/events", clicks)
    stats = wait_learned(d, out["last_seq"])
    assert stats["model"]["events_seen"] == 60
    rec = d.get("/v1/recommend?user_id=fan&k=5&policy=none&exclude_seen=false")
    assert len(rec["items"]) == 5
    # A stranger whose request carries one item's own text gets that item first.
    import pyarrow as pa

    from rtrec.config import TextConfig
    from rtrec.text import item_texts

    row = pa.Table.from_pylist([{**odd, "tags": None, "description": None}])
    wanted = item_texts(row, TextConfig().template)[0]
    query = urllib.parse.quote(json.dumps({"text": wanted}))
    cold = d.get(f"/v1/recommend?user_id=stranger&k=5&policy=none&context={query}")
    assert cold["cold_start"] is True and len(cold["items"]) == 5
    assert cold["items"][0]["item_id"] == "travel-odd"
    plain = d.get("/v1/recommend?user_id=stranger&k=5&policy=none")
    assert plain["items"][0]["item_id"] != "travel-odd"  # without the text, popular sport items lead
    # A new item is encoded on arrival; an unchanged one is not encoded again.
    d.post("/v1/items", [{"item_id": "sport-new", "title": "sport item new", "category": "sport"}])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and d.get("/v1/stats")["text"].get("encoded") != 1:
        time.sleep(0.1)
    assert wait_text(d)["encoded"] == 1
    assert d.terminate() == 0
    with duckdb.connect(str(d.home / "rtrec.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM item_embeddings").fetchone() == (42,)
    # After a restart every vector comes from the cache, and the model resumes with text.
    d2 = daemon_factory(d.home).start()
    text = wait_text(d2)
    assert (text["encoded"], text["cached"]) == (0, 42)
    assert d2.get("/v1/stats")["learn"]["learned_seq"] == out["last_seq"]
    assert len(d2.get("/v1/recommend?user_id=fan&k=5")["items"]) == 5
