import numpy as np
import pytest

from rtrec.errors import InvalidInputError
from rtrec.ope.estimators import Logged, dr, estimate_all, ips, snips


def two_requests(**kw):
    # Request 0 showed a (clicked, mu 0.5, pi 1.0) and b (not clicked, mu 1.0, pi 1.0);
    # request 1 showed c (clicked, mu 0.5, pi 0.25).
    base = dict(
        request=np.array([0, 0, 1]),
        reward=np.array([1.0, 0.0, 1.0]),
        logging=np.array([0.5, 1.0, 0.5]),
        target=np.array([1.0, 1.0, 0.25]),
        slots=np.array([2, 1]),
        model=np.array([0.4, 0.2, 0.6]),
        direct=np.array([0.7, 0.3]),
    )
    return Logged(**{**base, **kw})


def test_hand_computed_values():
    d = two_requests()
    # weights 2, 1, 0.5; weighted clicks 2 + 0 + 0.5 = 2.5 over 3 list slots.
    assert ips(d).value == pytest.approx(2.5 / 3)
    assert snips(d).value == pytest.approx(2.5 / 3.5)
    # DR: direct 0.7 + 0.3, corrections 2 * (1 - 0.4) + 1 * (0 - 0.2) + 0.5 * (1 - 0.6) = 1.2.
    assert dr(d).value == pytest.approx((1.0 + 1.2) / 3)


def test_hand_computed_interval():
    d = two_requests()
    v = 2.5 / 3
    a, b = np.array([2.0, 0.5]), np.array([2.0, 1.0])  # per request: weighted clicks, list slots
    se = np.sqrt(((a - v * b) ** 2).sum() / b.sum() ** 2 * 2 / 1)
    e = ips(d)
    assert e.se == pytest.approx(se)
    assert (e.low, e.high) == pytest.approx((v - 1.959964 * se, v + 1.959964 * se), rel=1e-6)
    assert e.n_requests == 2 and e.n_shown == 3


def test_effective_sample_size_and_clipping():
    d = two_requests()
    w = np.array([2.0, 1.0, 0.5])
    assert ips(d).ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert ips(d).max_weight == 2.0
    c = ips(d, clip=1.0)
    assert c.clipped == 1 and c.max_weight == 1.0
    assert c.value == pytest.approx(1.5 / 3)


def test_the_logging_policy_is_estimated_at_its_observed_click_rate():
    rng = np.random.default_rng(0)
    n = 500
    mu = rng.uniform(0.05, 1.0, 3 * n)
    reward = (rng.random(3 * n) < 0.2).astype(float)
    d = Logged(
        request=np.repeat(np.arange(n), 3),
        reward=reward,
        logging=mu,
        target=mu.copy(),
        slots=np.full(n, 3),
        model=np.full(3 * n, 0.5),
        direct=np.full(n, 1.5),
    )
    est = estimate_all(d)
    assert est["ips"].value == pytest.approx(reward.mean())
    assert est["snips"].value == pytest.approx(reward.mean())
    assert est["ips"].ess == pytest.approx(3 * n)


def test_a_target_that_never_shows_the_logged_items_is_worth_its_direct_method():
    d = two_requests(target=np.zeros(3))
    assert ips(d).value == 0.0
    assert dr(d).value == pytest.approx(1.0 / 3)
    assert np.isnan(snips(d).value)  # no weight at all: nothing to normalise


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"logging": np.array([0.5, 0.0, 0.5])}, "logging"),
        ({"logging": np.array([0.5, 1.5, 0.5])}, "logging"),
        ({"target": np.array([1.0, -1.0, 0.5])}, "target"),
        ({"reward": np.array([1.0, 0.0])}, "reward"),
        ({"request": np.array([0, 0, 5])}, "request"),
        ({"direct": np.array([0.1])}, "direct"),
    ],
)
def test_bad_input_names_the_field(kw, match):
    with pytest.raises(InvalidInputError, match=match):
        two_requests(**kw)


def test_dr_needs_a_model():
    with pytest.raises(InvalidInputError, match="dr"):
        dr(two_requests(model=None, direct=None))
    assert set(estimate_all(two_requests(model=None, direct=None))) == {"ips", "snips"}
