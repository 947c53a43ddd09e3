import gc

import numpy as np
import pyarrow as pa
import pytest

from rtrec.ope.live import LIVE, LiveEstimates, policy_terms
from rtrec.ope.policies import PolicySpec


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def events(rows):
    cols = ("request_id", "event_type", "item_id", "propensity")
    return pa.table({c: [r[k] for r in rows] for k, c in enumerate(cols)})


def served(live: LiveEstimates, rid: str, items: list[str], props: list[float], greedy: list[float]) -> None:
    p = np.array(props)
    live.served(rid, items, p, np.full(len(items), 0.1), {LIVE: (p, 0.1 * len(items)), "none": (np.array(greedy), 0.2)})


def test_settles_after_the_window_and_counts_only_logged_lists():
    clock = Clock()
    live = LiveEstimates((PolicySpec("none"),), ("click",), settle_s=10.0, clock=clock)
    served(live, "r1", ["a", "b"], [1.0, 0.5], [1.0, 1.0])
    served(live, "r2", ["c", "d"], [1.0, 0.25], [1.0, 0.0])
    served(live, "r3", ["e", "f"], [1.0, 0.5], [1.0, 1.0])  # its impressions never come
    live.observe(
        events(
            [
                ("r1", "impression", "a", 1.0),
                ("r1", "impression", "b", 0.5),
                ("r1", "click", "b", None),
                ("r2", "impression", "c", 1.0),
                ("r2", "impression", "d", 0.25),
                ("r2", "click", "d", None),
                ("r9", "click", "a", None),  # not a served list
                (None, "impression", "a", None),
            ]
        )
    )
    early = live.report()
    assert early["window_requests"] == 0 and early["pending_requests"] == 3
    clock.t = 11.0
    rep = live.report()
    assert rep["window_requests"] == 2 and rep["pending_requests"] == 0
    assert rep["impressions"] == 4 and rep["observed_click_rate"] == 0.5
    assert rep["policies"]["live"]["snips"]["value"] == pytest.approx(0.5)
    # Greedy: weights 1, 2 (b), 1, 0 (d): clicks 2 * 1 + 0 over 4 slots.
    assert rep["policies"]["none"]["ips"]["value"] == pytest.approx(0.5)
    assert rep["policies"]["none"]["snips"]["value"] == pytest.approx(2.0 / 4.0)


def test_a_client_logging_wrong_propensities_shows_up_as_a_gap():
    clock = Clock()
    live = LiveEstimates((), ("click",), settle_s=0.0, clock=clock)
    for r in range(20):
        served(live, f"r{r}", ["a"], [0.5], [1.0])
        # The client logs half the propensity it was given: the live estimate doubles.
        live.observe(
            events(
                [(f"r{r}", "impression", "a", 0.25), (f"r{r}", "click", "a", None)]
                if r % 2
                else [(f"r{r}", "impression", "a", 0.25)]
            )
        )
    rep = live.report()
    assert rep["observed_click_rate"] == 0.5
    assert rep["policies"]["live"]["ips"]["value"] == pytest.approx(1.0)


def test_pending_lists_are_bounded():
    live = LiveEstimates((), ("click",), settle_s=100.0, capacity=3, clock=Clock())
    for r in range(5):
        served(live, f"r{r}", ["a"], [1.0], [1.0])
    assert live.report()["pending_requests"] == 3 and live.dropped == 2


def test_policy_terms_are_marginals_and_direct_terms():
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    q = np.array([0.4, 0.3, 0.2, 0.1])
    t = policy_terms({"none": PolicySpec("none"), "eps": PolicySpec("epsilon", 0.4)}, scores, q, np.array([0, 2]))
    assert t["none"][0].tolist() == [1.0, 0.0] and t["none"][1] == pytest.approx(0.7)
    assert t["eps"][0].tolist() == pytest.approx([0.92, 0.22])
    assert t["eps"][1] == pytest.approx(0.92 * 0.4 + 0.64 * 0.3 + 0.22 * 0.2 + 0.22 * 0.1)


def tracked_objects() -> int:
    gc.collect()
    gc.collect()  # a tuple of tuples is untracked once its inner tuples are
    return len(gc.get_objects())


def test_waiting_and_settled_lists_add_nothing_to_the_collectors_passes():
    # A full collection stops every thread of the daemon and walks every tracked object: what
    # waits here (tens of thousands of requests at a few hundred a second) must not be walked.
    clock = Clock()
    live = LiveEstimates((PolicySpec("none"),), ("click",), settle_s=10.0, clock=clock)
    before = tracked_objects()
    for r in range(2000):
        served(live, f"r{r}", ["a", "b", "c"], [1.0, 0.5, 0.5], [1.0, 1.0, 0.0])
    live.observe(events([(f"r{r}", "impression", "a", 1.0) for r in range(2000)]))
    assert tracked_objects() - before < 100
    clock.t = 11.0
    assert live.report()["window_requests"] == 2000
    assert tracked_objects() - before < 100
