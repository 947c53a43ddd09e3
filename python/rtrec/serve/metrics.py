"""Daemon metrics: rates, latency percentiles, minute series and Prometheus text.

Everything here is thread-safe and cheap to update from a hot path (one lock, no I/O). The
meters keep their own values (the stats response reads them too); ``Registry`` is a
``prometheus_client`` collector over them, and ``prometheus_client`` writes the exposition.

>>> lat = Latency("recommend_seconds", "Recommend latency.")
>>> for ms in (1, 2, 3, 4):
...     lat.observe(ms / 1000)
>>> round(lat.percentiles()["p50"], 4)
0.0025
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from rtrec.contracts import Percentiles
from rtrec.retrieve.sources import SOURCES

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Counter:
    """A monotonically increasing total."""

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self._value = 0.0
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        return self._value

    def family(self) -> Metric:
        return CounterMetricFamily(self.name, self.help, value=self._value)


class Gauge:
    """A value that goes up and down; set directly or read from a callback at export time."""

    def __init__(self, name: str, help: str, fn: Any = None) -> None:
        self.name, self.help, self._fn = name, help, fn
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = float(value)

    @property
    def value(self) -> float:
        if self._fn is not None:
            try:
                return float(self._fn())
            except Exception:  # a metric read must never take the endpoint down
                return math.nan
        return self._value

    def family(self) -> Metric:
        return GaugeMetricFamily(self.name, self.help, value=self.value)


class Rate:
    """Events per second over a sliding window, from (time, count) marks.

    ``window_s`` seconds of one-second bins are kept; the rate is their sum over the covered time.
    """

    def __init__(self, window_s: float = 10.0, clock: Any = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._bins: deque[list[float]] = deque()  # [second, count]
        self._lock = threading.Lock()
        self._start = clock()
        self.total = 0.0

    def mark(self, count: float = 1.0) -> None:
        now = self._clock()
        sec = math.floor(now)
        with self._lock:
            self.total += count
            if self._bins and self._bins[-1][0] == sec:
                self._bins[-1][1] += count
            else:
                self._bins.append([sec, count])
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._bins and self._bins[0][0] <= now - self.window_s - 1:
            self._bins.popleft()

    def rate(self) -> float:
        now = self._clock()
        with self._lock:
            self._trim(now)
            # Bins cover [floor(now) - window, now]; the current second is partial.
            span = min(self.window_s, now - self._start)
            lo = now - span
            total = sum(c for s, c in self._bins if s + 1 > lo)
        return total / span if span > 0 else 0.0


class Latency:
    """Latency samples: a reservoir of recent values for percentiles, and Prometheus buckets."""

    def __init__(self, name: str, help: str, buckets: Sequence[float] = DEFAULT_BUCKETS, keep: int = 4096) -> None:
        self.name, self.help = name, help
        self.buckets = tuple(buckets)
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._n = 0
        self._max = 0.0
        self._recent: deque[float] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def observe(self, seconds: float, count: int = 1) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, seconds)] += count
            self._sum += seconds * count
            self._n += count
            self._max = max(self._max, seconds)
            self._recent.append(seconds)

    def observe_many(self, values: Iterable[float]) -> None:
        for v in values:
            self.observe(v)

    @property
    def count(self) -> int:
        return self._n

    def max(self) -> float:
        """The largest sample since start."""
        return self._max

    def percentiles(self) -> Percentiles:
        """p50, p90 and p99 of the recent samples, and the count of all samples."""
        with self._lock:
            data = sorted(self._recent)
        return {
            "p50": percentile(data, 0.5),
            "p90": percentile(data, 0.9),
            "p99": percentile(data, 0.99),
            "count": self._n,
        }

    def family(self) -> Metric:
        with self._lock:
            counts, total, n = list(self._counts), self._sum, self._n
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound, c in zip(self.buckets, counts, strict=False):
            acc += c
            buckets.append((floatToGoString(bound), acc))
        buckets.append(("+Inf", n))
        return HistogramMetricFamily(self.name, self.help, buckets=buckets, sum_value=total)


class TimeSeries:
    """One value per ``step_s`` over the last ``horizon_s`` (for dashboard sparklines)."""

    def __init__(self, step_s: float = 60.0, horizon_s: float = 3600.0, clock: Any = time.time) -> None:
        self.step_s = step_s
        self.horizon_s = horizon_s
        self._clock = clock
        self._points: deque[tuple[int, float]] = deque(maxlen=max(1, int(horizon_s // step_s)))
        self._lock = threading.Lock()

    def set(self, value: float) -> None:
        step = int(self._clock() // self.step_s)
        with self._lock:
            if self._points and self._points[-1][0] == step:
                self._points[-1] = (step, value)
            else:
                self._points.append((step, value))

    def values(self) -> list[float]:
        horizon = int(self._clock() // self.step_s) - int(self.horizon_s // self.step_s)
        with self._lock:
            return [v for m, v in self._points if m > horizon]


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile of already sorted values; ``None`` when empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


class Registry(Collector):
    """An ordered set of meters, collected for ``prometheus_client`` and rendered as its text format."""

    def __init__(self, prefix: str = "rtrec_") -> None:
        self.prefix = prefix
        self._metrics: list[Counter | Gauge | Latency] = []

    def counter(self, name: str, help: str) -> Counter:
        return self._add(Counter(self.prefix + name, help))

    def gauge(self, name: str, help: str, fn: Any = None) -> Gauge:
        return self._add(Gauge(self.prefix + name, help, fn))

    def latency(self, name: str, help: str, buckets: Sequence[float] = DEFAULT_BUCKETS) -> Latency:
        return self._add(Latency(self.prefix + name, help, buckets))

    def _add(self, metric: Any) -> Any:
        self._metrics.append(metric)
        return metric

    def collect(self) -> Iterable[Metric]:
        for m in self._metrics:
            yield m.family()

    def render(self, extra: Iterable[Metric] = ()) -> str:
        """Prometheus text (format 0.0.4) of every meter, then the ``extra`` families."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        registry.register(_Families(list(extra)))
        return generate_latest(registry).decode()


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def labelled_gauge(name: str, help: str, label: str, samples: Iterable[tuple[str, float]]) -> Metric:
    """One gauge family with one label, e.g. one sample per drift detector."""
    family = GaugeMetricFamily(name, help, labels=[label])
    for value_of_label, value in samples:
        family.add_metric([str(value_of_label)], float(value))
    return family


SERIES_STEP_S = 10.0


class Meters:
    """Every counter, rate, latency and series the daemon keeps, on one registry.

    Gauges that read other parts (lag, model version, ...) are added by whoever wires them.
    """

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.ingest_rate = Rate(10.0)
        self.learn_rate = Rate(10.0)
        self.recommend_rate = Rate(10.0)
        self.accepted = r.counter("events_accepted_total", "Events committed to the log.")
        self.duplicates = r.counter("events_duplicate_total", "Events ignored as already logged (by event_id).")
        self.rejected = r.counter("events_rejected_total", "Events rejected as invalid.")
        self.learned = r.counter("events_learned_total", "Events learned by the model.")
        self.recommends = r.counter("recommend_requests_total", "Recommend requests served.")
        self.explored = r.counter("recommend_explored_items_total", "Items shown by exploration, not by score.")
        self.from_source = {
            s: r.counter(f"recommend_items_from_{s}_total", f"Items served that the {s} candidate source proposed.")
            for s in (*SOURCES, "catalog")
        }
        self.items = r.counter("items_upserted_total", "Catalog items inserted or replaced.")
        self.learn_errors = r.counter("learner_errors_total", "Learner batches that raised.")
        self.throttled = r.counter(
            "ingest_throttled_total", "Event batches refused with 429 while the learner was behind."
        )
        self.quarantined = r.counter(
            "events_quarantined_total", "Events the learner set aside (kept in the log with the reason)."
        )
        r.gauge("ingest_rate_events_per_second", "Events committed per second (10 s window).", self.ingest_rate.rate)
        r.gauge("learn_rate_events_per_second", "Events learned per second (10 s window).", self.learn_rate.rate)
        self.lat_recommend = r.latency("recommend_latency_seconds", "Time to compute a recommendation.")
        self.lat_ingest = r.latency("ingest_commit_seconds", "Time to validate and commit an events batch.")
        self.lat_learned = r.latency("freshness_learned_seconds", "From an events batch acknowledged to learned.")
        self.lat_reflected = r.latency(
            "freshness_recommend_seconds", "From an events batch acknowledged to a recommend using it."
        )
        self.lat_learn_batch = r.latency("learn_batch_seconds", "Time to learn one tailed batch.")
        self.series = {name: TimeSeries(SERIES_STEP_S, 3600.0) for name in ("auc", "logloss", "ctr", "ingest", "learn")}
