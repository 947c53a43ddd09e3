"""Ingest throughput: events/s from Parquet and JSON Lines files of simulator events into a fresh database.

Usage: python bench/ingest.py [--events 1000000] [--out bench/out/ingest]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from rtrec.events import EventLog
from rtrec.sim import SimConfig, Simulator


def _fresh(path: Path) -> EventLog:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
    return EventLog.open(path)


def _timed_ingest(db: Path, file: Path) -> dict[str, float]:
    log = _fresh(db)
    t0 = time.perf_counter()
    summary = log.ingest_file(file)
    dt = time.perf_counter() - t0
    assert summary.accepted == log.count_events(), "every event is stored"
    log.close()
    return {"rows": summary.accepted, "seconds": round(dt, 3), "events_per_s": round(summary.accepted / dt)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench/out/ingest"))
    args = ap.parse_args()
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    sim = Simulator(SimConfig(n_users=20_000, n_items=10_000, n_topics=12, n_events=args.events, seed=1))
    events = sim.generate()
    parquet = out / "events.parquet"
    pq.write_table(events, parquet)
    jsonl = out / "events.jsonl"
    duckdb.sql(f"COPY (SELECT * FROM read_parquet('{parquet}')) TO '{jsonl}' (FORMAT json)")
    print(f"generated {events.num_rows} simulator events in {time.perf_counter() - t0:.1f}s")
    results = {
        "events": events.num_rows,
        "parquet": _timed_ingest(out / "parquet.duckdb", parquet),
        "jsonl": _timed_ingest(out / "jsonl.duckdb", jsonl),
    }
    pq_rate, jl_rate = results["parquet"]["events_per_s"], results["jsonl"]["events_per_s"]
    print(f"parquet: {pq_rate:,} events/s; jsonl: {jl_rate:,} events/s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
