"""Feedback cleaning against simulated bots and noise: what it catches, and the top-K it wins back.

For each seed the simulator makes one world with bots (``--bots``, a share of all events:
promoters pushing a few weak items, click-spammers, and with ``--crawlers`` that share of
the bots' events from crawlers walking the catalog page by page) and noise (``--noise``: accidental
repeats and absurd purchase values), the truth recorded in each injected event's context.
Dropping those events gives the same stream without bots. Four replays, each through the
learner the daemon runs (point in time, progressive):

- ``no_bots``: the stream without bots or noise, cleaning off;
- ``bots``: the stream with them, cleaning off;
- ``bots_cleaned``: the stream with them, cleaning on (the default config);
- ``no_bots_cleaned``: the stream without them, cleaning on (what cleaning costs real users).

Top-K is measured on real users only: a sample of their positives, each ranked by the served
pipeline as of just before (HR@10, NDCG@10), and AUC / log loss over their examples.
``hr_recovered_share`` is (HR ``bots_cleaned`` - HR ``bots``) / (HR ``no_bots`` - HR ``bots``),
over the seeds' means. Quarantine precision and recall are against the simulator's truth,
counting only cleaning decisions (not rows set aside as unlearnable). The last line printed
is one JSON object.

Usage: ``python bench/cleaning.py [--seeds 0,1,2] [--events 60000] [--bots 0.1] [--noise 0.02] [--crawlers 0]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec.config import load_config
from rtrec.events import EventLog
from rtrec.labels import FOLLOWUP
from rtrec.learn import OnlineLearner
from rtrec.learn.metrics import auc, logloss
from rtrec.learn.step import Resolving
from rtrec.rank.pipeline import rank_variants
from rtrec.sim import SimConfig, Simulator

MAIN = "rtrec"
RUNS = (
    ("no_bots", False, False),
    ("bots", True, False),
    ("bots_cleaned", True, True),
    ("no_bots_cleaned", False, True),
)
UNLEARNABLE = ("ts:", "event_type:")  # set aside by the learner's intake, not by cleaning


def truth_of(events: pa.Table) -> np.ndarray:
    """The simulator's truth per event: "bot", "noise" or "" (a real user's event)."""
    out = []
    for ctx in events.column("context").to_pylist():
        out.append(json.loads(ctx).get("truth", "") if ctx else "")
    return np.array(out, dtype=object)


def replay(
    events: pa.Table, items: pa.Table, cfg: Any, real_users: set[str], promoted: set[str], sample: float, seed: int
) -> dict:
    log = EventLog.open(":memory:", cfg.events)
    log.ingest(events, order_by_ts=True)
    log.upsert_items(items)
    stored = pa.Table.from_batches(list(log.tail(0)))
    seq_truth = dict(zip(stored.column("seq").to_pylist(), truth_of(stored).tolist(), strict=True))
    learner = OnlineLearner(cfg)
    learner.set_catalog(log.items())
    hits: list[float] = []
    gains: list[float] = []
    pushed: list[float] = []  # share of each top-10 that is promoted items
    pushed_by: dict[str, int] = {}  # which candidate sources proposed the promoted items in top-10s
    labels: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    real_rows: list[np.ndarray] = []

    class RealUsers:
        def pick(self, r: Resolving) -> np.ndarray:
            # The same real positives in every run (drawn by a hash of who, what and when), so
            # that the runs' HR@10 differ by what they learned, not by which positives were drawn.
            users, items = learner.featurizer.users.ids, learner.featurizer.items.ids
            first = (r.labels >= 0.5) & (r.origin != FOLLOWUP)
            rows = []
            for k in np.flatnonzero(first).tolist():
                user, item = users[r.user_idx[k]], items[r.item_idx[k]]
                key = zlib.crc32(f"{seed}|{user}|{item}|{r.ts[k]:.3f}".encode()) / 2**32
                if user in real_users and key < sample:
                    rows.append(k)
            return np.array(rows, np.int64)

        def rank(self, r: Resolving, row: int) -> None:
            f = learner.featurizer
            user, item = f.users.ids[r.user_idx[row]], int(r.item_idx[row])
            ranked = rank_variants(learner, user, float(r.ts[row]), [MAIN], point_in_time=True).get(MAIN)
            top = np.zeros(0, np.int64)
            if ranked is not None:
                rows = ranked.order()[:10]
                top = ranked.cands.items[rows]
                for r, i in zip(rows.tolist(), top.tolist(), strict=True):
                    if f.items.ids[i] in promoted:
                        for source in ranked.cands.sources_of(r):
                            pushed_by[source] = pushed_by.get(source, 0) + 1
            pos = np.flatnonzero(top == item)
            pushed.append(sum(f.items.ids[i] in promoted for i in top.tolist()) / 10.0)
            hits.append(float(len(pos) > 0))
            gains.append(1.0 / np.log2(pos[0] + 2.0) if len(pos) else 0.0)

    def on_chunk(b: Any) -> None:
        ids = learner.featurizer.users.ids
        keep = (b.origin != FOLLOWUP) if b.origin is not None else np.ones(len(b), bool)
        real_rows.append(keep & np.array([ids[u] in real_users for u in b.user_idx.tolist()], bool))
        labels.append(b.labels.copy())

    learner.evaluator = RealUsers()
    learner.on_chunk = on_chunk
    quarantined: list[tuple[int, str]] = []
    t0 = time.perf_counter()
    for batch in log.tail(0, batch_size=8192):
        res = learner.learn(batch, keep_predictions=True)
        preds.extend(res.predictions.get(MAIN, []))
        quarantined += res.quarantined
    res = learner.drain(keep_predictions=True)
    preds.extend(res.predictions.get(MAIN, []))
    seconds = time.perf_counter() - t0
    y, p, real = np.concatenate(labels), np.concatenate(preds), np.concatenate(real_rows)
    cleaned = [(s, r) for s, r in quarantined if not r.startswith(UNLEARNABLE)]
    truth = np.array([seq_truth[s] for s, _ in cleaned], dtype=object)
    all_truth = np.array(list(seq_truth.values()), dtype=object)
    by_rule: dict[str, dict[str, int]] = {}
    for (_, reason), t in zip(cleaned, truth.tolist(), strict=True):
        rule = reason.split(":", 1)[0]
        by_rule.setdefault(rule, {"bot": 0, "noise": 0, "real": 0})[t or "real"] += 1
    return {
        "events": stored.num_rows,
        "events_per_s": stored.num_rows / seconds,
        "ranked": len(hits),
        "hr_at_10": float(np.mean(hits)) if hits else None,
        "ndcg_at_10": float(np.mean(gains)) if gains else None,
        "promoted_in_top10": float(np.mean(pushed)) if pushed else None,
        "promoted_slots_by_source": pushed_by,
        "auc": auc(y[real], p[real]),
        "logloss": logloss(y[real], p[real]),
        "quarantined": len(cleaned),
        "quarantined_truth": {k: int((truth == k).sum()) for k in ("bot", "noise", "")},
        "injected": {k: int((all_truth == k).sum()) for k in ("bot", "noise")},
        "by_rule": by_rule,
        "flagged": learner.stats().get("cleaning", {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--bots", type=float, default=0.1)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--events-per-bot", type=int, default=50, help="how long a bot lives, in events")
    ap.add_argument(
        "--bandwagon", type=float, default=0.5, help="share of a promoter's clicks on popular items (0: a pure push)"
    )
    ap.add_argument(
        "--crawlers", type=float, default=0.0, help="share of the bot events from crawlers walking the catalog in order"
    )
    ap.add_argument("--ranking-sample", type=float, default=0.5)
    ap.add_argument(
        "--clean",
        default="{}",
        help='JSON object of [clean] settings for the cleaned runs, e.g. {"bot_min_clicks": 10}',
    )
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = load_config(overrides={"text": {"enabled": False}})
    per_seed: list[dict[str, Any]] = []
    for seed in seeds:
        sim_cfg = SimConfig(
            n_users=args.users,
            n_items=args.items,
            n_events=args.events,
            seed=seed,
            bot_share=args.bots,
            noise_share=args.noise,
            events_per_bot=args.events_per_bot,
            bot_bandwagon=args.bandwagon,
            bot_crawlers=args.crawlers,
        )
        sim = Simulator(sim_cfg)
        dirty, items = sim.generate(), sim.catalog()
        truth = truth_of(dirty)
        clean = dirty.filter(pa.array(truth == ""))
        real_users = set(pc.unique(clean.column("user_id")).to_pylist())
        out: dict[str, Any] = {"seed": seed, "promoted": len(sim.promoted_items)}
        for name, with_bots, cleaning in RUNS:
            clean_cfg = dataclasses.replace(
                base.clean, enabled=cleaning, **(json.loads(args.clean) if cleaning else {})
            )
            cfg = dataclasses.replace(base, clean=clean_cfg)
            data = dirty if with_bots else clean
            out[name] = replay(data, items, cfg, real_users, set(sim.promoted_items), args.ranking_sample, seed)
            r = out[name]
            print(
                f"seed {seed} {name:16s} HR@10 {r['hr_at_10']:.4f} NDCG@10 {r['ndcg_at_10']:.4f} "
                f"AUC {r['auc']:.4f} promoted {r['promoted_in_top10']:.4f} ranked {r['ranked']} "
                f"quarantined {r['quarantined']} {r['quarantined_truth']}",
                flush=True,
            )
        per_seed.append(out)

    def mean(run: str, key: str) -> float:
        return float(np.mean([s[run][key] for s in per_seed]))

    def recovered(key: str, lower_is_better: bool = False) -> float | None:
        sign = -1.0 if lower_is_better else 1.0
        lost = sign * (mean("no_bots", key) - mean("bots", key))
        return sign * (mean("bots_cleaned", key) - mean("bots", key)) / lost if lost > 0 else None

    hr = {run: mean(run, "hr_at_10") for run, _, _ in RUNS}
    lost = hr["no_bots"] - hr["bots"]
    q = sum(s["bots_cleaned"]["quarantined"] for s in per_seed)
    q_true = sum(
        s["bots_cleaned"]["quarantined_truth"]["bot"] + s["bots_cleaned"]["quarantined_truth"]["noise"]
        for s in per_seed
    )
    injected = {k: sum(s["bots_cleaned"]["injected"][k] for s in per_seed) for k in ("bot", "noise")}
    caught = {k: sum(s["bots_cleaned"]["quarantined_truth"][k] for s in per_seed) for k in ("bot", "noise")}
    summary = {
        "bench": "cleaning",
        "machine": platform.processor() or platform.machine(),
        "seeds": seeds,
        "events": args.events,
        "bot_share": args.bots,
        "noise_share": args.noise,
        "events_per_bot": args.events_per_bot,
        "bandwagon": args.bandwagon,
        "crawlers": args.crawlers,
        "hr_at_10": hr,
        "ndcg_at_10": {run: mean(run, "ndcg_at_10") for run, _, _ in RUNS},
        "auc": {run: mean(run, "auc") for run, _, _ in RUNS},
        "promoted_in_top10": {run: mean(run, "promoted_in_top10") for run, _, _ in RUNS},
        "logloss": {run: mean(run, "logloss") for run, _, _ in RUNS},
        "hr_lost": lost,
        # None when the bots cost no HR@10 at all: nothing to recover.
        "hr_recovered_share": (hr["bots_cleaned"] - hr["bots"]) / lost if lost > 0 else None,
        "auc_recovered_share": recovered("auc"),
        # The attack's success: the share of real users' top-10 slots that promoted items take.
        "promoted_removed_share": recovered("promoted_in_top10", lower_is_better=True),
        "quarantine_precision": q_true / q if q else None,
        "quarantine_recall": {k: caught[k] / injected[k] if injected[k] else None for k in injected},
        "real_events_quarantined_without_bots": sum(s["no_bots_cleaned"]["quarantined"] for s in per_seed),
        "events_per_s": {run: mean(run, "events_per_s") for run, _, _ in RUNS},
        "per_seed": per_seed,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
