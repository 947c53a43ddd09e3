"""Retrieval at scale, in process: co-visitation memory and update cost, content search, the ranked pipeline.

    python bench/retrieval.py covisit    # 1,000,000 items: bytes held, ns per event, recommend latency
    python bench/retrieval.py content    # 1,000,000 x 384 embeddings: exact vs IVF time per query, recall@100
    python bench/retrieval.py pipeline   # a learner with 1,000,000 items with text: rank() latency
    python bench/retrieval.py all

Synthetic data: item popularity is Zipf-like, users engage in sessions within a topic, and
embeddings cluster by topic. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from rtrec import _native
from rtrec.retrieve.ann import IVFIndex


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ms(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3), "n": len(a)}


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sessions(n_items: int, n_events: int, topics: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, ts): sessions of 10 engagements within one topic, items Zipf-like within it."""
    rng = np.random.default_rng(seed)
    per_topic = n_items // topics
    n_sessions = n_events // 10
    topic = rng.integers(topics, size=n_sessions)
    rank = np.minimum(rng.zipf(1.3, size=(n_sessions, 10)) - 1, per_topic - 1)
    items = (topic[:, None] * per_topic + rank).reshape(-1)
    users = np.repeat(rng.integers(n_sessions // 3 + 1, size=n_sessions), 10)
    ts = 1_700_000_000.0 + np.arange(len(items), dtype=np.float64) * 0.01
    return users.astype(np.int64), items.astype(np.int64), ts


def bench_covisit(args: argparse.Namespace) -> dict[str, Any]:
    users, items, ts = sessions(args.items, args.events, topics=args.items // 1000)
    cv = _native.CoVisitation(args.max_neighbours, 20, 30 * 86400.0)
    rss0 = rss_mib()
    w = np.ones(len(items), np.float32)
    t0 = time.perf_counter()
    step = 10_000
    for lo in range(0, len(items), step):
        cv.observe(users[lo : lo + step], items[lo : lo + step], ts[lo : lo + step], w[lo : lo + step])
    seconds = time.perf_counter() - t0
    say(f"co-visitation: {len(items):,} events in {seconds:.1f} s, {cv.pairs:,} pair updates")
    # Every item's list full (the served pairs and as many in reserve): the memory bound at this catalog size.
    full_bytes = args.items * (2 * args.max_neighbours * 8 + 24 + 4)
    lat = []
    rng = np.random.default_rng(1)
    for u in rng.choice(np.unique(users), size=2000).tolist():
        t = time.perf_counter()
        cv.recommend(int(u), 100, None)
        lat.append(time.perf_counter() - t)
    return {
        "items": args.items,
        "events": len(items),
        "max_neighbours": args.max_neighbours,
        "ns_per_event": round(seconds / len(items) * 1e9, 1),
        "pair_updates_per_event": round(cv.pairs / len(items), 2),
        "memory_bytes": cv.memory_bytes,
        "rss_growth_mib": round(rss_mib() - rss0, 1),
        "bound_bytes_every_list_full": full_bytes,
        "users_with_history": cv.users,
        "recommend_100_ms": ms(lat),
    }


def clustered(n: int, dim: int, topics: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        t = rng.integers(topics, size=hi - lo)
        x[lo:hi] = centres[t] + 1.5 * rng.standard_normal((hi - lo, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def bench_content(args: argparse.Namespace) -> dict[str, Any]:
    x = clustered(args.items, args.dim, topics=2000)
    say(f"embeddings: {x.shape}, {x.nbytes / 2**20:,.0f} MiB")
    rng = np.random.default_rng(2)
    queries = x[rng.choice(len(x), size=args.queries)] + 0.5 * clustered(args.queries, args.dim, 50, seed=3)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact, t_exact = [], []
    for q in queries:
        t = time.perf_counter()
        s = x @ q
        top = np.argpartition(-s, 99)[:100]
        t_exact.append(time.perf_counter() - t)
        exact.append(set(top.tolist()))
    say(f"exact: {ms(t_exact)}")
    t = time.perf_counter()
    index = IVFIndex(x)
    build_s = time.perf_counter() - t
    say(f"IVF: {index.lists} lists built in {build_s:.1f} s")
    out: dict[str, Any] = {
        "items": args.items,
        "dim": args.dim,
        "exact_ms": ms(t_exact),
        "ivf_lists": index.lists,
        "ivf_build_s": round(build_s, 1),
    }
    for probe in (8, 16, 32):
        lat, recall = [], []
        for q, truth in zip(queries, exact, strict=True):
            t = time.perf_counter()
            rows, _ = index.search(q, 100, probe)
            lat.append(time.perf_counter() - t)
            recall.append(len(truth & set(rows.tolist())) / 100)
        out[f"ivf_probe_{probe}"] = {"ms": ms(lat), "recall_at_100": round(float(np.mean(recall)), 4)}
        say(f"IVF probe {probe}: {out[f'ivf_probe_{probe}']}")
    return out


def bench_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """``rank`` for known users on a learner holding 1,000,000 items with text embeddings."""
    import pyarrow as pa

    from rtrec.config import load_config
    from rtrec.learn import OnlineLearner
    from rtrec.rank import pipeline

    n = args.items
    cfg = load_config(overrides={"text": {"enabled": True}})
    learner = OnlineLearner(cfg, text_dim=args.dim)
    ids = [f"i{i}" for i in range(n)]
    topics = n // 1000
    learner.set_catalog(pa.table({"item_id": ids, "category": [f"c{i // 1000 % 50}" for i in range(n)]}))
    t = time.perf_counter()
    learner.set_item_embeddings(ids, clustered(n, args.dim, 2000))
    say(f"catalog and embeddings set, index built, in {time.perf_counter() - t:.1f} s")
    users, items, ts = sessions(n, args.pipeline_events, topics=topics, seed=4)
    user_ids = [f"u{u}" for u in users.tolist()]
    t = time.perf_counter()
    step = 20_000
    for lo in range(0, len(items), step):
        batch = pa.table(
            {
                "seq": pa.array(np.arange(lo + 1, min(len(items), lo + step) + 1), pa.int64()),
                "event_id": [f"e{k}" for k in range(lo, min(len(items), lo + step))],
                "ts": pa.array((ts[lo : lo + step] * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
                "user_id": user_ids[lo : lo + step],
                "item_id": [ids[i] for i in items[lo : lo + step].tolist()],
                "event_type": ["click"] * len(items[lo : lo + step]),
                "value": pa.nulls(len(items[lo : lo + step]), pa.float64()),
                "request_id": pa.nulls(len(items[lo : lo + step]), pa.string()),
                "propensity": pa.nulls(len(items[lo : lo + step]), pa.float64()),
                "context": pa.nulls(len(items[lo : lo + step]), pa.string()),
            }
        )
        learner.learn(batch)
    say(f"learned {len(items):,} clicks in {time.perf_counter() - t:.1f} s")
    rng = np.random.default_rng(5)
    lat = []
    sizes = []
    known = sorted(set(user_ids))
    for u in rng.choice(len(known), size=args.queries).tolist():
        t = time.perf_counter()
        r = pipeline.rank(learner, known[u], learner.clock(), at_least=10)
        lat.append(time.perf_counter() - t)
        sizes.append(len(r.cands) if r is not None else 0)
    return {
        "items": n,
        "dim": args.dim,
        "ann": learner.retrieval._ann is not None,
        "rank_ms": ms(lat),
        "candidates_mean": round(float(np.mean(sizes)), 1),
        "rss_mib": round(rss_mib(), 0),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["covisit", "content", "pipeline", "all"])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--events", type=int, default=5_000_000, help="co-visitation: positive events fed")
    p.add_argument("--pipeline-events", type=int, default=200_000)
    p.add_argument("--max-neighbours", type=int, default=32)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=300)
    args = p.parse_args()
    modes = ["covisit", "content", "pipeline"] if args.mode == "all" else [args.mode]
    result: dict[str, Any] = {
        "bench": "retrieval",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    for mode in modes:
        result[mode] = {"covisit": bench_covisit, "content": bench_content, "pipeline": bench_pipeline}[mode](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
