"""What the daemon reports: ``/healthz``, ``/v1/stats`` (everything ``rtrec inspect`` shows) and ``/metrics``."""

from __future__ import annotations

import collections
import math
import os
import time
from typing import TYPE_CHECKING, Any, cast

from rtrec import __version__
from rtrec.contracts import Health, LearnerStats, LiveOpe, Quality, StatsResponse, StoredAlarm
from rtrec.jsonable import jsonable
from rtrec.serve.metrics import labelled_gauge

if TYPE_CHECKING:
    from rtrec.serve.daemon import Daemon

__all__ = ["current_quality", "health", "metrics_text", "stats"]


def health(d: Daemon) -> Health:
    return {
        "status": "ok" if d.worker.error is None else "degraded",
        "version": __version__,
        "model_version": int(d.learner.model_version),
        "uptime_s": round(time.time() - d.started_at, 3),
        "learner_error": d.worker.error,
    }


def stats(d: Daemon) -> StatsResponse:
    """The ``/v1/stats`` response (JSON-safe)."""
    lag_events, lag_s = d.worker.lag()
    m, sc = d.meters, d.cfg.serve
    # Read before the model's figures: they then reflect at least every event up to it (a
    # client that waits for its seq and reads the model sees its own events learned).
    learned_seq = int(d.learner.last_seq)
    model = d.learner.stats()
    out: StatsResponse = {
        "running": True,
        "version": __version__,
        "time": time.time(),
        "uptime_s": time.time() - d.started_at,
        "home": str(d.home),
        "url": d.url,
        "pid": os.getpid(),
        "ingest": {
            "rate": m.ingest_rate.rate(),
            "accepted_total": m.accepted.value,
            "duplicates_total": m.duplicates.value,
            "rejected_total": m.rejected.value,
            "log_seq": d.worker.log_seq,
            "commit_latency": m.lat_ingest.percentiles(),
            "throttled_total": m.throttled.value,
            "stored": d.log.count_events(),
        },
        "learn": {
            "rate": m.learn_rate.rate(),
            "learned_total": m.learned.value,
            "learned_seq": learned_seq,
            "lag_events": lag_events,
            "lag_s": lag_s,
            "batch_latency": m.lat_learn_batch.percentiles(),
            "errors": m.learn_errors.value,
            "error": d.worker.error,
            "quarantined_total": m.quarantined.value,
        },
        "freshness": {"learned": m.lat_learned.percentiles(), "recommend": m.lat_reflected.percentiles()},
        "recommend": {
            "rate": m.recommend_rate.rate(),
            "requests_total": m.recommends.value,
            "explored_items_total": m.explored.value,
            "latency": m.lat_recommend.percentiles(),
            "policy": sc.exploration,
            "epsilon": sc.epsilon,
            "temperature": sc.temperature,
            "sources": {name: c.value for name, c in m.from_source.items()},
        },
        "model_version": int(d.learner.model_version),
        "quality": current_quality(model),
        "series": {name: s.values() for name, s in m.series.items()},
        "model": model,
        "drift_alarms": list[StoredAlarm](d.learner.drift_alarms),
        "checkpoint": d.checkpoints.info(),
        "text": d.text.status.copy(),
        "catalog": {"items": len(d.catalog.ids)},
        "top_items": [str(x) for x in d.learner.popular(10)],
        "inbox": dict(d.inbox_counts),
        "http": {
            "refused": d.http_counts["refused"],
            "timed_out": d.http_counts["timed_out"],
            "open": len(d.server.server_state.connections) if d.server is not None else 0,
            "max_connections": sc.max_connections,
        },
        "threads": {"restarts": dict(d.restarts)},
        "privacy": d.privacy.status(),
        "ope": d.ranker.ope.report(),
        "gc": d.gc_watch.stats(),
    }
    return cast(StatsResponse, jsonable(out))


def metrics_text(d: Daemon) -> str:
    """Prometheus text exposition of every meter, plus the model's progressive quality and alarms."""
    quality = current_quality(d.learner.stats())
    counts: dict[str, int] = collections.Counter(a["detector"] for a in d.learner.drift_alarms)
    extra = [
        labelled_gauge(
            "rtrec_progressive",
            "Progressive (predict-then-learn) quality of the model.",
            "metric",
            quality.items(),  # type: ignore[arg-type]
        ),
        labelled_gauge(
            "rtrec_drift_alarms_by_detector", "Drift alarms raised, by detector.", "detector", counts.items()
        ),
        *ope_gauges(d.ranker.ope.report()),
    ]
    return d.meters.registry.render(extra)


def ope_gauges(o: LiveOpe) -> list[Any]:
    """The live off-policy window: its observed click rate, and each policy's SNIPS estimate and ESS."""
    snips = [(label, est["snips"]) for label, est in o["policies"].items() if "snips" in est]
    rate = o["observed_click_rate"]
    return [
        labelled_gauge(
            "rtrec_ope_window",
            "The live off-policy window: settled lists, their shown items and observed click rate.",
            "what",
            [("lists", o["window_requests"]), ("impressions", o["impressions"])]
            + ([("observed_click_rate", rate)] if rate is not None else []),
        ),
        labelled_gauge(
            "rtrec_ope_snips",
            "Estimated click rate per shown item (SNIPS) on the window: the live policy and each compared one.",
            "policy",
            [(label, e["value"]) for label, e in snips if e["value"] is not None],
        ),
        labelled_gauge(
            "rtrec_ope_ess",
            "Effective sample size of each policy's estimate (shown items).",
            "policy",
            [(label, e["ess"]) for label, e in snips],
        ),
    ]


def current_quality(model: LearnerStats) -> Quality:
    """The latest progressive AUC, log loss and CTR of ``learner.stats()`` (finite values only)."""
    progressive = model["progressive"]
    out = Quality()
    for key in ("auc", "logloss", "ctr"):
        v = progressive[key]  # type: ignore[literal-required]
        if v is not None and math.isfinite(float(v)):
            out[key] = float(v)  # type: ignore[literal-required]
    return out
