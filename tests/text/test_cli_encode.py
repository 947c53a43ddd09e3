from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

import rtrec.cli.encode as encode_cmd
from rtrec.cli import app

from .conftest import make_items


class FakeLog:
    """Stands in for rtrec.events.EventLog: a catalog and cursors on a DuckDB file."""

    def __init__(self, path: Path, n: int) -> None:
        self.con = duckdb.connect(str(path))
        self.n = n

    def items(self) -> Any:
        return make_items(self.n)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def close(self) -> None:
        self.con.close()


@pytest.fixture
def config_file(tmp_path: Path, tiny_gpt2_dir: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[text]\nmodel = "{tiny_gpt2_dir}"\nbatch_size = 4\n')
    return path


def test_encode_reports_encoded_then_cached(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, config_file: Path, tmp_path: Path
) -> None:
    n = {"items": 5}
    monkeypatch.setattr(encode_cmd, "_open_log", lambda cfg: FakeLog(db_path, n["items"]))
    runner = CliRunner()
    args = ["encode", "--home", str(tmp_path), "--config", str(config_file), "--device", "cpu"]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    stats = json.loads(first.stdout.strip().splitlines()[-1])
    assert (stats["encoded"], stats["cached"], stats["device"], stats["dtype"]) == (5, 0, "cpu", "float32")
    assert stats["items_per_s"] > 0

    n["items"] = 7
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    line = second.stdout.strip().splitlines()[-1]
    assert line.startswith("Encoded 2 items, 5 cached, ")
    assert "items/s" in line
    assert "device cpu" in line


def test_encode_names_a_missing_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(encode_cmd, "_open_log", lambda cfg: pytest.fail("the log must not open"))
    cfg = tmp_path / "config.toml"
    cfg.write_text('[text]\nmodel = "rtrec-test/no-such-model"\n')
    result = CliRunner().invoke(app, ["encode", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "Error: text model 'rtrec-test/no-such-model' is not available locally" in result.output
    assert "Hint:" in result.output


def test_encode_with_the_real_event_log(tmp_path: Path, config_file: Path) -> None:
    events = pytest.importorskip("rtrec.events")
    if not hasattr(events, "EventLog"):
        pytest.skip("rtrec.events.EventLog is not there yet")
    home = tmp_path / "home"
    home.mkdir()
    with events.EventLog.open(home / "rtrec.duckdb") as log:
        log.upsert_items(make_items(5).drop_columns(["description"]))
    args = ["encode", "--home", str(home), "--config", str(config_file), "--json"]
    for encoded, cached in [(5, 0), (0, 5)]:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        stats = json.loads(result.stdout.strip().splitlines()[-1])
        assert (stats["encoded"], stats["cached"]) == (encoded, cached)
    with events.EventLog.open(home / "rtrec.duckdb") as log:
        cur = log.cursor()
        assert cur.execute("SELECT count(*), min(dim) FROM item_embeddings").fetchone() == (5, 32)
        cur.close()
