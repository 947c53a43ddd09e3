"""``rtrec serve --demo``: simulated users playing recommend → feedback against the daemon itself.

A background thread asks the daemon for a slate for a random simulated user, lets the
simulator react (impressions, clicks, carts, purchases, dismissals), and ingests the
events with the slate's ``request_id`` and propensities, so that ``rtrec inspect`` shows
the model learning from nothing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from typing import Any

log = logging.getLogger("rtrec.serve.demo")


DEMO_SETTLE_S = 5.0


def play(daemon: Any, stop: threading.Event, *, rate: float = 20.0, seed: int = 0) -> None:
    """Play until ``stop`` is set: about ``rate`` slates a second."""
    from rtrec.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=seed))
    if not daemon.catalog.ids:
        daemon.upsert_items(sim.catalog().to_pylist())
        log.info("demo: posted a simulated catalog of %d items", sim.cfg.n_items)
    if daemon.cfg.ope.settle_s is None:
        # Every list's feedback is posted at once: the live off-policy window need not wait for late clicks.
        daemon.ranker.ope.settle_s = DEMO_SETTLE_S
    users = sim.user_ids
    run = uuid.uuid4().hex[:8]  # event ids must not repeat across daemon restarts
    rng = random.Random(seed)
    period = 1.0 / max(rate, 0.1)
    while not stop.wait(period):
        user = rng.choice(users)
        try:
            rec = daemon.recommend(user, sim.cfg.slate_size)
            shown = {it["item_id"]: it["propensity"] for it in rec["items"]}
            events = sim.respond(user, list(shown), time.time(), request_id=rec["request_id"])
            for ev in events:
                ev["event_id"] = f"demo-{run}-{ev['event_id']}"
                if ev["event_type"] == "impression":
                    ev["propensity"] = shown.get(ev["item_id"])
            daemon.ingest_events(events, "demo")
        except Exception:  # the demo must never take the daemon down
            log.exception("demo step failed")
            stop.wait(1.0)
