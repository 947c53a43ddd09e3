"""Catching up: how fast a restarted daemon learns a backlog that built up while it was down.

The daemon starts once on an empty home (catalog of ``--items`` items) and stops; then
``--events`` events of the overload mix (``load.overload_rows``: slates of 9 impressions
shown to one user, each followed by a click on one of them) are written to its event log, as
``rtrec ingest`` or a producer writing during an outage would; the daemon starts again and
``/v1/stats`` is polled until it has learned them.

By default every event carries the same time, so no impression's window passes during the
run and only the clicks become examples. With ``--span S`` the events' times are spread evenly
over the S seconds before now, and with ``--window W`` (``labels.impression_window_s``) shorter
than that, impressions expire as negatives while the backlog is learned: about nine examples
for ten events, the steady state of a daemon under this mix, with no ingest and no recommend
beside it (what the learner sustains alone).

Reports (one JSON object, last line): the backlog, the seconds from start to learned, events
learned per second, examples learned per event, and the learner's step time while catching up
(``learn_batch`` latency).

Usage: ``python bench/catchup.py [--events 300000] [--items 1000] [--users 20000] [--span S --window W]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import overload_rows, start_with_catalog, with_window
from rtrec.config import load_config
from rtrec.events import EventLog


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--span", type=float, default=0.0, help="seconds of event time the backlog covers")
    ap.add_argument("--window", type=float, default=None, help="labels.impression_window_s")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        d = start_with_catalog(home, args.items, with_window(args.window))
        d.terminate()
        cfg = load_config(home=home, overrides={"text": {"enabled": False}})
        rng = np.random.default_rng(0)
        batches = args.events // 1000
        t = time.time() - args.span
        with EventLog.open(cfg.db_path, cfg.events) as log:
            for b in range(batches):
                log.ingest(overload_rows(rng, f"e{b}", 1000, args.users, args.items, t + args.span * b / batches))
            backlog = log.last_seq()
        t0 = time.monotonic()
        d.start()
        started = time.monotonic() - t0
        while (s := d.get("/v1/stats"))["learn"]["learned_seq"] < backlog:
            time.sleep(0.1)
        seconds = time.monotonic() - t0
        d.terminate()
    print(
        json.dumps(
            {
                "bench": "catchup",
                "backlog_events": backlog,
                "start_s": round(started, 2),
                "seconds": round(seconds, 2),
                "learned_events_per_s": round(backlog / (seconds - started), 1),
                "examples_per_event": round(s["model"]["examples_seen"] / backlog, 3),
                "learn_batch_s": s["learn"].get("batch_latency"),
            }
        )
    )


if __name__ == "__main__":
    main()
