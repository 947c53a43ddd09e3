"""Feedback cleaning: its speed, what it sets aside on clean logs, and its memory per user.

* Speed: the cleaner over a simulated stream of ``--n`` events in chunks of 1,024 (the
  daemon's learn batches), 16,384 (replay's) and all at once; the best of ``--repeat`` runs.
* Clean logs: the share of events set aside on the ordinary simulator stream and, with
  ``--movielens DIR`` (or ``$RTREC_MOVIELENS``), on MovieLens's ratings, which come in bulk
  rating sessions (hundreds of ratings in a minute by one user).
* Dirty logs: with a simulator that injects bots and noise (``bot_share``, ``noise_share``),
  the share of injected and of real events set aside. Only this benchmark reads the events'
  ``truth``; the cleaner never does.
* Memory: resident memory added by ``--users`` users with an impression, a click and a
  rating each, per user.

Usage: ``python bench/clean.py [--n 200000] [--movielens ../shared/data/movielens-ml-latest-small]``
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rtrec.clean import Cleaner
from rtrec.config import CleanConfig
from rtrec.convert import convert_movielens
from rtrec.events import EVENT_SCHEMA
from rtrec.labels import conform
from rtrec.sim import SimConfig, Simulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pending import rss_bytes


def numbered(t: pa.Table) -> pa.Table:
    """Events as the log hands them to the learner: numbered, in the log's schema."""
    for f in EVENT_SCHEMA:
        if f.name not in t.column_names and f.name != "seq":
            t = t.append_column(f.name, pa.nulls(t.num_rows, f.type))
    return conform(t.add_column(0, "seq", pa.array(np.arange(1, t.num_rows + 1), pa.int64())))


def clean_all(t: pa.Table, chunk: int, cfg: CleanConfig | None = None) -> tuple[Cleaner, np.ndarray]:
    cleaner = Cleaner(cfg or CleanConfig())
    aside: list[int] = []
    for start in range(0, t.num_rows, chunk):
        aside += [seq for seq, _ in cleaner.clean(t.slice(start, chunk)).quarantined]
    return cleaner, np.asarray(aside, np.int64)


def speed(t: pa.Table, repeat: int) -> dict[str, float]:
    out = {}
    for chunk in (1024, 16384, t.num_rows):
        best = min(_timed(t, chunk) for _ in range(repeat))
        out[f"us_per_event_chunk_{chunk}"] = round(best / t.num_rows * 1e6, 3)
    return out


def _timed(t: pa.Table, chunk: int) -> float:
    t0 = time.perf_counter()
    clean_all(t, chunk)
    return time.perf_counter() - t0


def movielens(src: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        events_path, _ = convert_movielens(src, tmp)
        t = numbered(pq.read_table(events_path))
    cleaner, aside = clean_all(t, 16384)
    return {"events": t.num_rows, "set_aside": len(aside), "share": len(aside) / t.num_rows, **cleaner.counts()}


def dirty(n: int) -> dict[str, Any] | None:
    fields = {f.name for f in dataclasses.fields(SimConfig)}
    if not {"bot_share", "noise_share"} <= fields:
        return None
    t = numbered(Simulator(SimConfig(n_events=n, bot_share=0.05, noise_share=0.05)).generate())  # type: ignore[call-arg]
    truth = [_truth(c) for c in t.column("context").to_pylist()]
    cleaner, aside = clean_all(t, 1024)
    seqs = t.column("seq").to_numpy()
    set_aside = np.isin(seqs, aside)
    out: dict[str, Any] = {"events": t.num_rows, **cleaner.counts()}
    for kind in sorted(set(truth)):
        rows = np.array([k == kind for k in truth])
        out[f"set_aside_share_{kind}"] = round(float(set_aside[rows].mean()), 4)
        out[f"events_{kind}"] = int(rows.sum())
    return out


def _truth(context: str | None) -> str:
    if not context:
        return "real"
    c = json.loads(context)
    return str(c.get("truth", "real")) + (f":{c.get('bot_kind') or c.get('noise_kind')}" if "truth" in c else "")


def memory(users: int) -> dict[str, float]:
    """Each user: an impression, a click on it and a rating, one chunk of 16,384 events at a time."""
    ids = pa.array([f"user-{k:09d}" for k in range(users)])
    kinds = pa.array(["impression", "click", "rating"])
    gc.collect()
    before = rss_bytes()
    cleaner = Cleaner(CleanConfig())
    step = 16384 // 3
    for lo in range(0, users, step):
        hi = min(users, lo + step)
        m = 3 * (hi - lo)
        t = pa.table(
            {
                "seq": pa.array(np.arange(3 * lo, 3 * lo + m) + 1, pa.int64()),
                "event_id": pa.array([f"e{k}" for k in range(3 * lo, 3 * lo + m)]),
                "ts": pa.array(1_700_000_000_000_000 + np.arange(3 * lo, 3 * lo + m) * 1000, pa.int64()).cast(
                    pa.timestamp("us")
                ),
                "user_id": ids.slice(lo, hi - lo).take(pa.array(np.repeat(np.arange(hi - lo), 3))),
                "item_id": pc.cast(pa.array(np.repeat(np.arange(lo, hi) % 5000, 3)), pa.string()),
                "event_type": kinds.take(pa.array(np.tile(np.arange(3), hi - lo))),
                "value": pa.array(np.tile([np.nan, np.nan, 4.0], hi - lo), mask=np.tile([True, True, False], hi - lo)),
                "request_id": pa.nulls(m, pa.string()),
                "propensity": pa.nulls(m, pa.float64()),
                "context": pa.nulls(m, pa.string()),
            },
            schema=EVENT_SCHEMA,
        )
        cleaner.clean(t)
    gc.collect()
    added = rss_bytes() - before
    del ids
    return {"users": users, "rss_bytes_per_user": round(added / users, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--movielens", type=Path, default=os.environ.get("RTREC_MOVIELENS"))
    ap.add_argument("--users", type=int, default=1_000_000)
    args = ap.parse_args()
    t = numbered(Simulator(SimConfig(n_events=args.n)).generate())
    result: dict[str, Any] = {"n": t.num_rows, **speed(t, args.repeat)}
    cleaner, aside = clean_all(t, 1024)
    result["simulator"] = {"share": len(aside) / t.num_rows, **cleaner.counts()}
    if args.movielens:
        result["movielens"] = movielens(args.movielens)
    result["dirty_simulator"] = dirty(min(args.n, 100_000))
    result["memory"] = memory(args.users)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
