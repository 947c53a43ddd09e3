"""Feedback cleaning through a real daemon: bots, repeats and outliers are set aside with a reason, and counted."""

from __future__ import annotations

import time

import duckdb

from rtrec.serve.testing import DaemonProcess
from tests.serve.test_daemon import catalog, event, wait_learned


def test_bots_repeats_and_outliers_are_quarantined_with_reasons_and_counted(daemon_factory) -> None:
    d: DaemonProcess = daemon_factory(checkpoint_every_s=0.5).start()
    d.post("/v1/items", catalog(10))
    t = time.time() - 3000
    rows = []
    # A real user: shown slates, clicks a few; one accidental double click.
    for r in range(8):
        rid = f"real-r{r}"
        rows += [
            event(f"real-i{r}-{j}", "alice", f"sport-{j}", "impression", t + r * 10, request_id=rid) for j in range(4)
        ]
        if r % 2 == 0:
            rows.append(event(f"real-c{r}", "alice", f"sport-{r % 4}", "click", t + r * 10 + 2, request_id=rid))
        if r == 0:
            rows.append(event("real-double", "alice", "sport-0", "click", t + 2.5, request_id=rid))
    # A click-spammer: clicks everything it is shown.
    for r in range(8):
        rid = f"bot-r{r}"
        for j in range(4):
            rows.append(event(f"bot-i{r}-{j}", "mallory", f"music-{j}", "impression", t + 100 + r * 10, request_id=rid))
            rows.append(event(f"bot-c{r}-{j}", "mallory", f"music-{j}", "click", t + 101 + r * 10 + j, request_id=rid))
    # Purchases at a plausible price, then one absurd value; and one purchase without any engagement.
    rows += [
        event(f"buy{i}", f"buyer{i}", f"travel-{i % 10}", "purchase", t + 500 + i, value=20.0 + i % 7)
        for i in range(70)
    ]
    rows.append(event("buy-absurd", "buyer0", "travel-3", "purchase", t + 600, value=2_000_000.0))
    out = d.post("/v1/events", rows)
    assert out["accepted"] == len(rows)
    stats = wait_learned(d, out["last_seq"])
    clean = stats["model"]["cleaning"]
    assert clean["bot_users"] == 1 and clean["bot"] > 0
    assert clean["repeat"] == 1 and clean["value"] == 1, clean
    assert clean["sequence"] >= 70  # purchases with no earlier engagement: learned, flagged
    # The worker counts a batch's quarantined events just after the learner has learned it.
    deadline = time.monotonic() + 10
    while stats["learn"]["quarantined_total"] < clean["bot"] + clean["repeat"] + clean["value"]:
        assert time.monotonic() < deadline, stats["learn"]
        time.sleep(0.05)
        stats = d.get("/v1/stats")
    assert stats["learn"]["quarantined_total"] == clean["bot"] + clean["repeat"] + clean["value"]
    assert not d.get("/v1/recommend?user_id=alice")["cold_start"]
    d.terminate()
    with duckdb.connect(str(d.home / "rtrec.duckdb"), read_only=True) as con:
        q = dict(
            con.execute("SELECT e.event_id, q.reason FROM quarantined_events q JOIN events e USING (seq)").fetchall()
        )
        flagged = con.execute("SELECT count(*) FROM flagged_events WHERE reason LIKE 'sequence:%'").fetchall()[0][0]
    assert q["real-double"].startswith("repeat:") and q["buy-absurd"].startswith("value:")
    assert all(r.startswith("bot:") for k, r in q.items() if k.startswith("bot-"))
    assert not any(k.startswith("real-") and k != "real-double" for k in q)  # nothing else of the real user
    assert flagged >= 70
    # The cleaner's state is in the checkpoint: after a restart, mallory is still a bot.
    d.start()
    later = d.post("/v1/events", [event("bot-late", "mallory", "music-1", "click", time.time() - 10)])
    stats = wait_learned(d, later["last_seq"])
    assert stats["model"]["cleaning"]["bot_users"] == 1
    d.kill()
