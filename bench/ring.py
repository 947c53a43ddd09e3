"""Replay ring buffer throughput: rows/s for push and for sampling batches of 4,096.

Prints one JSON object as its last line. Usage: ``python bench/ring.py``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rtrec._native import ReplayBuffer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--capacity", type=int, default=1_000_000)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--dense-dim", type=int, default=4)
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    b, f = args.batch, args.features
    idx = rng.integers(0, 2**22, b * f).astype(np.int64)
    offsets = np.arange(0, b * f + 1, f, dtype=np.int64)
    labels = (rng.random(b) < 0.1).astype(np.float32)
    weights = np.ones(b, dtype=np.float32)
    dense = rng.random((b, args.dense_dim), dtype=np.float32)
    buf = ReplayBuffer(args.capacity, dense_dim=args.dense_dim, seed=0)
    n_batches = args.rows // b
    t0 = time.perf_counter()
    for i in range(n_batches):
        ts = np.full(b, float(i))
        buf.push(idx, offsets, labels, weights, ts, None, dense)
    push_s = time.perf_counter() - t0
    result: dict[str, object] = {
        "bench": "ring",
        "capacity": args.capacity,
        "features_per_row": f,
        "dense_dim": args.dense_dim,
        "push_rows_per_s": round(n_batches * b / push_s),
    }
    for strategy, half_life in [
        ("uniform", None),
        ("recency", 100_000.0),
        ("recency_seconds", 50.0),
        ("balanced", None),
    ]:
        t0 = time.perf_counter()
        for _ in range(args.samples):
            buf.sample(b, strategy, half_life)
        result[f"sample_{strategy}_rows_per_s"] = round(args.samples * b / (time.perf_counter() - t0))
    blob_t0 = time.perf_counter()
    blob = buf.to_bytes()
    ReplayBuffer.from_bytes(blob)
    result["serialise_roundtrip_s"] = round(time.perf_counter() - blob_t0, 3)
    result["blob_mb"] = round(len(blob) / 1e6, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
