import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtrec.serve.metrics import Latency, Rate, Registry, TimeSeries, labelled_gauge, percentile


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_percentile_interpolates():
    assert percentile([], 0.5) is None
    assert percentile([1.0], 0.99) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile(list(range(101)), 0.99) == pytest.approx(99.0)


def test_latency_percentiles_and_histogram():
    lat = Latency("x_seconds", "help", buckets=(0.01, 0.1))
    for v in (0.005, 0.05, 0.5, 0.007):
        lat.observe(v)
    p = lat.percentiles()
    assert p["count"] == 4
    assert p["p50"] == pytest.approx(0.0285)
    reg = Registry(prefix="")
    reg._metrics.append(lat)
    lines = reg.render().splitlines()
    assert 'x_seconds_bucket{le="0.01"} 2.0' in lines
    assert 'x_seconds_bucket{le="0.1"} 3.0' in lines
    assert 'x_seconds_bucket{le="+Inf"} 4.0' in lines
    assert "x_seconds_count 4.0" in lines
    assert "x_seconds_sum 0.562" in lines


def test_rate_over_window():
    clock = Clock()
    r = Rate(window_s=10, clock=clock)
    for _ in range(20):
        clock.t += 0.5
        r.mark(100)
    assert r.rate() == pytest.approx(200, rel=0.15)
    clock.t += 60
    assert r.rate() == 0
    assert r.total == 2000


def test_time_series_keeps_horizon():
    clock = Clock(0.0)
    ts = TimeSeries(step_s=10, horizon_s=60, clock=clock)
    for i in range(20):
        ts.set(i)
        ts.set(i + 0.5)  # same step: replaced
        clock.t += 10
    assert ts.values() == [15.5, 16.5, 17.5, 18.5, 19.5]  # the current step (20) has no value yet


def test_registry_renders_prometheus_text():
    reg = Registry()
    c = reg.counter("events_total", "Events.")
    reg.gauge("lag", "Lag.", lambda: 3)
    reg.gauge("broken", "Raises.", lambda: 1 / 0)
    c.inc(5)
    text = reg.render([labelled_gauge("rtrec_q", "Q.", "metric", [('a"b', 0.5)])])
    assert "# TYPE rtrec_events_total counter\nrtrec_events_total 5.0" in text
    assert "rtrec_lag 3.0" in text
    assert "rtrec_broken NaN" in text
    assert 'rtrec_q{metric="a\\"b"} 0.5' in text
    # The text parses as Prometheus exposition, the way a scraper reads it.
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["rtrec_events"].type == "counter" and parsed["rtrec_events"].samples[0].value == 5
    assert parsed["rtrec_q"].samples[0].labels == {"metric": 'a"b'}
    assert text.endswith("\n")
    for line in text.splitlines():
        if not line.startswith("#"):
            _name, value = line.rsplit(" ", 1)
            assert value == "NaN" or not math.isnan(float(value))
