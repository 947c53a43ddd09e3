"""Off-policy estimators against the simulator's truth, over many seeds.

For each seed, a simulated world logs ``--requests`` lists of ``--k`` with the logging
policy (through rtrec's own slate code, with the propensities the daemon logs), and IPS,
SNIPS and DR estimate each target policy from that log (see ``rtrec.ope.world``). The true
value of each target is computed exactly from the simulator's click probabilities.

    python bench/ope.py                    # 20 seeds, softmax logging, two targets
    python bench/ope.py --seeds 5 --requests 2000
    python bench/ope.py --base-logit -6      # rarer clicks (about 8% of shown items)

Reports, per estimator over every (seed, target): coverage of the 95% intervals, bias and
RMSE against the truth, mean interval width and effective sample size. The last line of
stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from rtrec.ope.estimators import ESTIMATORS
from rtrec.ope.policies import parse_policy
from rtrec.ope.world import WorldConfig, run_world


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--requests", type=int, default=4_000)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--items", type=int, default=100)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--logging", default="softmax:temperature=0.5")
    p.add_argument("--target", action="append", default=None, help="repeatable; default epsilon=0.1 and softmax=0.3")
    p.add_argument("--clip", type=float, default=None)
    p.add_argument(
        "--base-logit", type=float, default=-3.0, help="the simulator's base click logit (lower: rarer clicks)"
    )
    args = p.parse_args()
    chosen = args.target or ["epsilon=0.1", "softmax:temperature=0.3"]
    targets = tuple(parse_policy(t) for t in chosen)
    errs: dict[str, list[float]] = {e: [] for e in ESTIMATORS}
    covered: dict[str, list[bool]] = {e: [] for e in ESTIMATORS}
    width: dict[str, list[float]] = {e: [] for e in ESTIMATORS}
    ess: dict[str, list[float]] = {e: [] for e in ESTIMATORS}
    per_target: dict[str, dict[str, list[float]]] = {}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        cfg = WorldConfig(
            n_users=args.users,
            n_items=args.items,
            k=args.k,
            requests=args.requests,
            seed=seed,
            logging=parse_policy(args.logging),
            targets=targets,
            clip=args.clip,
            base_logit=args.base_logit,
        )
        r = run_world(cfg)
        for label, est in r.estimates.items():
            truth = r.truth[label]
            row = per_target.setdefault(label, {"truth": []} | {e: [] for e in ESTIMATORS})
            row["truth"].append(truth)
            for name, e in est.items():
                errs[name].append(e.value - truth)
                covered[name].append(bool(e.low <= truth <= e.high))
                width[name].append(e.high - e.low)
                ess[name].append(e.ess)
                row[name].append(e.value)
        print(
            f"seed {seed}: observed {r.observed_click_rate:.4f}, logging truth {r.truth['logging']:.4f}; "
            + "; ".join(
                f"{lab}: truth {r.truth[lab]:.4f} "
                + " ".join(f"{n} {e.value:.4f}{'' if e.low <= r.truth[lab] <= e.high else '*'}" for n, e in est.items())
                for lab, est in r.estimates.items()
            ),
            file=sys.stderr,
            flush=True,
        )
    out = {
        "bench": "ope",
        "seeds": args.seeds,
        "requests": args.requests,
        "k": args.k,
        "logging": parse_policy(args.logging).label,
        "targets": [t.label for t in targets],
        "clip": args.clip,
        "base_logit": args.base_logit,
        "coverage": {e: float(np.mean(covered[e])) for e in ESTIMATORS},
        "bias": {e: float(np.mean(errs[e])) for e in ESTIMATORS},
        "rmse": {e: float(np.sqrt(np.mean(np.square(errs[e])))) for e in ESTIMATORS},
        "mean_interval_width": {e: float(np.mean(width[e])) for e in ESTIMATORS},
        "mean_ess": {e: float(np.mean(ess[e])) for e in ESTIMATORS},
        "per_target": {
            lab: {"mean_truth": float(np.mean(v["truth"]))}
            | {e: {"mean": float(np.mean(v[e])), "sd": float(np.std(v[e]))} for e in ESTIMATORS}
            for lab, v in per_target.items()
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
