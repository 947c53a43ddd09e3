"""Tests for ``rtrec evaluate``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rtrec.cli import app
from rtrec.events import EventLog

runner = CliRunner()
CONFIG = """
[features]
bits = 14
[learner]
batch_size = 64
replay_capacity = 5000
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path


def test_evaluate_json(sim_files: tuple[Path, Path], config: Path) -> None:
    events, items = sim_files
    args = ["evaluate", str(events), "--items", str(items), "--no-text", "--json", "--config", str(config)]
    r = runner.invoke(app, [*args, "--policy", "epsilon=0.2", "--policy", "softmax:temperature=0.5", "--clip", "50"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert list(data["policies"]) == ["epsilon:epsilon=0.2", "softmax:temperature=0.5"]
    assert data["logging"]["ips"]["value"] == data["observed_click_rate"] > 0 and data["clip"] == 50
    assert data["requests"] == data["logged_requests"] > 100 and data["seconds"]["total"] > 0
    for per in data["policies"].values():
        assert set(per["rtrec"]) == {"ips", "snips", "dr"}
        for e in per["rtrec"].values():
            assert e["low"] <= e["value"] <= e["high"] and e["ess"] > 0
    assert "logged requests" in r.stderr  # progress and status go to stderr


def test_evaluate_table_with_the_default_policies(sim_files: tuple[Path, Path], config: Path) -> None:
    events, items = sim_files
    r = runner.invoke(app, ["evaluate", str(events), "--items", str(items), "--no-text", "--config", str(config)])
    assert r.exit_code == 0, r.output
    for text in ("rtrec evaluate:", "logging", "epsilon:epsilon=0.05", "none", "snips", "95% interval", "ESS"):
        assert text in r.stdout, text
    assert "logged requests evaluated" in r.stdout


def test_bad_policy_is_one_line_error(sim_files: tuple[Path, Path]) -> None:
    r = runner.invoke(app, ["evaluate", str(sim_files[0]), "--no-text", "--policy", "greedy"])
    assert r.exit_code == 1
    assert r.stderr.strip().startswith("Error: policy 'greedy'") and len(r.stderr.strip().splitlines()) == 1
    assert r.stdout == ""


def test_log_without_propensities(sim_files: tuple[Path, Path], tmp_path: Path) -> None:
    t = pq.read_table(sim_files[0])
    bare = tmp_path / "bare.parquet"
    pq.write_table(
        t.set_column(t.schema.get_field_index("propensity"), "propensity", pa.nulls(len(t), pa.float64())), bare
    )
    r = runner.invoke(app, ["evaluate", str(bare), "--no-text"])
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: LOG: no impression carries a request_id and a propensity")
    assert "Hint:" in r.stderr and "propensity" in r.stderr.splitlines()[-1]
    assert "Traceback" not in r.output


def digest(home: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(home.iterdir()) if p.is_file()}


def test_evaluate_a_home_leaves_it_unchanged(sim_files: tuple[Path, Path], config: Path, tmp_path: Path) -> None:
    events, items = sim_files
    home = tmp_path / "home"
    with EventLog.open(home / "rtrec.duckdb") as log:
        log.ingest_file(events, order_by_ts=True)
        log.upsert_items(items)
    before = digest(home)
    r = runner.invoke(app, ["evaluate", "--home", str(home), "--no-text", "--json", "--config", str(config)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert list(data["policies"]) == ["epsilon:epsilon=0.05", "none"] and data["requests"] > 100
    assert digest(home) == before
    with EventLog.open(home / "rtrec.duckdb", read_only=True) as log:
        assert log.count_events() == 1_500
    # The home's catalog is used: a catalog file goes with a LOG only; a home without a log is an error.
    r = runner.invoke(app, ["evaluate", "--home", str(home), "--items", str(items), "--no-text"])
    assert r.exit_code == 1 and "--items" in r.stderr
    r = runner.invoke(app, ["evaluate", "--home", str(tmp_path / "empty"), "--no-text"])
    assert r.exit_code == 1 and "holds no event log" in r.stderr
    assert not (tmp_path / "empty").exists()
