"""Recommend beside a busy Python thread: what each stage of the served pipeline costs in handoffs.

In the daemon the learner, ingest and recommend share one interpreter. Every time a stage
lets the interpreter go (a torch op, a numpy or pyarrow call that releases it, a native call
that detaches), a thread running Python code takes it, and the request waits until that
thread's switch interval (1 ms in the daemon; ``--switch-ms``) is over. So a stage costs, under load, about one
switch interval per release, whatever its own CPU time.

This bench measures that in one process: a learner with ``--items`` items learns ``--events``
events of the overload mix (``load.overload_rows``), then ``pipeline.rank`` plus
``remember_served`` (what a known user's recommend runs) is timed for ``--calls`` users,
alone and then beside a thread that runs pure Python in a loop (the worst case of a learner
between its numpy and torch calls). Each stage is timed on its own: retrieval, ranking
features, hashing and dense features of the candidate rows, the CTR model's forward pass,
keeping the served rows.

Reports (one JSON object, last line): per stage and in all, milliseconds per call alone and
beside the busy thread.

Usage: ``python bench/contention.py [--items 1000] [--events 200000] [--calls 300] [--switch-ms 1]``
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import overload_rows
from rtrec.config import load_config
from rtrec.events.rows import events_table
from rtrec.learn import OnlineLearner
from rtrec.rank import pipeline
from rtrec.serve.start import SWITCH_INTERVAL_S


def build(items: int, users: int, events: int) -> OnlineLearner:
    """A learner (text off, as ``bench/load.py``'s daemon) that has learned ``events`` of the overload mix."""
    learner = OnlineLearner(load_config(overrides={"text": {"enabled": False}}))
    ids = [f"i{k}" for k in range(items)]
    learner.set_catalog(
        pa.table(
            {
                "item_id": ids,
                "category": [f"c{k % 20}" for k in range(items)],
                "tags": [[f"t{k % 50}"] for k in range(items)],
            }
        )
    )
    rng = np.random.default_rng(0)
    seq, t0, step = 0, time.time() - 3600.0, 10_000
    for chunk in range((events + step - 1) // step):
        rows = overload_rows(rng, f"p{chunk}", min(step, events - seq), users, items, 0.0)
        n = len(rows)
        ts = t0 + chunk * 10.0 + np.arange(n) * 1e-3
        full = [
            {**r, "ts": int(t * 1e6), "value": None, "propensity": None, "context": None}
            for r, t in zip(rows, ts, strict=True)
        ]
        learner.learn(events_table(full).append_column("seq", pa.array(np.arange(seq + 1, seq + n + 1), pa.int64())))
        seq += n
    return learner


def timed_stages(learner: OnlineLearner) -> dict[str, float]:
    """Wrap each stage of the served pipeline with a timer; the dict collects seconds per stage."""
    spent: dict[str, float] = defaultdict(float)

    def wrap(obj: Any, name: str, label: str) -> None:
        f: Callable[..., Any] = getattr(obj, name)

        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                spent[label] += time.perf_counter() - t

        setattr(obj, name, timed)

    wrap(learner.retrieval, "retrieve", "retrieval")
    wrap(learner.retrieval, "features", "ranking_features")
    wrap(learner.featurizer, "hash_request", "hashing")
    wrap(learner.featurizer, "dense", "dense_features")
    wrap(learner.trainers[learner.main], "predict", "ctr_forward")
    wrap(learner, "remember_served", "remember_served")
    return spent


def run(learner: OnlineLearner, spent: dict[str, float], users: list[str]) -> dict[str, float]:
    spent.clear()
    total = 0.0
    for k, user in enumerate(users):
        t = time.perf_counter()
        r = pipeline.rank(learner, user, learner.clock(), at_least=10)
        if r is not None:
            learner.remember_served(f"r{k}-{t}", r.batch, np.arange(min(10, len(r.cands))), r.probs[:10])
        total += time.perf_counter() - t
    out = {name: round(s / len(users) * 1000.0, 3) for name, s in sorted(spent.items())}
    out["total"] = round(total / len(users) * 1000.0, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--switch-ms", type=float, default=SWITCH_INTERVAL_S * 1000.0, help="switch interval")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # as the daemon on two cores
    sys.setswitchinterval(args.switch_ms / 1000.0)
    learner = build(args.items, args.users, args.events)
    known = [f"u{u}" for u in range(args.users) if learner.featurizer.users.get(f"u{u}") is not None]
    users = [known[k] for k in np.random.default_rng(1).choice(len(known), size=args.calls).tolist()]
    spent = timed_stages(learner)
    run(learner, spent, users[: min(50, len(users))])  # warm up
    alone = run(learner, spent, users)
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(k * k for k in range(1000))  # Python bytecode, the interpreter held throughout

    th = threading.Thread(target=busy, daemon=True)
    th.start()
    time.sleep(0.1)
    beside = run(learner, spent, users)
    stop.set()
    th.join()
    print(
        json.dumps(
            {
                "bench": "contention",
                "items": args.items,
                "events": args.events,
                "calls": len(users),
                "switch_interval_ms": args.switch_ms,
                "ms_per_call_alone": alone,
                "ms_per_call_beside_busy_thread": beside,
            }
        )
    )


if __name__ == "__main__":
    main()
