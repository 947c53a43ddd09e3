"""The learner alone at its steady state on the overload mix: speed, memory and checkpoint copies.

Streams events of ``bench/load.py``'s mix (slates of 10 impressions with a request id, one
click in ten; ``--users`` users, ``--items`` items) through one learner in this process, with
event time advancing at ``--rate`` events a second, so that impressions start to expire as
negatives after ``labels.impression_window_s`` and the learner reaches the steady state the
daemon reaches under overload. Every ``--block`` events it takes a checkpoint as the daemon
does and reports the learn rate over the block, the resident memory (now and the process's
peak), the seconds the checkpoint's copy takes (``OnlineLearner.snapshot``, what the daemon
takes under the learner's lock) and the seconds and bytes of writing it, the impressions held
with their bytes each, and the items remembered per user; one JSON object per block, the
last line a summary.

Usage: ``python bench/steady.py [--n 3000000] [--rate 5000] [--users 20000] [--items 1000]``
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pending import catalog, impressions, rss_bytes  # the same generators as bench/pending.py
from rtrec.config import load_config
from rtrec.learn import OnlineLearner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=3_000_000)
    ap.add_argument("--rate", type=float, default=5000.0, help="events per second of event time")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=4096, help="events per learn step")
    ap.add_argument("--block", type=int, default=300_000, help="events per report")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    learner = OnlineLearner(load_config(overrides={"text": {"enabled": False}}))
    learner.set_catalog(catalog(args.items, rng))
    blocks = []
    learn_s, done, in_block = 0.0, 0, 0
    for start in range(0, args.n, args.chunk):
        t = impressions(start, min(args.chunk, args.n - start), args.rate, args.users, args.items, rng, click_every=10)
        t0 = time.perf_counter()
        learner.learn(t, chunk=args.chunk)
        learn_s += time.perf_counter() - t0
        done += t.num_rows
        in_block += t.num_rows
        if in_block >= args.block or done == args.n:
            t0 = time.perf_counter()
            snap = learner.snapshot()
            copy_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                path = learner.save(Path(tmp) / "learner.ckpt", snap)
                file_bytes = path.stat().st_size
            write_s = time.perf_counter() - t0
            del snap
            stats = learner.stats()
            labels = stats["labels"]
            held = labels["pending"] + labels["retained"]
            block = {
                "events": done,
                "events_per_s": round(in_block / learn_s),
                "rss_bytes": rss_bytes(),
                "rss_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "snapshot_seconds": round(copy_s, 3),
                "write_seconds": round(write_s, 3),
                "checkpoint_bytes": file_bytes,
                "impressions_held": held,
                "bytes_per_held_impression": round((labels["snapshot_bytes"] + labels["index_bytes"]) / max(held, 1)),
                "user_items": stats.get("user_items"),
            }
            blocks.append(block)
            print(json.dumps(block), flush=True)
            learn_s, in_block = 0.0, 0
    steady = blocks[len(blocks) // 2 :]  # past the impression window with the defaults above
    print(
        json.dumps(
            {
                "bench": "steady",
                "events": args.n,
                "steady_events_per_s": round(float(np.median([b["events_per_s"] for b in steady]))),
                "snapshot_seconds_max": max(b["snapshot_seconds"] for b in blocks),
                "rss_bytes_peak": max(b["rss_bytes"] for b in blocks),
                "rss_peak_bytes": blocks[-1]["rss_peak_bytes"],
                "write_seconds_max": max(b["write_seconds"] for b in blocks),
            }
        )
    )


if __name__ == "__main__":
    main()
