"""The live policy's value over recent requests, estimated from what it logged, next to its observed click rate.

At serve time the ranker records, per request, the items it showed, the probability it
showed each with (the live policy's list propensity), the CTR model's click probability of
each, and for every comparison policy (``[ope] live_policies``, default greedy) that
policy's probability of showing each of those items and its direct-method term over all
the candidates. The learner then feeds it the events it learns: an impression with the
request's ``request_id`` confirms a shown item (with the propensity the client logged), a
positive event with it is a click. A request settles once its impression window has passed
and joins the window of the last ``window_requests`` settled requests, on which IPS, SNIPS
and DR are computed when ``/v1/stats`` is read.

Nothing here can change the model: it only reads what the ranker and the learner hand it.
Requests whose impressions never come are not in the log, so they are not counted. Lists
served to users the learner does not know yet (the whole catalog scored, not the retrieval
pipeline) are not recorded either: their candidate sets are too large to weigh cheaply.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec.contracts import LiveOpe, OpeEstimate
from rtrec.ope.estimators import ESTIMATORS, Logged, estimate_all
from rtrec.ope.policies import PolicySpec

__all__ = ["LIVE", "LiveEstimates", "ServedList", "policy_terms"]

LIVE = "live"


@dataclass
class ServedList:
    """One served request, waiting for its impressions and clicks."""

    items: list[str]
    propensity: np.ndarray  # the live policy's list propensity of each item
    model: np.ndarray  # the CTR model's click probability of each item
    # Per policy (``live`` included): its probability of showing each item, and its direct term.
    targets: dict[str, tuple[np.ndarray, float]]
    at: float  # monotonic time served
    shown: np.ndarray = field(init=False)
    logged: np.ndarray = field(init=False)  # the propensity each impression carried (or the served one)
    reward: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.items)
        self.shown = np.zeros(n, bool)
        self.logged = self.propensity.copy()
        self.reward = np.zeros(n)


class LiveEstimates:
    """Thread-safe: the ranker calls :meth:`served`, the learner :meth:`observe`, stats :meth:`report`."""

    def __init__(
        self,
        policies: tuple[PolicySpec, ...],
        positive: tuple[str, ...],
        *,
        settle_s: float,
        window_requests: int = 5_000,
        capacity: int = 100_000,
        clip: float | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.policies = policies
        self.positive = frozenset(positive)
        self.settle_s = settle_s
        self.clip = clip
        self._clock = clock
        self._capacity = capacity
        self._pending: OrderedDict[str, ServedList] = OrderedDict()
        self._window: deque[ServedList] = deque(maxlen=window_requests)
        self._lock = threading.Lock()
        self.dropped = 0  # pending requests pushed out by capacity

    def served(
        self,
        request_id: str,
        items: list[str],
        propensity: np.ndarray,
        model: np.ndarray,
        targets: dict[str, tuple[np.ndarray, float]],
    ) -> None:
        row = ServedList(
            list(items), np.asarray(propensity, np.float64), np.asarray(model, np.float64), targets, self._clock()
        )
        with self._lock:
            self._pending[request_id] = row
            while len(self._pending) > self._capacity:
                self._pending.popitem(last=False)
                self.dropped += 1

    def observe(self, events: pa.Table) -> None:
        """Events just learned: impressions and positives of served requests."""
        if not self._pending or "request_id" not in events.column_names:
            return
        kinds = pa.array(["impression", *sorted(self.positive)], pa.string())
        keep = pc.and_(pc.is_valid(events.column("request_id")), pc.is_in(events.column("event_type"), kinds))
        events = events.filter(keep)
        if not events.num_rows:
            return
        rid = events.column("request_id").to_pylist()
        kind = events.column("event_type").to_pylist()
        item = events.column("item_id").to_pylist()
        prop = events.column("propensity").to_pylist() if "propensity" in events.column_names else [None] * len(rid)
        with self._lock:
            for r, t, i, p in zip(rid, kind, item, prop, strict=True):
                row = self._pending.get(r)
                if row is None:
                    continue
                try:
                    j = row.items.index(str(i))
                except ValueError:
                    continue
                if t == "impression":
                    row.shown[j] = True
                    if p is not None and 0.0 < float(p) <= 1.0:
                        row.logged[j] = float(p)
                else:
                    row.reward[j] = 1.0

    def report(self) -> LiveOpe:
        """The window's observed click rate and each policy's estimates (``live`` first)."""
        now = self._clock()
        with self._lock:
            while self._pending:
                row = next(iter(self._pending.values()))
                if now - row.at < self.settle_s:
                    break
                self._pending.popitem(last=False)
                if row.shown.any():
                    self._window.append(row)
            rows = list(self._window)
            pending = len(self._pending)
        shown = sum(int(r.shown.sum()) for r in rows)
        clicks = sum(float(r.reward[r.shown].sum()) for r in rows)
        out: LiveOpe = {
            "window_requests": len(rows),
            "pending_requests": pending,
            "settle_s": self.settle_s,
            "clip": self.clip,
            "impressions": shown,
            "observed_click_rate": clicks / shown if shown else None,
            "policies": {},
        }
        if not rows:
            return out
        labels = [LIVE] + [p.label for p in self.policies]
        for label in labels:
            data = _logged(rows, label)
            est = estimate_all(data, self.clip)
            out["policies"][label] = {
                name: cast(OpeEstimate, est[name].as_dict()) for name in ESTIMATORS if name in est
            }
        return out


def _logged(rows: list[ServedList], label: str) -> Logged:
    req, reward, logged, target, model, slots, direct = [], [], [], [], [], [], []
    for x, r in enumerate(rows):
        s = r.shown
        req.append(np.full(int(s.sum()), x))
        reward.append(r.reward[s])
        logged.append(r.logged[s])
        model.append(r.model[s])
        slots.append(int(s.sum()))
        pi, dm = r.targets[label]
        target.append(pi[s])
        # The direct term of a list as long as the part the client showed.
        direct.append(dm * s.sum() / len(s))
    return Logged(
        request=np.concatenate(req).astype(np.int64),
        reward=np.concatenate(reward),
        logging=np.concatenate(logged),
        target=np.concatenate(target),
        slots=np.asarray(slots, np.int64),
        model=np.concatenate(model),
        direct=np.asarray(direct, np.float64),
    )


def policy_terms(
    policies: dict[str, PolicySpec],
    scores: np.ndarray,
    model: np.ndarray,
    shown: np.ndarray,
    *,
    uncertainty: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, tuple[np.ndarray, float]]:
    """Each policy's probability of showing the ``shown`` candidates in a list of that length,
    and its direct term ``sum_i pi(i) q(i)`` over every candidate (``model`` is ``q``)."""
    k = len(shown)
    out = {}
    for label, spec in policies.items():
        m = spec.marginals(scores, k, uncertainty=uncertainty, rng=rng)
        out[label] = (m.inclusion[shown], float(m.inclusion @ model))
    return out
