"""How often can item text pick the cold film a user rates next? A top-K bound on MovieLens.

``bench/replay_movielens.py --text`` asks of the served pipeline a cold-item HR@10 (the target
film had fewer than 5 earlier ratings) at least twice that of the same pipeline with every
text piece off. This benchmark measures what the text can give there, apart from any
pipeline: in stream order, for a sample of the positive ratings (4 stars or more) of a cold
film by a user with an earlier rating, every film the user could be shown that is as cold
(fewer than ``--cold-threshold`` earlier ratings, released no later than the rating's year,
not rated by the user yet) is scored, and the target's rank among them is kept. Scorers:

- ``text_recent``: cosine of the centred MiniLM vectors to the mean of the user's last 5
  rated films (the content source's query on the items just engaged with);
- ``text_history``: the same against the last 20;
- ``text_both``: the sum of the two;
- ``genres``: cosine of the genre indicators to the last 20 (what a model without text
  knows of a film it has no feedback on);
- ``release_year``: the newest films first;
- ``random``.

``HR@k`` of a scorer is the share of these targets it ranks in its first ``k``: a list whose
``k`` places all go to the cold films the scorer likes best reaches at most that share of the
cold targets. Prints one JSON object as its last line.

Usage: ``python bench/cold_text_bound.py [--data ../shared/data/movielens-ml-latest-small]``
(encodes the catalog with MiniLM, then walks the ratings: about 3.5 minutes here).
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
from rtrec.text import centre, item_texts, load_encoder

RECENT, HISTORY = 5, 20
KS = (1, 3, 10, 100)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("RTREC_MOVIELENS", "../shared/data/movielens-ml-latest-small")
    ap.add_argument("--data", type=Path, default=Path(default))
    ap.add_argument("--cold-threshold", type=int, default=5)
    ap.add_argument("--sample", type=float, default=0.1, help="share of the cold positives ranked")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cfg = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        events_path, items_path = convert_movielens(args.data, tmp)
        ev = pq.read_table(events_path).sort_by("ts")
        items = pq.read_table(items_path)
    row_of = {i: k for k, i in enumerate(items.column("item_id").to_pylist())}
    attrs = [json.loads(a or "{}") for a in items.column("attrs").to_pylist()]
    year = np.array([a.get("year") or 0 for a in attrs])
    names = sorted({g for a in attrs for g in a.get("genres", [])})
    genres = np.zeros((len(attrs), len(names)))
    for k, a in enumerate(attrs):
        genres[k, [names.index(g) for g in a.get("genres", [])]] = 1.0
    genres = _unit(genres)
    print(f"encoding {len(attrs)} items with {cfg.text.model}", file=sys.stderr, flush=True)
    raw = load_encoder(cfg.text, device="cpu").encode(item_texts(items, cfg.text.template))
    text = _unit(centre(raw, raw.mean(axis=0)).astype(np.float64))

    rng = np.random.default_rng(args.seed)
    count = np.zeros(len(attrs), np.int64)
    history: dict[str, list[int]] = {}
    rated: dict[str, np.ndarray] = {}
    ranks: dict[str, list[int]] = {s: [] for s in ("text_recent", "text_history", "text_both", "genres")}
    ranks |= {"release_year": [], "random": []}
    pools: list[int] = []
    users = ev.column("user_id").to_pylist()
    films = [row_of[i] for i in ev.column("item_id").to_pylist()]
    values = ev.column("value").to_numpy()
    years = [t.year for t in ev.column("ts").to_pylist()]
    for user, film, value, when in zip(users, films, values, years, strict=True):
        hist = history.setdefault(user, [])
        seen = rated.setdefault(user, np.zeros(len(attrs), bool))
        if value >= 4.0 and count[film] < args.cold_threshold and hist and rng.random() < args.sample:
            pool_mask = (count < args.cold_threshold) & (year <= when) & ~seen
            pool_mask[film] = True
            pool = np.flatnonzero(pool_mask)
            at = int(np.searchsorted(pool, film))
            recent, longer = _unit(text[hist[-RECENT:]].mean(0)), _unit(text[hist].mean(0))
            scores = {
                "text_recent": text[pool] @ recent,
                "text_history": text[pool] @ longer,
                "text_both": text[pool] @ (recent + longer),
                "genres": genres[pool] @ genres[hist].mean(0),
                "release_year": year[pool].astype(np.float64),
                "random": rng.random(len(pool)),
            }
            for name, s in scores.items():
                # Ties count against the scorer: the target ranks after every film scored as high.
                ranks[name].append(int((s >= s[at]).sum()) - 1)
            pools.append(len(pool))
        count[film] += 1
        seen[film] = True
        hist.append(film)
        del hist[:-HISTORY]

    out: dict[str, Any] = {
        "bench": "cold_text_bound",
        "text_model": cfg.text.model,
        "cold_threshold": args.cold_threshold,
        "ranked": len(pools),
        "pool_median": float(np.median(pools)) if pools else None,
    }
    for name, r in ranks.items():
        a = np.asarray(r)
        out[name] = {f"hr_at_{k}": float((a < k).mean()) for k in KS} | {"median_rank": float(np.median(a))}
        hr = "  ".join(f"HR@{k} {out[name][f'hr_at_{k}']:.4f}" for k in KS)
        print(f"{name:13s} {hr}  median rank {out[name]['median_rank']:.0f}", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
