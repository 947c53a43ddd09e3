"""Through a real daemon: the example learned for a clicked recommendation is what the ranker served."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rtrec.config import load_config
from rtrec.learn import OnlineLearner
from rtrec.serve.checkpoints import checkpoint_files
from rtrec.serve.testing import DaemonProcess
from tests.serve.test_daemon import catalog, event, wait_learned

T0 = 1_700_000_000


def test_learned_features_of_a_clicked_recommendation_equal_the_served_ones(tmp_path: Path) -> None:
    home = tmp_path / "home"
    d = DaemonProcess(home).start()
    try:
        d.post("/v1/items", catalog())
        warm = [event(f"w{i}", f"u{i % 4}", f"sport-{i % 25}", "click", T0 + i, device="mobile") for i in range(200)]
        warm += [event(f"r{i}", f"u{i % 4}", f"music-{i % 25}", "dismiss", T0 + i) for i in range(100)]
        wait_learned(d, d.post("/v1/events", warm)["last_seq"])
        context = '{"device":"tablet"}'
        rec = d.get(f"/v1/recommend?user_id=u1&k=3&policy=none&explain=true&context={context}")
        items = rec["items"]
        assert len(items) == 3 and all("features" in it for it in items)
        # The client logs the slate it showed (its own clock, its own context) and a click on one item.
        now = time.time()
        shown = [
            event(f"imp{j}", "u1", it["item_id"], "impression", now, request_id=rec["request_id"], context={"x": 1})
            for j, it in enumerate(items)
        ]
        click = event("c0", "u1", items[1]["item_id"], "click", now + 2, request_id=rec["request_id"])
        last = d.post("/v1/events", [*shown, click])["last_seq"]
        stats = wait_learned(d, last)
        assert stats["model"]["served_snapshots"]["used"] == 3
        assert stats["model"]["pending_impressions"] == 2  # the two unclicked ones wait for their window
        assert d.terminate() == 0
    finally:
        d.kill()
    cfg = load_config(home=home)
    learner = OnlineLearner.load(checkpoint_files(home)[0][1], cfg)
    rows = learner.trainers[learner.main].replay.rows()  # every example learned, in order
    clicked = learner.featurizer.items.get(items[1]["item_id"])
    hit = np.flatnonzero((rows["row_ids"] == clicked) & (rows["labels"] == 1.0))
    assert len(hit) == 1
    r = int(hit[0])
    learned = rows["indices"][rows["offsets"][r] : rows["offsets"][r + 1]]
    served = items[1]["features"]
    assert learned.tolist() == served["hashed"]
    names = learner.featurizer.dense_names
    expected = np.array([served["dense"][n] for n in names], dtype=np.float32)
    np.testing.assert_array_equal(rows["dense"][r], expected)
    # The served context was a tablet; the impression's own context is ignored for what was served.
    assert served["dense"]["linear_logit"] != 0.0


def test_a_restart_keeps_pending_impressions_with_their_snapshots(tmp_path: Path) -> None:
    home = tmp_path / "home"
    d = DaemonProcess(home).start()
    try:
        d.post("/v1/items", catalog())
        now = time.time()  # the daemon expires impressions by its clock: these must still be in their window
        shown = [event(f"i{j}", "u1", f"sport-{j}", "impression", now, request_id="r1") for j in range(5)]
        wait_learned(d, d.post("/v1/events", shown)["last_seq"])
        assert d.terminate() == 0
        d.start()
        assert d.get("/v1/stats")["model"]["pending_impressions"] == 5
        click = [event("c", "u1", "sport-3", "click", now + 5, request_id="r1")]
        stats = wait_learned(d, d.post("/v1/events", click)["last_seq"])
        assert stats["model"]["pending_impressions"] == 4 and stats["model"]["examples_seen"] == 1
    finally:
        d.kill()


def test_stats_never_show_a_learned_seq_ahead_of_the_model_figures(tmp_path: Path) -> None:
    # A learn step that ends between the two reads must not pair the new seq with the old
    # model figures: a client waiting for its seq would read a model without its events.
    from rtrec.serve.daemon import Daemon

    daemon = Daemon(load_config(home=tmp_path / "home", overrides={"text": {"enabled": False}}))
    model_stats = daemon.learner.stats

    def step_ends_meanwhile(*args, **kwargs):
        out = model_stats(*args, **kwargs)
        daemon.learner.last_seq += 7  # the step's events land after the figures were read
        return out

    try:
        daemon.learner.stats = step_ends_meanwhile  # type: ignore[method-assign]
        assert daemon.stats()["learn"]["learned_seq"] == 0
    finally:
        daemon.log.close()
