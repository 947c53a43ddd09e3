"""Memory of pending impressions and the learner's speed on an impression stream.

Streams ``--n`` impressions at ``--rate`` a second (event time) through the learner, with
the impression window long enough that none is resolved, so every one waits with its
feature snapshot; then lets them expire. Reports the resident memory they add, per
pending impression and in all, the store's own arrays, and the learner's throughput while
reading impressions and while expiring them.

Usage: ``python bench/pending.py [--n 1800000] [--rate 1000] [--items 10000] [--users 100000]``
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import replace

import numpy as np
import pyarrow as pa

from rtrec.config import load_config
from rtrec.events.schema import EVENT_SCHEMA
from rtrec.learn import OnlineLearner


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def catalog(n: int, rng: np.random.Generator) -> pa.Table:
    cats = [f"cat{c}" for c in range(50)]
    tags = [f"tag{t}" for t in range(500)]
    return pa.table(
        {
            "item_id": [f"i{k}" for k in range(n)],
            "category": [cats[int(c)] for c in rng.integers(0, len(cats), n)],
            "tags": [[tags[int(t)] for t in rng.integers(0, len(tags), 3)] for _ in range(n)],
        }
    )


def impressions(
    start: int, n: int, rate: float, users: int, items: int, rng: np.random.Generator, click_every: int = 0
) -> pa.Table:
    """Events ``start .. start + n``: impressions; with ``click_every`` every such event is a click
    on the impression just before it (same user, item and request)."""
    k = np.arange(start, start + n)
    ts = (1_700_000_000_000_000 + k * (1e6 / rate)).astype(np.int64)
    devices = np.array(['{"device": "mobile"}', '{"device": "desktop"}'])
    u, i = rng.integers(0, users, n), rng.integers(0, items, n)
    kind = np.full(n, "impression", dtype=object)
    if click_every:
        clicks = np.flatnonzero((k % click_every == click_every - 1) & (np.arange(n) > 0))
        u[clicks], i[clicks], kind[clicks] = u[clicks - 1], i[clicks - 1], "click"
    return pa.Table.from_arrays(
        [
            pa.array(k + 1, pa.int64()),
            pa.array([f"e{x}" for x in k]),
            pa.array(ts).cast(pa.timestamp("us")),
            pa.array([f"u{x}" for x in u]),
            pa.array([f"i{x}" for x in i]),
            pa.array(kind.tolist()),
            pa.nulls(n, pa.float64()),
            pa.array(
                [f"r{(x - 1) // 10 if click_every and x % click_every == click_every - 1 else x // 10}" for x in k]
            ),
            pa.array(np.full(n, 0.1)),
            pa.array(devices[k % 2]),
        ],
        schema=EVENT_SCHEMA,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_800_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--click-every", type=int, default=0, help="every Nth event clicks the impression before it")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cfg = load_config(overrides={"text": {"enabled": False}})
    window = args.n / args.rate + 60.0  # no impression's window passes while the stream is read
    cfg = replace(cfg, labels=replace(cfg.labels, impression_window_s=window, late_window_s=0.0))
    learner = OnlineLearner(cfg)
    learner.set_catalog(catalog(args.items, rng))
    # Warm up: every user and item is known, so that the id maps are not counted as pending memory.
    warm = impressions(0, 1, args.rate, args.users, args.items, rng)
    learner.featurizer.ids(
        pa.array([f"u{x}" for x in range(args.users)], pa.string()),
        pa.array(warm.column("item_id").to_pylist() + [f"i{x}" for x in range(args.items)], pa.string()),
    )
    gc.collect()
    before = rss_bytes()
    read_s = 0.0
    for start in range(0, args.n, args.chunk):
        t = impressions(
            start, min(args.chunk, args.n - start), args.rate, args.users, args.items, rng, args.click_every
        )
        t0 = time.perf_counter()
        learner.learn(t)
        read_s += time.perf_counter() - t0
    gc.collect()
    after = rss_bytes()
    pending = learner.labeler.pending
    t0 = time.perf_counter()
    res = learner.drain()
    drain_s = time.perf_counter() - t0
    out = {
        "impressions": args.n,
        "pending": pending,
        "rss_added_bytes": after - before,
        "bytes_per_pending": round((after - before) / max(pending, 1), 1),
        "store_array_bytes_per_pending": round(learner.labeler.store.nbytes / max(pending, 1), 1),
        "read_events_per_s": round(args.n / read_s, 1),
        "click_every": args.click_every,
        "expire_examples_per_s": round(res.examples / max(drain_s, 1e-9), 1),
        "dense_dim": len(learner.featurizer.dense_names),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
