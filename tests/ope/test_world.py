"""The estimators against the simulator's truth (``bench/ope.py`` runs this over 20 seeds)."""

from rtrec.ope.policies import PolicySpec
from rtrec.ope.world import WorldConfig, run_world


def test_snips_and_dr_cover_the_true_value_of_two_targets():
    cfg = WorldConfig(
        n_users=150,
        requests=1_500,
        truth_samples=300,
        logging=PolicySpec("softmax", 0.5),
        targets=(PolicySpec("epsilon", 0.1), PolicySpec("softmax", 0.3)),
    )
    r = run_world(cfg)
    assert r.observed_click_rate > 0.0
    # The two targets are really different policies from the logging one.
    assert abs(r.truth["epsilon:epsilon=0.1"] - r.truth["softmax:temperature=0.3"]) > 0.01
    for label in ("epsilon:epsilon=0.1", "softmax:temperature=0.3"):
        for name in ("snips", "dr"):
            e = r.estimates[label][name]
            assert e.low <= r.truth[label] <= e.high, (label, name, e, r.truth[label])
            assert e.high - e.low < 0.25  # an interval that says something
            assert e.ess > 50
