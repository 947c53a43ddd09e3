import numpy as np
import pytest

from rtrec.errors import InvalidInputError
from rtrec.ope import list_marginals
from rtrec.serve.policy import POLICIES, SLOT_POLICIES, select_slate, slot_probabilities


def scores(n=20, seed=0):
    return np.random.default_rng(seed).random(n)


def test_greedy_is_sorted_with_propensity_one():
    s = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    slate = select_slate(s, 4, policy="none")
    assert slate.indices.tolist() == [1, 3, 2, 0]  # ties broken by position
    assert slate.propensities.tolist() == [1.0] * 4
    assert not slate.explored.any()


@pytest.mark.parametrize("policy", POLICIES)
def test_slate_is_distinct_and_bounded(policy):
    rng = np.random.default_rng(1)
    s = scores(50)
    for k in (0, 1, 10, 50, 80):
        slate = select_slate(s, k, policy=policy, epsilon=0.5, temperature=0.2, rng=rng)
        assert len(slate.indices) == min(k, 50)
        assert len(set(slate.indices.tolist())) == len(slate.indices)
        assert ((slate.propensities > 0) & (slate.propensities <= 1)).all()


@pytest.mark.parametrize("policy", SLOT_POLICIES)
def test_slot_probabilities_are_distributions(policy):
    s = scores(30)
    shown = np.zeros(30, dtype=bool)
    shown[[3, 7]] = True
    p = slot_probabilities(s, shown, policy=policy, epsilon=0.3, temperature=0.1)
    assert (p >= 0).all()
    assert p[shown].sum() == 0
    assert p.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("policy", SLOT_POLICIES)
def test_reported_slot_propensity_matches_slot_distribution(policy):
    s = scores(15, seed=3)
    rng = np.random.default_rng(7)
    for _ in range(50):
        slate = select_slate(s, 5, policy=policy, epsilon=0.4, temperature=0.15, rng=rng)
        shown = np.zeros(len(s), dtype=bool)
        for j, prop in zip(slate.indices, slate.slot_propensities, strict=True):
            expected = slot_probabilities(s, shown, policy=policy, epsilon=0.4, temperature=0.15)[j]
            assert prop == pytest.approx(expected, rel=1e-9)
            shown[j] = True


@pytest.mark.parametrize(
    ("policy", "kw"),
    [
        ("epsilon", {"epsilon": 0.3}),
        ("softmax", {"temperature": 0.2}),
        ("thompson", {"sigma": np.array([0.1, 0.3, 0.2, 0.5, 0.3, 0.4])}),
    ],
)
def test_logged_propensities_match_how_often_items_are_shown(policy, kw):
    # The propensity an item is logged with is how often the policy shows it, in the list and
    # at its position, against 5,000 draws (5 standard errors; the Monte Carlo ones are close).
    s = np.array([0.9, 0.8, 0.5, 0.45, 0.2, 0.1])
    rng = np.random.default_rng(3)
    n, k = 5_000, 3
    shown = np.zeros(len(s))
    at = np.zeros((k, len(s)))
    logged: dict[int, list[float]] = {}
    for _ in range(n):
        slate = select_slate(s, k, policy=policy, rng=rng, samples=64, **kw)
        shown[slate.indices] += 1
        at[np.arange(k), slate.indices] += 1
        for j, p in zip(slate.indices.tolist(), slate.propensities.tolist(), strict=True):
            logged.setdefault(j, []).append(p)
    m = list_marginals(s, k, policy=policy, samples=20_000, rng=rng, **kw)
    se = np.sqrt(m.inclusion * (1 - m.inclusion) / n)
    assert np.all(np.abs(shown / n - m.inclusion) <= 5 * se + 2e-3)
    se_at = np.sqrt(m.position * (1 - m.position) / n)
    assert np.all(np.abs(at / n - m.position) <= 5 * se_at + 2e-3)
    for j, ps in logged.items():
        assert np.mean(ps) == pytest.approx(m.inclusion[j], abs=0.01)
    assert m.inclusion.sum() == pytest.approx(k, abs=0.02)


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.5, 1.0])
@pytest.mark.parametrize(("n", "k"), [(1, 1), (3, 3), (5, 2), (9, 4)])
def test_epsilon_marginals_are_exact(eps, n, k):
    # Enumerate every slot-by-slot path of epsilon-greedy (small cases) and sum their probabilities.
    s = np.random.default_rng(n * 7 + k).random(n)
    exact = np.zeros((k, n))

    def walk(taken: list[int], p: float) -> None:
        if len(taken) == k or p == 0.0:
            for t, j in enumerate(taken):
                exact[t, j] += p
            return
        mask = np.zeros(n, bool)
        mask[taken] = True
        probs = slot_probabilities(s, mask, policy="epsilon", epsilon=eps)
        for j in np.flatnonzero(probs > 0).tolist():
            walk([*taken, j], p * probs[j])

    walk([], 1.0)
    m = list_marginals(s, k, policy="epsilon", epsilon=eps)
    np.testing.assert_allclose(m.position, exact, atol=1e-12)


@pytest.mark.parametrize(("policy", "kw"), [("epsilon", {"epsilon": 0.3}), ("softmax", {"temperature": 0.2})])
def test_sampled_frequencies_match_propensities(policy, kw):
    # First slot: empirical frequencies against the exact distribution (a chi-square-ish bound).
    s = np.array([0.9, 0.8, 0.5, 0.45, 0.2, 0.1])
    rng = np.random.default_rng(11)
    n = 20_000
    counts = np.zeros(len(s))
    second = np.zeros(len(s))
    second_n = 0
    for _ in range(n):
        slate = select_slate(s, 2, policy=policy, rng=rng, **kw)
        counts[slate.indices[0]] += 1
        if slate.indices[0] == 0:
            second[slate.indices[1]] += 1
            second_n += 1
    p = slot_probabilities(s, policy=policy, **kw)
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) <= 5 * se + 1e-9)
    # Second slot given the best item went first.
    shown = np.zeros(len(s), dtype=bool)
    shown[0] = True
    p2 = slot_probabilities(s, shown, policy=policy, **kw)
    se2 = np.sqrt(p2 * (1 - p2) / second_n)
    assert np.all(np.abs(second / second_n - p2) <= 5 * se2 + 1e-9)


def test_epsilon_zero_and_one():
    s = scores(10)
    g = select_slate(s, 3, policy="epsilon", epsilon=0.0)
    assert g.propensities.tolist() == [1.0, 1.0, 1.0]
    u = select_slate(s, 3, policy="epsilon", epsilon=1.0, rng=np.random.default_rng(0))
    assert u.slot_propensities.tolist() == pytest.approx([1 / 10, 1 / 9, 1 / 8])
    assert u.propensities.tolist() == pytest.approx([3 / 10] * 3)  # uniform: any 3 of 10
    assert u.position_propensities.tolist() == pytest.approx([1 / 10] * 3)


def test_softmax_with_a_dominant_score_keeps_precision():
    s = np.array([100.0, 0.0, 0.0, 0.0])
    slate = select_slate(s, 4, policy="softmax", temperature=0.1, rng=np.random.default_rng(0))
    assert slate.indices[0] == 0
    assert slate.slot_propensities[0] == pytest.approx(1.0)
    assert slate.slot_propensities[1:].tolist() == pytest.approx([1 / 3, 1 / 2, 1.0])
    assert slate.propensities.tolist() == pytest.approx([1.0] * 4)  # all four are shown


def test_nan_and_inf_scores_are_handled():
    s = np.array([np.nan, 0.5, -np.inf, 0.7])
    for policy in POLICIES:
        slate = select_slate(s, 4, policy=policy, epsilon=0.2, rng=np.random.default_rng(0))
        assert sorted(slate.indices.tolist()) == [0, 1, 2, 3]
        assert np.isfinite(slate.propensities).all() and (slate.propensities > 0).all()
    assert select_slate(s, 2, policy="none").indices.tolist() == [3, 1]


def test_same_seed_same_slate():
    s = scores(100)
    a = select_slate(s, 10, policy="softmax", rng=np.random.default_rng(5))
    b = select_slate(s, 10, policy="softmax", rng=np.random.default_rng(5))
    assert a.indices.tolist() == b.indices.tolist()


def test_inputs_left_unchanged():
    s = scores(10)
    before = s.copy()
    select_slate(s, 5, policy="softmax", rng=np.random.default_rng(0))
    np.testing.assert_array_equal(s, before)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"policy": "ucb"}, "exploration policy"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"policy": "softmax", "temperature": 0.0}, "temperature"),
    ],
)
def test_bad_parameters_name_the_problem(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        select_slate(scores(5), 2, **kwargs)
    with pytest.raises(InvalidInputError, match="k must"):
        select_slate(scores(5), -1)
