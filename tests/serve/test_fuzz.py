"""Fuzzing a real daemon: every route of its OpenAPI document, and mixed batches of good and bad rows.

The short profile (25 examples per route and property) runs in ``make check``; the long one
is ``RTREC_FUZZ_EXAMPLES=1000 python -m pytest tests/serve/test_fuzz.py`` (see bench/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtrec.serve.testing import DaemonProcess
from tests.serve.test_daemon import catalog, event

EXAMPLES = int(os.environ.get("RTREC_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    d = DaemonProcess(tmp_path_factory.mktemp("fuzz") / "home").start()
    d.post("/v1/items", catalog(5))
    yield d
    d.kill()


def test_no_route_answers_500(daemon: DaemonProcess, tmp_path: Path) -> None:
    st_cli = shutil.which("st") or str(Path(sys.executable).with_name("st"))
    if not Path(st_cli).exists():
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    cmd = [
        st_cli,
        "run",
        daemon.url + "/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "1",
        "--no-color",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--phases",
        "coverage,fuzzing",  # its examples phase cannot write NDJSON bodies
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert daemon.get("/healthz")["status"] == "ok"
    assert daemon.get("/v1/stats")["learn"]["error"] is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
fields = ("event_id", "ts", "user_id", "item_id", "event_type", "value", "request_id", "propensity", "context")
bad_rows = json_values | st.dictionaries(st.sampled_from(fields), json_values, max_size=9)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.tuples(st.booleans(), bad_rows), min_size=1, max_size=20))
def test_every_good_row_of_a_mixed_batch_is_stored_once(daemon: DaemonProcess, rows: list[tuple[bool, Any]]) -> None:
    stamp = time.time_ns()
    batch = [
        event(f"good-{stamp}-{k}", "fz", "sport-1", "click", time.time()) if good else bad
        for k, (good, bad) in enumerate(rows)
    ]
    status, out = daemon.request("POST", "/v1/events", json.dumps(batch, allow_nan=True).encode())
    assert status == 200, out
    good = {k for k, (g, _) in enumerate(rows) if g}
    rejected = {r["index"] for r in out["rejected"]}
    assert not good & rejected
    assert out["accepted"] + out["duplicates"] + len(out["rejected"]) == len(batch)
    # Sent again: the good rows are all duplicates now, never stored twice.
    status, again = daemon.request("POST", "/v1/events", json.dumps(batch, allow_nan=True).encode())
    assert status == 200 and again["accepted"] == 0
    assert again["duplicates"] >= len(good)


def test_the_fuzzed_log_holds_each_event_once(daemon: DaemonProcess) -> None:
    assert daemon.terminate() == 0
    con = duckdb.connect(str(daemon.home / "rtrec.duckdb"), read_only=True)
    total, distinct = con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()  # type: ignore[misc]
    con.close()
    assert total == distinct and total > 0
    daemon.start()
