"""Tests for ``rtrec ingest``, ``rtrec simulate`` and ``rtrec convert movielens``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from rtrec.cli import app
from rtrec.events import EventLog

runner = CliRunner()


def test_simulate_then_ingest(tmp_path: Path, rtrec_home: Path) -> None:
    out = tmp_path / "sim"
    r = runner.invoke(app, ["simulate", "--out", str(out), "--events", "2000", "--users", "20", "--items", "30"])
    assert r.exit_code == 0, r.output
    assert (out / "events.parquet").exists() and (out / "items.parquet").exists()
    r = runner.invoke(app, ["ingest", str(out / "events.parquet")])
    assert r.exit_code == 0, r.output
    assert "2000 accepted, 0 duplicates, 0 rejected" in r.output
    r = runner.invoke(app, ["ingest", str(out / "items.parquet"), "--items"])
    assert r.exit_code == 0 and "30 items" in r.output
    r = runner.invoke(app, ["ingest", str(out / "events.parquet"), "--json"])
    summary = json.loads(r.output)
    assert summary["duplicates"] == 2000 and summary["total_events"] == 2000
    with EventLog.open(rtrec_home / "rtrec.duckdb") as log:  # the default database of the home
        assert log.count_events() == 2000
        assert log.items().num_rows == 30


def test_simulate_styles_put_style_words_in_the_text(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from rtrec.sim.vocab import STYLES

    words = {w for ws in STYLES.values() for w in ws}
    texts = {}
    for styles in (0, 3):
        out = tmp_path / f"sim{styles}"
        args = ["simulate", "--out", str(out), "--events", "500", "--items", "30", "--styles", str(styles)]
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        items = pq.read_table(out / "items.parquet").to_pylist()
        texts[styles] = [{w.lower().strip(".") for w in f"{i['title']} {i['description']}".split()} for i in items]
    assert not any(t & words for t in texts[0])
    assert all(len(t & words) >= 2 for t in texts[3])
    r = runner.invoke(app, ["simulate", "--out", str(tmp_path / "x"), "--styles", "9"])
    assert r.exit_code != 0 and "--styles" in r.output


def test_ingest_reports_rejections(tmp_path: Path) -> None:
    f = tmp_path / "e.jsonl"
    f.write_bytes(
        b'{"ts": 1, "user_id": 1, "item_id": 2, "event_type": "click"}\r\n'
        b'{"ts": 1, "user_id": 1, "item_id": 2, "event_type": "clik"}\r\n'
    )
    home = tmp_path / "h"
    r = runner.invoke(app, ["ingest", str(f), "--home", str(home)])
    assert r.exit_code == 0, r.output
    assert "1 accepted, 0 duplicates, 1 rejected" in r.output
    assert "event_type: unknown value 'clik'" in r.output
    with EventLog.open(home / "rtrec.duckdb") as log:
        assert log.count_rejected() == 1


def test_ingest_errors(tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest", str(tmp_path / "missing.parquet")])
    assert r.exit_code == 1
    assert "Error: file" in r.output and "does not exist" in r.output
    bad = tmp_path / "x.xlsx"
    bad.write_text("?")
    r = runner.invoke(app, ["ingest", str(bad)])
    assert r.exit_code == 1 and "unknown extension .xlsx" in r.output
    broken = tmp_path / "x.parquet"
    broken.write_text("not parquet")
    r = runner.invoke(app, ["ingest", str(broken)])
    assert r.exit_code == 1 and "cannot read" in r.output


def test_convert_movielens_command(tmp_path: Path) -> None:
    src = tmp_path / "ml"
    src.mkdir()
    (src / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\r\n1,10,4.0,9\r\n1,20,3.0,9\r\n2,10,5,10\r\n")
    (src / "movies.csv").write_bytes(
        b"movieId,title,genres\r\n10,A (1990),Drama\r\n20,B (1991),Comedy\r\n30,C,Drama\r\n"
    )
    r = runner.invoke(app, ["convert", "movielens", str(src), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "Wrote 3 rating events" in r.output and "3 items" in r.output
    (src / "tags.csv").write_bytes(b"userId,movieId,tag,timestamp\r\n1,10,slow,11\r\n")
    for flag, want in (([], ["Drama"]), (["--user-tags"], ["Drama", "slow"])):
        r = runner.invoke(app, ["convert", "movielens", str(src), "--out", str(tmp_path / "out"), *flag])
        assert r.exit_code == 0, r.output
        assert pq.read_table(tmp_path / "out" / "items.parquet").column("tags").to_pylist()[0] == want
    r = runner.invoke(app, ["convert", "movielens", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and "does not exist" in r.output
