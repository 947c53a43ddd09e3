"""What a forget costs on a home of a given size: the erase itself, and rewriting the database file.

Builds a home from a simulated stream (``--events``), learns it and checkpoints it as the
daemon does, then forgets ``--users`` users one after another through the same code as
``DELETE /v1/users/{id}`` (:class:`rtrec.serve.privacy.HomePrivacy`), and rewrites the
database file once at the end, as the daemon does within ``privacy.compact_after_s``. Checks
that no file under the home still holds a forgotten id's bytes. Prints one JSON object last.

Usage: ``python bench/forget.py [--events 300000] [--users 5]``
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa

from rtrec.config import load_config
from rtrec.events import EventLog
from rtrec.learn import OnlineLearner
from rtrec.serve.checkpoints import CheckpointStore
from rtrec.serve.privacy import HomePrivacy
from rtrec.sim import SimConfig, Simulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtrec-forget-") as tmp:
        home = Path(tmp)
        cfg = load_config(home=home, overrides={"text": {"enabled": False}})
        sim = Simulator(SimConfig(n_users=max(200, args.events // 60), n_items=2000, n_events=args.events))
        events = sim.generate()
        # Distinctive ids, so that a byte search means something.
        victims = {u: f"forget-me-{k:04d}-zq" for k, u in enumerate(sim.user_ids[: args.users])}
        ids = [victims.get(u, u) for u in events.column("user_id").to_pylist()]
        events = events.set_column(events.schema.get_field_index("user_id"), "user_id", pa.array(ids, pa.string()))
        log = EventLog.open(cfg.db_path, cfg.events)
        log.ingest(events, order_by_ts=True)
        log.upsert_items(sim.catalog())
        learner = OnlineLearner(cfg)
        learner.set_catalog(log.items())
        t0 = time.perf_counter()
        for batch in log.tail(0, batch_size=8192):
            learner.learn(batch)
        learn_s = time.perf_counter() - t0
        store = CheckpointStore(home, log)
        lock = threading.RLock()
        store.save(learner, lock)
        db_bytes = cfg.db_path.stat().st_size
        keeper = HomePrivacy(cfg, log, store, lambda: learner, lock)
        each = []
        for raw in victims.values():
            t0 = time.perf_counter()
            out = keeper.forget(raw)
            each.append({"seconds": time.perf_counter() - t0, "events": out["events"], "examples": out["examples"]})
        t0 = time.perf_counter()
        keeper.compact_if_due(force=True)
        compact_s = time.perf_counter() - t0
        log.close()
        left = [
            str(p.relative_to(home))
            for p in home.rglob("*")
            if p.is_file() and any(v.encode() in p.read_bytes() for v in victims.values())
        ]
        summary = {
            "bench": "forget",
            "machine": platform.processor() or platform.machine(),
            "events": events.num_rows,
            "db_bytes": db_bytes,
            "checkpoint_bytes": sum(p.stat().st_size for p in (home / "checkpoints").glob("*.ckpt")),
            "learn_s": learn_s,
            "forget_s": [round(e["seconds"], 4) for e in each],
            "forget_events": [e["events"] for e in each],
            "forget_examples": [e["examples"] for e in each],
            "compact_s": compact_s,
            "files_still_holding_an_id": left,
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
