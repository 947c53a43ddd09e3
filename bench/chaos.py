"""Chaos: random ``kill -9`` of a daemon during ingest and learning; nothing acknowledged may be lost.

A producer posts batches of impressions and clicks (unique ``event_id`` each) and retries a
batch until it is acknowledged. Meanwhile the daemon is killed with SIGKILL at random
moments ``--kills`` times and started again on the same home. At the end the producer
stops, the daemon learns what is left, and the log and the model are checked:

* ``lost``: acknowledged events missing from the log (must be 0);
* ``doubled``: events stored more than once (must be 0);
* ``learned_twice``: events the model counts beyond the log's length (must be 0), and
  ``unlearned``: events in the log the model never learned (must be 0).

Usage: ``python bench/chaos.py [--kills 10] [--batch 200] [--seed 0]``
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path

import duckdb

from rtrec.serve.testing import DaemonProcess

CONFIG = """\
[text]
enabled = false

[serve]
checkpoint_every_s = 1.0
inbox_poll_s = 0.2
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        d = DaemonProcess(home, config=CONFIG).start()
        d.post("/v1/items", [{"item_id": f"i{k}", "category": f"c{k % 7}"} for k in range(200)])
        acked: set[str] = set()
        attempts = {"sent": 0, "failed": 0, "throttled": 0}
        stop = threading.Event()
        lock = threading.Lock()

        def produce() -> None:
            n = 0
            while not stop.is_set():
                t = time.time()
                batch = []
                for j in range(args.batch):
                    kind = "click" if j % 10 == 9 else "impression"
                    batch.append(
                        {
                            "event_id": f"c{n}-{j}",
                            "ts": t,
                            "user_id": f"u{(n * 7 + j) % 97}",
                            "item_id": f"i{(n + j) % 200}",
                            "event_type": kind,
                            "request_id": f"r{n}-{j // 10}",
                        }
                    )
                while not stop.is_set():  # the same batch until it is acknowledged
                    attempts["sent"] += 1
                    try:
                        status, _ = d.request("POST", "/v1/events", batch, timeout=10)
                    except OSError:
                        status = 0
                    if status == 200:
                        with lock:
                            acked.update(e["event_id"] for e in batch)
                        break
                    attempts["throttled" if status == 429 else "failed"] += 1
                    time.sleep(0.2)
                n += 1

        producer = threading.Thread(target=produce)
        producer.start()
        restarts = []
        for _ in range(args.kills):
            time.sleep(rng.uniform(1.0, 4.0))
            d.kill()
            t0 = time.monotonic()
            d.start()
            restarts.append(time.monotonic() - t0)
        time.sleep(2.0)
        stop.set()
        producer.join()
        log_seq = d.get("/v1/stats")["ingest"]["log_seq"]
        deadline = time.monotonic() + 300
        while d.get("/v1/stats")["learn"]["learned_seq"] < log_seq and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = d.get("/v1/stats")
        events_seen = int(stats["model"]["events_seen"])
        assert d.terminate() == 0
        con = duckdb.connect(str(home / "rtrec.duckdb"), read_only=True)
        total, distinct = con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()  # type: ignore[misc]
        stored = {r[0] for r in con.execute("SELECT event_id FROM events").fetchall()}
        con.close()
    out = {
        "bench": "chaos",
        "kills": args.kills,
        "acked_events": len(acked),
        "stored_events": int(total),
        "lost": len(acked - stored),
        "doubled": int(total) - int(distinct),
        "learned_twice": max(0, events_seen - int(log_seq)),
        "unlearned": max(0, int(log_seq) - events_seen),
        "posts": attempts,
        "restart_seconds_max": round(max(restarts), 2) if restarts else None,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
