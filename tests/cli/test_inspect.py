import json

from typer.testing import CliRunner

from rtrec.cli import app
from rtrec.serve.testing import DaemonProcess

runner = CliRunner()


def test_inspect_once_against_a_running_daemon_then_its_stopped_home(tmp_path):
    d = DaemonProcess(tmp_path / "home").start()
    try:
        d.post("/v1/items", [{"item_id": f"i{i}", "title": f"item {i}", "category": "c"} for i in range(20)])
        d.post(
            "/v1/events",
            [
                {
                    "event_id": f"e{i}",
                    "ts": 1_700_000_000 + i,
                    "user_id": "u1",
                    "item_id": f"i{i % 20}",
                    "event_type": "click",
                }
                for i in range(100)
            ],
        )
        d.get("/v1/recommend?user_id=u1&k=5")
        out = runner.invoke(app, ["inspect", "--url", d.url, "--once"], env={"COLUMNS": "140"})
        assert out.exit_code == 0, out.output
        for needle in ("running", "ingest", "learn", "learner lag", "freshness", "progressive AUC", "model version"):
            assert needle in out.output, needle
        out = runner.invoke(app, ["inspect", "--url", d.url, "--json"])
        stats = json.loads(out.output)
        assert stats["ingest"]["accepted_total"] == 100
        # --home finds the running daemon through its runtime file.
        out = runner.invoke(app, ["inspect", "--home", str(d.home), "--json"])
        assert json.loads(out.output)["running"] is True
        assert d.terminate() == 0
    finally:
        d.kill()
    out = runner.invoke(app, ["inspect", "--home", str(d.home), "--once"], env={"COLUMNS": "140"})
    assert out.exit_code == 0, out.output
    assert "stopped" in out.output and "100" in out.output
    out = runner.invoke(app, ["inspect", "--home", str(d.home), "--json"])
    stats = json.loads(out.output)
    assert stats["running"] is False and stats["ingest"]["accepted_total"] == 100
    assert stats["checkpoint"]["seq"] == 100


def test_inspect_unreachable_daemon_is_a_clear_error(tmp_path):
    out = runner.invoke(app, ["inspect", "--url", "http://127.0.0.1:9", "--once"])
    assert out.exit_code == 1
    assert "cannot reach the daemon" in out.output
