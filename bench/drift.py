"""Drift alarms against the simulator's known shift times: precision and recall per setting.

Each world shifts at known times (some users switch taste, a topic fades). A replay (text
off) raises the served model's Page-Hinkley alarms; an alarm is *near* a shift when it
comes within ``--near`` of the timeline after it. Precision is the share of alarms that are
near a shift; recall the share of shifts with an alarm near them. Sweeps the detector's
threshold (``learner.drift_threshold``) and tolerance (``learner.drift_delta``).

Usage: ``python bench/drift.py [--events 60000] [--seeds 0,1,2] [--thresholds 0.3,1,2,4] [--deltas 0.01,0.05]``
Prints one JSON object per setting, then a summary JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from rtrec.config import load_config
from rtrec.replay import run_replay
from rtrec.sim import SimConfig, Simulator

SHIFTS = (0.35, 0.7)


def score(alarms: list[float], shifts: list[float], start: float, end: float, near: float) -> tuple[int, int, int]:
    """(alarms near a shift, all alarms, shifts with an alarm near them); ``near`` is a share of the timeline."""
    span = (end - start) * near
    hits = sum(any(s <= a <= s + span for s in shifts) for a in alarms)
    found = sum(any(s <= a <= s + span for a in alarms) for s in shifts)
    return hits, len(alarms), found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--thresholds", default="0.3,1,2,4")
    ap.add_argument("--deltas", default="0.01,0.05")
    ap.add_argument("--near", type=float, default=0.1, help="share of the timeline after a shift that counts as near")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        worlds = []
        for seed in seeds:
            sim = Simulator(SimConfig(n_events=args.events, seed=seed, shift_at=SHIFTS, switch_fraction=0.5))
            ev, items = Path(tmp) / f"ev{seed}.parquet", Path(tmp) / f"items{seed}.parquet"
            events = sim.generate()
            pq.write_table(events, ev)
            pq.write_table(sim.catalog(), items)
            ts = events.column("ts").cast("int64").to_numpy() / 1e6
            worlds.append((seed, ev, items, [t.timestamp() for t in sim.shift_times], float(ts.min()), float(ts.max())))
        for delta in (float(d) for d in args.deltas.split(",")):
            for threshold in (float(t) for t in args.thresholds.split(",")):
                hits = total = found = 0
                for _seed, ev, items, shifts, start, end in worlds:
                    cfg = load_config(
                        overrides={
                            "text": {"enabled": False},
                            "learner": {"drift_threshold": threshold, "drift_delta": delta},
                        }
                    )
                    rep = run_replay(ev, cfg, items_path=items, report_dir=Path(tmp) / "r", ablations=False)
                    alarms = [a["ts"] for a in rep.data["drift_alarms"]]
                    h, n, f = score(alarms, shifts, start, end, args.near)
                    hits, total, found = hits + h, total + n, found + f
                row = {
                    "threshold": threshold,
                    "delta": delta,
                    "alarms": total,
                    "near_a_shift": hits,
                    "precision": round(hits / total, 3) if total else None,
                    "recall": round(found / (len(SHIFTS) * len(worlds)), 3),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(json.dumps({"bench": "drift", "events": args.events, "seeds": seeds, "near": args.near, "settings": rows}))


if __name__ == "__main__":
    main()
