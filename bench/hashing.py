"""Feature hashing throughput: rtrec's native hasher against sklearn and a Python loop.

Hashes N synthetic events x 8 namespaces + 2 crosses. Prints one JSON object as its last
line. Usage: ``python bench/hashing.py [--events 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtrec.features import Hasher
from tests.features.reference import hash_rows

NAMESPACES = ["user", "item", "category", "hour", "weekday", "device", "page", "country"]
CROSSES = [("user", "category"), ("item", "device")]
CARDINALITY = {
    "user": 100_000,
    "item": 50_000,
    "category": 200,
    "hour": 24,
    "weekday": 7,
    "device": 4,
    "page": 30,
    "country": 60,
}


def make_events(n: int, seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    return {ns: [f"{ns[:2]}{v}" for v in rng.integers(0, CARDINALITY[ns], n)] for ns in NAMESPACES}


def best_of(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--sklearn-events", type=int, default=1_000_000)
    ap.add_argument("--python-events", type=int, default=20_000)
    ap.add_argument("--bits", type=int, default=22)
    args = ap.parse_args()

    events = make_events(args.events)
    per_event = len(NAMESPACES) + len(CROSSES)
    columns = {ns: pa.array(v) for ns, v in events.items()}
    hasher = Hasher(NAMESPACES, bits=args.bits, crosses=CROSSES)
    hasher.hash({ns: c.slice(0, 1000) for ns, c in columns.items()})
    t_rtrec = best_of(lambda: hasher.hash(columns), 5)
    out = hasher.hash(columns, stats=True)
    assert len(out.indices) == args.events * per_event
    rtrec_fps = args.events * per_event / t_rtrec

    from sklearn.feature_extraction import FeatureHasher as SkHasher

    n_sk = min(args.sklearn_events, args.events)
    dicts = []
    for r in range(n_sk):
        d = {f"{ns}={events[ns][r]}": 1 for ns in NAMESPACES}
        for a, b in CROSSES:
            d[f"{a}^{b}={events[a][r]}^{events[b][r]}"] = 1
        dicts.append(d)
    sk = SkHasher(n_features=2**args.bits, input_type="dict")
    t_sk = best_of(lambda: sk.transform(dicts), 1)
    sk_fps = n_sk * per_event / t_sk

    n_py = min(args.python_events, args.events)
    sub = {ns: v[:n_py] for ns, v in events.items()}
    t_py = best_of(lambda: hash_rows(sub, NAMESPACES, bits=args.bits, crosses=CROSSES), 1)
    py_fps = n_py * per_event / t_py

    result = {
        "bench": "hashing",
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()}".strip(),
        "events": args.events,
        "features_per_event": per_event,
        "bits": args.bits,
        "rtrec_seconds": round(t_rtrec, 4),
        "rtrec_features_per_s": round(rtrec_fps),
        "sklearn_events": n_sk,
        "sklearn_features_per_s": round(sk_fps),
        "python_events": n_py,
        "python_features_per_s": round(py_fps),
        "ratio_vs_sklearn": round(rtrec_fps / sk_fps, 2),
        "collision_rate": round(out.collision_rate or 0.0, 5),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
