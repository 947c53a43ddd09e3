import copy
import io

import pytest
from rich.console import Console

from rtrec.config import load_config
from rtrec.dashboard import render, sparkline
from rtrec.serve.daemon import Daemon
from tests.learn.streams import events
from tests.learn.test_trainer import SMALL, pattern


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A daemon's home after a stream with a taste flip, learned and checkpointed: (config, stats)."""
    cfg = load_config(home=tmp_path_factory.mktemp("dash") / "home", overrides=copy.deepcopy(SMALL))
    daemon = Daemon(cfg)
    try:
        daemon.log.ingest(events(pattern(1500)))
        daemon.log.ingest(events(pattern(300, start=1500, flip=True), 6001))
        daemon.learn_now()
        for _ in range(3):
            assert daemon.recommend("u0", 2, exclude_seen=False, policy="none")["items"]
        assert daemon.checkpoint() is not None
        stats = daemon.stats()
    finally:
        daemon.log.close()
    return cfg, stats


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


def test_render_shows_a_running_daemons_stats(home):
    """The fixture is a running daemon's own answer, drift alarm included, not a hand-made dict."""
    cfg, stats = home
    alarms = stats["drift_alarms"]
    assert alarms and all(a["stat"] > cfg.learner.drift_threshold for a in alarms)
    model = stats["model"]
    out = text(render(stats), width=160)
    for needle in (
        "● running",
        "page_hinkley",
        f"{alarms[-1]['stat']:.4g}",
        f"Drift alarms ({len(alarms)})",
        f"{stats['quality']['logloss']:.4f}",
        f"seq {stats['checkpoint']['seq']:,}",
        f"{model['labels']['pending']:,} pending",
        f"{model['user_items']['pairs']:,} pairs · {model['user_items']['bytes'] / 2**20:,.1f} MiB",  # items per user
        f"{model['replay']['size']:,} / {model['replay']['capacity']:,}",
        f"fresh {model['replay']['mix']['fresh']:.0%}",
        f"{model['hashing']['collision_rate']:.2%}",
        f"{stats['learn']['learned_seq']:,}",
        stats["top_items"][0],
        "Retrieval and ranking",
        f"n {model['retrieval']['live']['n']:,}",
        f"{model['retrieval']['candidate_recall']:.1%}",
        f"{model['retrieval']['covisit_pairs']:,} pairs",
        f"{stats['gc']['pauses']['gen2']['count']:,} full passes",
    ):
        assert needle in out, needle
    served = stats["recommend"]["sources"]
    assert sum(served.values()) == 6  # three slates of two
    assert " · ".join(f"{k} {v / 6:.0%}" for k, v in served.items() if v) in out


def test_render_a_stopped_daemons_home(home):
    """The offline reader's partial answer renders: what the files hold, dashes for the rest."""
    from rtrec.serve.client import offline_stats

    cfg, live = home
    stats = offline_stats(cfg)
    assert stats["running"] is False and "recommend" not in stats and "freshness" not in stats
    assert [a["seq"] for a in stats["drift_alarms"]] == [a["seq"] for a in live["drift_alarms"]]
    for key in ("pending", "retained", "dropped"):
        assert stats["model"]["labels"][key] == live["model"]["labels"][key]  # type: ignore[literal-required]
    assert stats["model_version"] == live["model_version"]
    out = text(render(stats), width=160)
    assert "○ stopped" in out and "page_hinkley" in out and "–" in out
    assert f"seq {live['checkpoint']['seq']:,}" in out


def test_render_an_empty_stopped_home():
    out = text(render({"running": False, "home": "/nowhere", "time": 0.0}))
    assert "stopped" in out and "none" in out and "–" in out
