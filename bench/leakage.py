"""Leakage check on simulated impression logs: real against permuted feedback, every model.

For each seed, simulates an impression log (slates with a ``request_id``, clicks and other
feedback later), writes it as is and with each request's feedback moved to a random item of
the same request (:func:`rtrec.replay.permute_within_requests`), and replays both. On the
permuted log no model may rank clicked items above the others of their request: its
``group_auc`` must be 0.5 up to chance, and its global AUC no higher than that of a model
that sees only user- and request-level features (``user_level``: online logistic
regression on hashed user, hour, weekday and device features), plus 0.02.

Usage: ``python bench/leakage.py [--events 40000] [--seeds 0,1,2] [--no-text]``
Prints one JSON object per replay, then a summary JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from rtrec.config import Config, load_config
from rtrec.replay import permute_within_requests, run_replay
from rtrec.sim import SimConfig, Simulator

USER_LEVEL = ("user", "hour", "weekday", "device")


def replay(cfg: Config, log: Path, items: Path, out: Path, ablations: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    rep = run_replay(log, cfg, items_path=items, report_dir=out, ablations=ablations)
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "models": {k: {"auc": v["auc"], "group_auc": v["group_auc"]} for k, v in rep.models.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--no-text", action="store_true", help="replay without the language model (faster)")
    args = ap.parse_args()
    base = load_config(overrides={"text": {"enabled": not args.no_text}})
    user_level = replace(
        load_config(overrides={"text": {"enabled": False}}),
        features=replace(base.features, namespaces=USER_LEVEL, crosses=()),
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            sim = Simulator(SimConfig(n_events=args.events, seed=seed))
            items = Path(tmp) / f"items{seed}.parquet"
            pq.write_table(sim.catalog(), items)
            real = sim.generate()
            for name, log in (("real", real), ("permuted", permute_within_requests(real, seed))):
                path = Path(tmp) / f"{name}{seed}.parquet"
                pq.write_table(log, path)
                row = {"seed": seed, "log": name, **replay(base, path, items, Path(tmp) / f"r-{name}{seed}", True)}
                ref = replay(user_level, path, items, Path(tmp) / f"u-{name}{seed}", False)
                row["models"]["user_level"] = ref["models"]["linear"]
                print(json.dumps(row), flush=True)
                rows.append(row)
    summary: dict[str, Any] = {"events": args.events, "text": not args.no_text}
    for name in ("real", "permuted"):
        runs = [r for r in rows if r["log"] == name]
        summary[name] = {
            m: {
                k: round(float(np.mean([r["models"][m][k] for r in runs if r["models"][m][k] is not None])), 4)
                for k in ("auc", "group_auc")
            }
            for m in runs[0]["models"]
        }
    perm = summary["permuted"]
    ref_auc = perm["user_level"]["auc"]
    summary["max_abs_group_auc_minus_half"] = round(max(abs(v["group_auc"] - 0.5) for v in perm.values()), 4)
    summary["max_auc_over_user_level"] = round(max(v["auc"] for v in perm.values()) - ref_auc, 4)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
