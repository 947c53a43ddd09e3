"""Recovery after a preference shift, with and without the language-model text features.

Simulates a catalog whose item text carries its topic and a stream in which many users
switch topics and a topic goes out of fashion at a known time. One replay scores every
model before it learns; from per-window AUC it reports, for ``rtrec`` (text on) and
``rtrec_no_text``, the pre-shift AUC and how many examples after the shift pass before a
window's AUC is back within 0.01 of it. Prints one JSON object as its last line.

The simulated items also have a style (``--styles``, default 6) that shows only in their
words, never in the category or tags, so the text carries something the hashed features
do not. Each seed is a different world; the summary gives means and the median recovery.

Usage: ``python bench/sim_shift.py [--events 60000] [--seeds 0,1,2,3,4] [--styles 6]
[--text-model all-MiniLM-L6-v2]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rtrec.config import load_config
from rtrec.learn.metrics import auc
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
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma list: one world and one replay per seed")
    ap.add_argument("--styles", type=int, default=6, help="text-only item styles (0: the text says only the topic)")
    ap.add_argument("--style-scale", type=float, default=3.0)
    args = ap.parse_args()

    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    runs = [one_world(args, seed) for seed in seeds]
    out: dict[str, Any] = {"bench": "sim_shift", "seeds": seeds, "styles": args.styles}
    for model in runs[0]["models"]:
        rows = [r["models"][model] for r in runs]
        recovered = [r["examples_to_recover"] for r in rows]
        out[model] = {
            "auc_mean": float(np.mean([r["auc"] for r in rows])),
            "cold_auc_mean": float(np.mean([r["cold_auc"] for r in rows])),
            "pre_shift_auc_mean": float(np.mean([r["pre_shift_auc"] for r in rows])),
            "first_window_after_auc_mean": float(np.mean([r["first_window_after_auc"] for r in rows])),
            "examples_to_recover_median": float(np.median([np.inf if x is None else x for x in recovered])),
            "examples_to_recover": recovered,
            "drift_alarms": [r["drift_alarms"] for r in rows],
        }
    for key in ("true_p_auc", "true_p_auc_without_styles"):
        if key in runs[0]:
            out[key + "_mean"] = float(np.mean([r[key] for r in runs]))
    out["runs"] = runs
    print(json.dumps(out))


def one_world(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    sim = Simulator(
        SimConfig(
            n_users=args.users,
            n_items=args.items,
            n_events=args.events,
            seed=seed,
            shift_at=(0.5,),
            n_styles=args.styles,
            style_scale=args.style_scale,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        events, items = sim.write(Path(tmp) / "sim")
        shift_ts = sim.shift_times[0].timestamp()
        cfg = load_config(
            overrides={"text": {"enabled": True, "model": args.text_model}, "replay": {"windows": args.windows}}
        )
        rep = run_replay(events, cfg, items_path=items, report_dir=Path(tmp) / "report")
    data = rep.data
    models = {}
    for model in [m for m in data["models"] if m not in ("static",)]:
        row = data["models"][model]
        models[model] = {
            "auc": row["auc"],
            "cold_auc": row["cold_auc"],
            "drift_alarms": row["drift_alarms"],
            **recovery(data["windows"], model, shift_ts),
        }
    ceiling = true_click_auc(sim)
    print(f"seed {seed}: " + ", ".join(f"{m} {v['auc']:.4f}" for m, v in models.items()), file=sys.stderr, flush=True)
    return {"seed": seed, "events": data["events"], "examples": data["examples"], "models": models, **ceiling}


def true_click_auc(sim: Simulator) -> dict[str, float]:
    """AUC of the true click probabilities on impressions (click or not), with and without the style term."""
    ev = sim.generate()
    kind = ev.column("event_type").to_numpy(zero_copy_only=False)
    req = ev.column("request_id").to_numpy(zero_copy_only=False)
    item = ev.column("item_id").to_numpy(zero_copy_only=False)
    clicked = set(zip(req[kind == "click"], item[kind == "click"], strict=True))
    imp = np.flatnonzero(kind == "impression")
    y = np.array([(req[k], item[k]) in clicked for k in imp], dtype=np.float64)
    users = np.array([sim._user(u) for u in ev.column("user_id").to_numpy(zero_copy_only=False)[imp]])
    items = np.array([sim._item(i) for i in item[imp]])
    ts = ev.column("ts").cast("int64").to_numpy()[imp]
    out = {"true_p_auc": auc(y, sim._click_p(users, items, ts))}
    if sim.cfg.n_styles:
        no_styles = Simulator(replace(sim.cfg, n_styles=0))  # the same world: styles have their own stream
        out["true_p_auc_without_styles"] = auc(y, no_styles._click_p(users, items, ts))
    return out


if __name__ == "__main__":
    main()
