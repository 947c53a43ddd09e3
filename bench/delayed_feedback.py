"""How long an impression waits for its label: progressive quality against the window.

An impression is learned as a negative when its window passes without feedback; a positive
that comes later is learned as a late correction from the same features. A window of 0 is
the "fake negative" scheme of streaming CTR training (every impression learned as a
negative at once, every click a correction), here without importance weights. Replays
simulated impression logs with each window and reports, per window and model, AUC and
``group_auc`` (each showing counted once, with its eventual label) and the examples learned.

Usage: ``python bench/delayed_feedback.py [--events 40000] [--seeds 0,1,2] [--windows 0,60,300,1800]``
Prints one JSON object per run, then a summary JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from rtrec.config import load_config
from rtrec.replay import run_replay
from rtrec.sim import SimConfig, Simulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--windows", default="0,60,300,1800")
    ap.add_argument("--late-window", type=float, default=None, help="seconds (default: the config's)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    windows = [float(w) for w in args.windows.split(",")]
    results: dict[float, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            sim = Simulator(SimConfig(n_events=args.events, seed=seed))
            ev, items = Path(tmp) / f"ev{seed}.parquet", Path(tmp) / f"items{seed}.parquet"
            pq.write_table(sim.generate(), ev)
            pq.write_table(sim.catalog(), items)
            for w in windows:
                cfg = load_config(overrides={"text": {"enabled": False}})
                late = cfg.labels.late_window_s if args.late_window is None else args.late_window
                cfg = replace(cfg, labels=replace(cfg.labels, impression_window_s=w, late_window_s=late))
                t0 = time.perf_counter()
                rep = run_replay(ev, cfg, items_path=items, report_dir=Path(tmp) / f"r{seed}-{w}", ablations=False)
                row = {
                    "seed": seed,
                    "window_s": w,
                    "seconds": round(time.perf_counter() - t0, 1),
                    "examples": rep.data["examples"],
                    "evaluated": rep.data["evaluated"],
                    "models": {
                        k: {"auc": v["auc"], "group_auc": v["group_auc"], "logloss": v["logloss"]}
                        for k, v in rep.models.items()
                    },
                }
                print(json.dumps(row), flush=True)
                for k, v in rep.models.items():
                    r = results.setdefault(w, {})
                    r.setdefault(f"{k}.auc", []).append(v["auc"])
                    r.setdefault(f"{k}.group_auc", []).append(v["group_auc"])
    summary = {
        str(w): {k: round(float(np.mean([x for x in v if x is not None])), 4) for k, v in r.items()}
        for w, r in results.items()
    }
    print(json.dumps({"events": args.events, "seeds": seeds, "mean": summary}))


if __name__ == "__main__":
    main()
