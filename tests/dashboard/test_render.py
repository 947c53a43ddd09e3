import io

from rich.console import Console

from rtrec.dashboard import render, sparkline

STATS = {
    "running": True,
    "version": "0.1.0",
    "url": "http://127.0.0.1:8080",
    "uptime_s": 12.0,
    "ingest": {"rate": 1234.5, "accepted_total": 5000, "duplicates_total": 2, "rejected_total": 1, "log_seq": 5000},
    "learn": {"rate": 1200.0, "learned_total": 4990, "learned_seq": 4990, "lag_events": 10, "lag_s": 0.02},
    "freshness": {
        "learned": {"p50": 0.012, "p90": 0.05, "p99": 0.2, "count": 100},
        "recommend": {"p50": 0.02, "p90": 0.06, "p99": 0.3, "count": 50},
    },
    "recommend": {
        "rate": 10.0,
        "latency": {"p50": 0.002, "p90": 0.004, "p99": 0.008, "count": 500},
        "policy": "epsilon",
    },
    "model_version": 77,
    "quality": {"auc": 0.7123, "logloss": 0.4321, "ctr": 0.051},
    "series": {"auc": [0.6, 0.65, 0.7], "logloss": [0.5, 0.45], "ctr": [0.05], "ingest": [1, 2, 3], "learn": []},
    "model": {
        "replay": {"size": 500, "capacity": 1000, "mix": {"fresh": 0.5, "replay": 0.5}},
        "collision_rate": 0.013,
        "labels": {"pending": 1200, "retained": 300, "snapshot_bytes": 3 * 2**20, "expired_early": 0, "dropped": 0},
        "served_snapshots": {"held": 40, "used": 17},
    },
    "drift_alarms": [{"seq": 4000, "detector": "page_hinkley", "stat": 51.2}],
    "checkpoint": {"seq": 4500, "created_at": None},
    "text": {"status": "ready", "device": "cpu", "queue": 0},
    "catalog": {"items": 300},
    "top_items": ["i1", "i2"],
}


def text(renderable, width=120):
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(renderable)
    return buf.getvalue()


def test_sparkline():
    assert sparkline([]) == ""
    assert sparkline([1, 1, 1]) == "▅▅▅"
    s = sparkline([0, 1, 2, 3, 4, 5, 6, 7])
    assert s[0] == "▁" and s[-1] == "█" and len(s) == 8
    assert len(sparkline(list(range(100)), width=10)) == 10
    assert sparkline([None, float("nan"), 1.0]) == "▅"


def test_render_shows_key_fields():
    out = text(render(STATS))
    for needle in (
        "running",
        "1,234.5 ev/s",
        "10 events",
        "0.7123",
        "0.4321",
        "5.10%",
        "77",
        "seq 4,500",
        "page_hinkley",
        "500 / 1,000 (50.0%)",
        "fresh 50%",
        "1.30%",
        "device cpu",
        "i1",
        "p99 8.0 ms",
        "p50 12.0 ms",
        "1,200 pending · 300 kept · 3.0 MiB",
        "17 learned as served",
    ):
        assert needle in out, needle


def test_render_tolerates_missing_keys():
    out = text(render({}))
    assert "stopped" in out and "–" in out
    out = text(render({"running": False, "ingest": {"rate": None}, "model": {"replay": "odd"}, "drift_alarms": []}))
    assert "none" in out


def test_render_a_real_stats_response(tmp_path):
    """The fixture is a running daemon's own answer, drift alarm included, not a hand-made dict."""
    import copy

    from rtrec.config import load_config
    from rtrec.serve.daemon import Daemon
    from tests.learn.streams import events
    from tests.learn.test_trainer import SMALL, pattern

    cfg = load_config(home=tmp_path / "home", overrides=copy.deepcopy(SMALL))
    daemon = Daemon(cfg)
    try:
        daemon.log.ingest(events(pattern(1500)))
        daemon.log.ingest(events(pattern(300, start=1500, flip=True), 6001))
        daemon.learn_now()
        stats = daemon.stats()
    finally:
        daemon.log.close()
    alarms = stats["drift_alarms"]
    assert alarms and all(a["stat"] > cfg.learner.drift_threshold for a in alarms)
    out = text(render(stats), width=160)
    assert "page_hinkley" in out and f"{alarms[-1]['stat']:.4g}" in out
    assert f"{stats['model']['labels']['pending']:,}" in out
