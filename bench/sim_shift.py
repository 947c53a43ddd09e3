"""Recovery after a preference shift, with and without the language-model text features.

Simulates a catalog whose item text carries its topic and a stream in which many users
switch topics and a topic goes out of fashion at a known time. One replay scores every
model before it learns; from per-window AUC it reports, for ``rtrec`` (text on) and
``rtrec_no_text``, the pre-shift AUC and how many examples after the shift pass before a
window's AUC is back within 0.01 of it. Prints one JSON object as its last line.

Usage: ``python bench/sim_shift.py [--events 60000] [--text-model all-MiniLM-L6-v2]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rtrec.config import load_config
from rtrec.replay import run_replay
from rtrec.sim import SimConfig, Simulator


def recovery(windows: list[dict[str, Any]], model: str, shift_ts: float, tol: float = 0.01) -> dict[str, Any]:
    before = [w for w in windows if w["end_ts"] is not None and w["end_ts"] < shift_ts][-3:]
    after = [w for w in windows if w["start_ts"] is not None and w["start_ts"] >= shift_ts]
    pre = [w["models"][model]["auc"] for w in before if w["models"][model]["auc"] is not None]
    level = float(np.mean(pre)) if pre else None
    examples, recovered = 0, None
    for w in after:
        a = w["models"][model]["auc"]
        if level is not None and a is not None and a >= level - tol:
            recovered = examples
            break
        examples += w["examples"]
    first_after = after[0]["models"][model]["auc"] if after else None
    return {"pre_shift_auc": level, "first_window_after_auc": first_after, "examples_to_recover": recovered}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--windows", type=int, default=40)
    ap.add_argument("--text-model", default="all-MiniLM-L6-v2")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    sim = Simulator(
        SimConfig(n_users=args.users, n_items=args.items, n_events=args.events, seed=args.seed, shift_at=(0.5,))
    )
    with tempfile.TemporaryDirectory() as tmp:
        events, items = sim.write(Path(tmp) / "sim")
        shift_ts = sim.shift_times[0].timestamp()
        cfg = load_config(
            overrides={"text": {"enabled": True, "model": args.text_model}, "replay": {"windows": args.windows}}
        )
        rep = run_replay(events, cfg, items_path=items, report_dir=Path(tmp) / "report")
    data = rep.data
    out: dict[str, Any] = {"bench": "sim_shift", "events": data["events"], "examples": data["examples"]}
    for model in [m for m in data["models"] if m not in ("static",)]:
        row = data["models"][model]
        out[model] = {
            "auc": row["auc"],
            "cold_auc": row["cold_auc"],
            "drift_alarms": row["drift_alarms"],
            **recovery(data["windows"], model, shift_ts),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
