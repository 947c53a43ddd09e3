"""Tests for rtrec.replay.run: the report, the plot, the checkpoints and the variants."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from rtrec.config import Config, load_config
from rtrec.errors import InvalidInputError
from rtrec.events import EventLog
from rtrec.learn import OnlineLearner
from rtrec.replay import replay_variants, run_replay
from rtrec.replay.run import BASELINES
from rtrec.sim import SimConfig, Simulator

SMALL = {
    "text": {"enabled": False},
    "features": {"bits": 14},
    "learner": {"batch_size": 64, "replay_capacity": 5_000},
    "replay": {"ranking_sample": 0.2, "windows": 5},
}
METRICS = ("auc", "group_auc", "logloss", "calibration", "cold_auc", "hr_at_10", "ndcg_at_10")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def cfg() -> Config:
    return load_config(overrides=copy.deepcopy(SMALL))


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    sim = Simulator(SimConfig(n_users=30, n_items=40, n_topics=4, n_events=3_000, seed=11))
    return sim.write(tmp_path_factory.mktemp("sim"))


def test_replay_writes_report_plot_and_checkpoint(cfg: Config, sim_files: tuple[Path, Path], tmp_path: Path) -> None:
    events, items = sim_files
    out = tmp_path / "report"
    calls: list[tuple[int, int]] = []
    res = run_replay(events, cfg, items_path=items, report_dir=out, progress=lambda d, t: calls.append((d, t)))
    data = json.loads((out / "report.json").read_text())
    assert data == res.data
    assert data["events"] == 3_000 and data["events_per_s"] > 0
    assert list(data["models"]) == ["rtrec", *BASELINES]
    for name, row in data["models"].items():
        for key in METRICS:
            assert key in row, f"{name}: {key}"
        assert row["auc"] is not None and 0.0 <= row["auc"] <= 1.0
        assert row["hr_at_10"] is not None and row["ranked_events"] > 0
    assert data["models"]["popularity"]["logloss"] is None
    assert data["models"]["popularity"]["calibration"] is None
    for name in ("rtrec", "static", "linear"):
        assert data["models"][name]["logloss"] > 0
    assert data["models"]["rtrec"]["auc"] > 0.65
    assert (
        len(data["windows"]) == 5
        and sum(w["examples"] for w in data["windows"]) == data["evaluated"] <= data["examples"]
    )
    assert calls and calls[-1] == (3_000, 3_000)
    assert (out / "report.png").read_bytes()[:8] == PNG
    # The checkpoint holds every model, and loads.
    assert res.checkpoint.parent == out and res.checkpoint.name.startswith("learner-")
    learner = OnlineLearner.load(res.checkpoint, cfg)
    assert learner.last_seq == 3_000 and set(learner.trainers) == {"rtrec", *BASELINES}
    assert learner.labeler.pending == 0  # drained at the end
    assert not any(p.suffix == ".tmp" for p in out.iterdir())


def test_replay_into_a_home_keeps_log_and_checkpoint(cfg: Config, sim_files: tuple[Path, Path], tmp_path: Path) -> None:
    events, items = sim_files
    home = tmp_path / "home"
    res = run_replay(events, cfg, items_path=items, report_dir=tmp_path / "r", home=home)
    ckpts = sorted((home / "checkpoints").glob("learner-*.ckpt"))
    assert len(ckpts) == 1 and ckpts[0].name == res.checkpoint.name
    assert OnlineLearner.load(ckpts[0], cfg).last_seq == 3_000
    with EventLog.open(home / "rtrec.duckdb") as log:
        assert log.count_events() == 3_000 and log.items().num_rows == 40
    # Again into the same home: the file's events are all duplicates now, and the replay
    # still covers every event of the home's log, with the same result.
    again = run_replay(events, cfg, items_path=items, report_dir=tmp_path / "r2", home=home)
    assert again.data["duplicate_events"] == 3_000
    assert again.data["events"] == res.data["events"] == 3_000
    assert again.models["rtrec"]["auc"] == res.models["rtrec"]["auc"]


def test_replay_is_deterministic(cfg: Config, sim_files: tuple[Path, Path], tmp_path: Path) -> None:
    events, items = sim_files
    a = run_replay(events, cfg, items_path=items, report_dir=tmp_path / "a")
    b = run_replay(events, cfg, items_path=items, report_dir=tmp_path / "b")
    for name in a.models:
        for key in METRICS:
            assert a.models[name][key] == b.models[name][key], f"{name}.{key}"


def test_replay_of_a_missing_log(cfg: Config, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        run_replay(tmp_path / "nope.parquet", cfg, report_dir=tmp_path / "r")


def test_replay_variants(cfg: Config) -> None:
    vs = replay_variants(cfg, 1_000, text=False)
    assert [v.name for v in vs] == ["rtrec", *BASELINES]
    kinds = {v.name: v for v in vs}
    assert kinds["popularity"].kind == "popularity" and kinds["linear"].kind == "linear"
    assert kinds["popularity_all_time"].kind == "popularity_all_time"
    assert kinds["static"].train_examples == int(1_000 * cfg.replay.static_fraction)
    assert kinds["rtrec"].train_examples is None
    assert replay_variants(cfg, 0, text=False)[3].train_examples == 1
    with_text = replay_variants(cfg, 1_000, text=True)
    # One row with every text piece off, then one per piece flipped from the default.
    flipped = [
        f"rtrec_{'no' if getattr(kinds['rtrec'], p) else 'with'}_{p}" for p in ("item_text", "user_vector", "distill")
    ]
    assert [v.name for v in with_text] == ["rtrec", *BASELINES, "rtrec_no_text", *flipped]
    no_text = with_text[1 + len(BASELINES)]
    assert not any([no_text.item_text, no_text.user_vector, no_text.distill])
    for v, piece in zip(with_text[2 + len(BASELINES) :], ("item_text", "user_vector", "distill"), strict=True):
        assert getattr(v, piece) != getattr(kinds["rtrec"], piece)
    assert replay_variants(cfg, 1_000, text=True, with_ablations=False) == vs


def test_plot_colours_follow_the_model_in_both_panels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtrec.replay.run import _plot

    figs: list[Any] = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    models = ("rtrec", "popularity", "static", "linear")
    wins = [
        {"models": {m: {"auc": 0.6 + 0.01 * k, "logloss": None if m == "popularity" else 0.5} for m in models}}
        for k in range(3)
    ]
    _plot({"windows": wins, "models": {m: {} for m in models}, "examples": 30}, tmp_path / "r.png")
    auc_ax, ll_ax = figs[0].axes
    auc = {line.get_label(): line.get_color() for line in auc_ax.get_lines()}
    ll = {line.get_label(): line.get_color() for line in ll_ax.get_lines()}
    assert set(ll) == {"rtrec", "static", "linear"}  # popularity has no log loss
    assert all(ll[m] == auc[m] for m in ll)  # ... and the rows after it keep their colours
