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
from typing import Any, NamedTuple, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec.contracts import LiveOpe, OpeEstimate
from rtrec.ope.estimators import ESTIMATORS, Logged, estimate_all
from rtrec.ope.policies import PolicySpec

__all__ = ["LIVE", "LiveEstimates", "ServedList", "policy_terms"]

LIVE = "live"
REFRESH_S = 2.0


class ServedList(NamedTuple):
    """One served request, waiting for its impressions and clicks.

    Kept as a plain tuple (``tuple(row)``) while it waits: the garbage collector stops
    tracking a plain tuple of arrays and strings, so tens of thousands of waiting requests add
    nothing to its full passes, which stop every thread of the daemon."""

    items: tuple[str, ...]
    propensity: np.ndarray  # the live policy's list propensity of each item
    model: np.ndarray  # the CTR model's click probability of each item
    # Per policy (``live`` included): its probability of showing each item, and its direct term.
    targets: tuple[tuple[str, np.ndarray, float], ...]
    at: float  # monotonic time served
    shown: np.ndarray
    logged: np.ndarray  # the propensity each impression carried (or the served one)
    reward: np.ndarray

    @classmethod
    def new(
        cls,
        items: list[str],
        propensity: np.ndarray,
        model: np.ndarray,
        targets: dict[str, tuple[np.ndarray, float]],
        at: float,
    ) -> ServedList:
        n, prop = len(items), np.asarray(propensity, np.float64)
        terms = tuple((label, np.asarray(pi), float(dm)) for label, (pi, dm) in targets.items())
        return cls(
            tuple(items), prop, np.asarray(model, np.float64), terms, at, np.zeros(n, bool), prop.copy(), np.zeros(n)
        )


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
        self._pending: OrderedDict[str, tuple[Any, ...]] = OrderedDict()  # ServedList as plain tuples
        self._window: deque[tuple[Any, ...]] = deque(maxlen=window_requests)  # _Settled as plain tuples
        self._lock = threading.Lock()
        self.dropped = 0  # pending requests pushed out by capacity
        self._settled = 0  # lists settled so far (the window's version)
        self._cached: tuple[int, float, float, LiveOpe] | None = None  # (version, when, seconds taken, report)

    def served(
        self,
        request_id: str,
        items: list[str],
        propensity: np.ndarray,
        model: np.ndarray,
        targets: dict[str, tuple[np.ndarray, float]],
    ) -> None:
        row = ServedList.new(items, propensity, model, targets, self._clock())
        with self._lock:
            self._pending[request_id] = tuple(row)
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
                packed = self._pending.get(r)
                if packed is None:
                    continue
                row = ServedList._make(packed)
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
                row = ServedList._make(next(iter(self._pending.values())))
                if now - row.at < self.settle_s:
                    break
                self._pending.popitem(last=False)
                if row.shown.any():
                    self._window.append(tuple(_Settled.of(row)))
                    self._settled += 1
            pending = len(self._pending)
            cached, version = self._cached, self._settled
            # Estimating 5,000 lists takes tens of milliseconds: then at most once per REFRESH_S.
            if cached is not None and (cached[0] == version or (now - cached[1] < REFRESH_S and cached[2] > 0.01)):
                return {**cached[3], "pending_requests": pending}
            packed = list(self._window)
        rows = [_Settled._make(r) for r in packed]
        shown = sum(len(r.reward) for r in rows)
        clicks = sum(float(r.reward.sum()) for r in rows)
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
            with self._lock:
                self._cached = (version, now, 0.0, out)
            return out
        t0 = time.perf_counter()
        labels = [LIVE] + [p.label for p in self.policies]
        for label in labels:
            data = _logged(rows, label)
            est = estimate_all(data, self.clip)
            out["policies"][label] = {
                name: cast(OpeEstimate, est[name].as_dict()) for name in ESTIMATORS if name in est
            }
        with self._lock:
            self._cached = (version, now, time.perf_counter() - t0, out)
        return out


class _Settled(NamedTuple):
    """A settled list, reduced to its shown items: what the estimators read of it."""

    reward: np.ndarray
    logged: np.ndarray
    model: np.ndarray
    targets: tuple[tuple[str, np.ndarray, float], ...]  # per policy: probability per shown item, direct term

    @classmethod
    def of(cls, row: ServedList) -> _Settled:
        s = row.shown
        share = s.sum() / len(s)  # the direct term of a list as long as the part the client showed
        return cls(
            reward=row.reward[s],
            logged=row.logged[s],
            model=row.model[s],
            targets=tuple((label, pi[s], float(dm * share)) for label, pi, dm in row.targets),
        )

    def target(self, label: str) -> tuple[np.ndarray, float]:
        return next((pi, dm) for name, pi, dm in self.targets if name == label)


def _logged(rows: list[_Settled], label: str) -> Logged:
    sizes = np.fromiter((len(r.reward) for r in rows), np.int64, len(rows))
    targets = [r.target(label) for r in rows]
    return Logged(
        request=np.repeat(np.arange(len(rows)), sizes),
        reward=np.concatenate([r.reward for r in rows]),
        logging=np.concatenate([r.logged for r in rows]),
        target=np.concatenate([pi for pi, _ in targets]),
        slots=sizes,
        model=np.concatenate([r.model for r in rows]),
        direct=np.fromiter((dm for _, dm in targets), np.float64, len(rows)),
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
