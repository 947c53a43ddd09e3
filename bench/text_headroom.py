"""How much can item text add on MovieLens cold items? An oracle bound and two text features.

Text can only tell a model about the item. This benchmark gives a no-text model, Vowpal
Wabbit's logistic regression (each rating predicted before it is learned), one extra signal
at a time and reports AUC overall and on cold items (fewer than 5 earlier ratings). It
does so for two feature sets: ``genres`` (user, item, genres, user x genre: the MovieLens
replay benchmark's) and ``genres_tags`` (the same plus the items' user tags and user x
tags, as rtrec's hashed features have when the catalog is converted with ``--user-tags``;
counted over the whole file, as suits a bound). The extra signals:

- ``item_oracle``: the item's true mean label over the whole stream (future ratings
  included, the event's own label left out). No text feature can know more about an item
  than that, so its lift bounds what any item-side signal can add.
- ``text_neighbours``: the pooled label rate of the item's 20 nearest items by text
  (cosine of centred MiniLM vectors), from earlier ratings only.
- ``text_clusters``: the item's text cluster (spherical k-means on the same vectors) and a
  user x text-cluster cross.

Prints one JSON object as its last line.

Usage: ``python bench/text_headroom.py [--data ../shared/data/movielens-ml-latest-small]``
(needs ``pip install vowpalwabbit``; encodes the catalog with MiniLM, about a minute here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from rtrec.config import load_config
from rtrec.convert import convert_movielens
from rtrec.learn.metrics import auc
from rtrec.text import centre, item_texts, load_encoder

NEIGHBOURS = 20
CLUSTERS = 64


def spherical_kmeans(x: np.ndarray, k: int, iters: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iters):
        assign = np.argmax(x @ centroids.T, axis=1)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                v = members.mean(axis=0)
                centroids[j] = v / max(float(np.linalg.norm(v)), 1e-12)
    return np.argmax(x @ centroids.T, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("RTREC_MOVIELENS", "../shared/data/movielens-ml-latest-small")
    ap.add_argument("--data", type=Path, default=Path(default))
    ap.add_argument("--cold-threshold", type=int, default=5)
    args = ap.parse_args()
    import vowpalwabbit

    cfg = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        events_path, items_path = convert_movielens(args.data, tmp, user_tags=True)
        ev = pq.read_table(events_path).sort_by("ts")
        items = pq.read_table(items_path)
    item_ids = items.column("item_id").to_pylist()
    row_of = {i: k for k, i in enumerate(item_ids)}
    genres = [
        " ".join(g.replace(" ", "_").replace(":", "_") for g in json.loads(a or "{}").get("genres", []))
        for a in items.column("attrs").to_pylist()
    ]
    print(f"encoding {len(item_ids)} items with {cfg.text.model}", file=sys.stderr, flush=True)
    raw = load_encoder(cfg.text, device="cpu").encode(item_texts(items, cfg.text.template))
    vectors = centre(raw, raw.mean(axis=0))

    users = ev.column("user_id").to_pylist()
    it = np.array([row_of[i] for i in ev.column("item_id").to_pylist()])
    y = (ev.column("value").to_numpy() >= 4.0).astype(np.float64)
    n, prior = len(y), float(y.mean())

    # Cold items, the leave-one-out oracle and the text-neighbour rate, all in stream order.
    counts, positives = np.zeros(len(item_ids)), np.zeros(len(item_ids))
    total_n = np.bincount(it, minlength=len(item_ids)).astype(np.float64)
    total_pos = np.bincount(it, weights=y, minlength=len(item_ids))
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nbr = np.argpartition(-sims, NEIGHBOURS, axis=1)[:, :NEIGHBOURS]
    nbr_w = np.maximum(np.take_along_axis(sims, nbr, axis=1), 0.0)
    cold = np.empty(n, dtype=bool)
    neighbours = np.empty(n)
    for k in range(n):
        i = it[k]
        cold[k] = counts[i] < args.cold_threshold
        w, j = nbr_w[i], nbr[i]
        rate = (w @ positives[j] + 2 * prior) / (w @ counts[j] + 2)
        neighbours[k] = np.log(rate / (1 - rate))
        counts[i] += 1
        positives[i] += y[k]
    loo = np.clip((total_pos[it] - y + 2 * prior) / (total_n[it] - 1 + 2), 1e-3, 1 - 1e-3)
    oracle = np.log(loo / (1 - loo))
    cluster = spherical_kmeans(vectors, CLUSTERS)

    extras: dict[str, Any] = {
        "no_text": lambda k: "",
        "item_oracle": lambda k: f" |o mean:{oracle[k]:.5f}",
        "text_neighbours": lambda k: f" |n rate:{neighbours[k]:.5f}",
        "text_clusters": lambda k: f" |c c{cluster[it[k]]}",
    }
    # Two base feature sets: the replay benchmark's Vowpal Wabbit (genres only), and one like
    # rtrec's hashed features, which also hold the items' user tags (tags x user crossed).
    tags = [
        " ".join(t.replace(" ", "_").replace(":", "_").replace("|", "_") for t in (x or []))
        for x in items.column("tags").to_pylist()
    ]
    bases = {
        "genres": ("-q ug", lambda k: f"|u u{users[k]} |i i{it[k]} |g {genres[it[k]]}"),
        "genres_tags": ("-q ug -q ut", lambda k: f"|u u{users[k]} |i i{it[k]} |g {genres[it[k]]} |t {tags[it[k]]}"),
    }
    out: dict[str, Any] = {"bench": "text_headroom", "events": n, "cold_events": int(cold.sum())}
    for base, (quad, base_feats) in bases.items():
        rows: dict[str, Any] = {}
        for name, extra in extras.items():
            flags = f"--loss_function logistic --link logistic {quad} -b 20 --quiet"
            vw = vowpalwabbit.Workspace(flags + (" -q uc" if name == "text_clusters" else ""))
            pred = np.empty(n)
            for k in range(n):
                feats = base_feats(k) + extra(k)
                pred[k] = vw.predict(feats)
                vw.learn(f"{1 if y[k] else -1} {feats}")
            vw.finish()
            rows[name] = {"auc": auc(y, pred), "cold_auc": auc(y[cold], pred[cold])}
            print(
                f"{base:12s} {name:16s} AUC {rows[name]['auc']:.4f}  cold-item AUC {rows[name]['cold_auc']:.4f}",
                file=sys.stderr,
            )
        for name in ("item_oracle", "text_neighbours", "text_clusters"):
            rows[name]["cold_auc_lift"] = rows[name]["cold_auc"] - rows["no_text"]["cold_auc"]
            rows[name]["auc_lift"] = rows[name]["auc"] - rows["no_text"]["auc"]
        out[base] = rows
    print(json.dumps(out))


if __name__ == "__main__":
    main()
