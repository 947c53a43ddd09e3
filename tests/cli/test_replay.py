"""Tests for ``rtrec replay``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rtrec.cli import app

runner = CliRunner()
CONFIG = """
[features]
bits = 14
[learner]
batch_size = 64
replay_capacity = 5000
[replay]
ranking_sample = 0.2
windows = 4
"""


def test_replay_json(sim_files: tuple[Path, Path], tmp_path: Path) -> None:
    events, items = sim_files
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    args = ["replay", str(events), "--items", str(items), "--report", str(out), "--no-text", "--json"]
    r = runner.invoke(app, [*args, "--config", str(config)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    # The simulator logs propensities: the off-policy estimates of the served model come too.
    assert set(data) == {"events", "examples", "evaluated", "requests", "events_per_s", "models", "sources", "ope"}
    assert data["ope"]["logging"]["ips"]["value"] == data["ope"]["observed_click_rate"]
    assert data["events"] == 1_500 and data["events_per_s"] > 0 and data["requests"] > 100
    assert set(data["models"]) == {"rtrec", "popularity", "popularity_all_time", "static", "linear"}
    for name, row in data["models"].items():
        assert {"auc", "group_auc", "logloss", "calibration", "cold_auc", "hr_at_10", "ndcg_at_10"} <= set(row)
        assert {"recall_at_50", "coverage_at_10", "cold_hr_at_10"} <= set(row)
        assert row["ranking"] == ("pipeline" if name == "rtrec" else "catalog")
        assert row["group_auc"] is not None
    assert set(data["sources"]) == {"covisit", "content", "trending", "fresh"}
    for row in data["sources"].values():
        assert row["ranked_events"] == data["models"]["rtrec"]["ranked_events"] > 0
    assert data["models"]["popularity"]["logloss"] is None
    assert (out / "report.json").exists() and (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(out.glob("learner-*.ckpt"))) == 1


def test_replay_table_output(sim_files: tuple[Path, Path], tmp_path: Path) -> None:
    events, items = sim_files
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    home = tmp_path / "home"
    args = ["replay", str(events), "--items", str(items), "--report", str(tmp_path / "o"), "--no-text"]
    r = runner.invoke(app, [*args, "--config", str(config), "--home", str(home)])
    assert r.exit_code == 0, r.output
    assert "rtrec replay: 1,500 events" in r.stdout and "report:" in r.stdout and "checkpoint:" in r.stdout
    assert "group_auc" in r.stdout  # an impression log: the per-request AUC is in the table
    assert "source: covisit" in r.stdout and "recall_at_50" in r.stdout
    assert len(list((home / "checkpoints").glob("learner-*.ckpt"))) == 1


def test_replay_missing_log_is_one_line_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["replay", str(tmp_path / "missing.parquet"), "--no-text", "--report", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert r.stderr.strip().startswith("Error:") and len(r.stderr.strip().splitlines()) == 1
    assert "missing.parquet" in r.stderr and "does not exist" in r.stderr
    assert ("Traceback" not in r.output and r.exception is None) or isinstance(r.exception, SystemExit)
    assert r.stdout == ""
