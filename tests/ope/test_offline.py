"""Tests for rtrec.ope.offline: point-in-time off-policy evaluation on a log."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rtrec.config import Config, LabelsConfig, load_config
from rtrec.errors import InvalidInputError
from rtrec.learn import OnlineLearner
from rtrec.ope.offline import OffPolicyReport, evaluate, scan_log
from rtrec.ope.policies import parse_policy
from rtrec.replay import permute_within_requests, run_replay
from rtrec.sim import SimConfig, Simulator

SMALL = {
    "text": {"enabled": False},
    "features": {"bits": 14},
    "learner": {"batch_size": 64, "replay_capacity": 5_000},
    "replay": {"ranking_sample": 0.05, "windows": 4},
}
POSITIVE = ("click", "favorite", "add_to_cart", "purchase")


@pytest.fixture
def cfg() -> Config:
    return load_config(overrides=copy.deepcopy(SMALL))


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    sim = Simulator(SimConfig(n_users=30, n_items=40, n_topics=4, n_events=3_000, seed=11))
    return sim.write(tmp_path_factory.mktemp("sim"))


@pytest.fixture(scope="module")
def report(sim_files: tuple[Path, Path]) -> OffPolicyReport:
    events, items = sim_files
    policies = [parse_policy(p) for p in ("epsilon=0.1", "softmax:temperature=0.5", "none", "epsilon=1")]
    cfg = load_config(overrides=copy.deepcopy(SMALL))
    return evaluate(cfg, log_path=events, items_path=items, policies=policies)


def observed(events: Path) -> tuple[int, int]:
    """Logged shown items and those clicked, counted straight from the file."""
    t = pq.read_table(events)
    rows = t.to_pylist()
    positive = {(r["request_id"], r["item_id"]) for r in rows if r["event_type"] in POSITIVE and r["request_id"]}
    shown = [(r["request_id"], r["item_id"]) for r in rows if r["event_type"] == "impression" and r["propensity"]]
    return len(shown), sum(key in positive for key in shown)


def test_logging_policy_value_is_the_observed_click_rate(report: OffPolicyReport, sim_files: tuple[Path, Path]) -> None:
    shown, clicks = observed(sim_files[0])
    assert (report.shown, report.clicks) == (shown, clicks) and clicks > 100
    assert report.requests == report.logged_requests > 300  # every request evaluated, none skipped
    assert report.not_sampled == report.incomplete == 0
    for name in ("ips", "snips"):
        assert report.logging[name].value == clicks / shown == report.observed_rate
        assert report.logging[name].ess == pytest.approx(shown)


def test_target_estimates_are_finite_with_intervals(report: OffPolicyReport) -> None:
    assert report.policies == ["epsilon:epsilon=0.1", "softmax:temperature=0.5", "none", "epsilon:epsilon=1"]
    assert report.models == ["rtrec"] and 0 < report.strangers < report.requests
    for label in ("epsilon:epsilon=0.1", "softmax:temperature=0.5"):
        est = report.values[label]["rtrec"]
        assert set(est) == {"ips", "snips", "dr"}
        for e in est.values():
            assert all(math.isfinite(x) for x in (e.value, e.se, e.low, e.high))
            assert e.low < e.value < e.high and e.ess > 0 and e.n_requests == report.requests
    d = report.as_dict()
    assert set(d["policies"]) == set(report.policies) and d["skipped"] == {"not_sampled": 0, "incomplete": 0}


def test_greedy_and_uniform_differ(report: OffPolicyReport) -> None:
    greedy, uniform = report.values["none"]["rtrec"], report.values["epsilon:epsilon=1"]["rtrec"]
    for name in ("ips", "snips", "dr"):
        assert greedy[name].value > uniform[name].value + 0.05
    # Uniform exploration puts weight on every shown item: far more effective samples.
    assert uniform["ips"].ess > 2 * greedy["ips"].ess


def test_deterministic_and_sampled(cfg: Config, sim_files: tuple[Path, Path], report: OffPolicyReport) -> None:
    events, items = sim_files
    policies = [parse_policy(p) for p in ("epsilon=0.1", "softmax:temperature=0.5", "none", "epsilon=1")]
    again = evaluate(cfg, log_path=events, items_path=items, policies=policies)
    assert again.values == report.values  # softmax's Monte Carlo marginals draw from a seeded generator
    half = evaluate(cfg, log_path=events, items_path=items, policies=policies[:1], sample=0.5)
    assert half.requests + half.not_sampled == half.logged_requests == report.requests
    assert 0.3 < half.requests / report.requests < 0.7
    assert half.logging["ips"].value == half.clicks / half.shown


def test_a_log_without_propensities_is_an_error(cfg: Config, sim_files: tuple[Path, Path], tmp_path: Path) -> None:
    t = pq.read_table(sim_files[0])
    bare = tmp_path / "bare.parquet"
    pq.write_table(
        t.set_column(t.schema.get_field_index("propensity"), "propensity", pa.nulls(len(t), pa.float64())), bare
    )
    with pytest.raises(InvalidInputError, match="propensity") as err:
        evaluate(cfg, log_path=bare)
    assert err.value.hint and "/v1/recommend" in err.value.hint
    with pytest.raises(InvalidInputError, match="clip"):
        evaluate(cfg, log_path=sim_files[0], clip=0.0)


def test_scan_counts_shown_items_and_positive_pairs() -> None:
    t = pa.table(
        {
            "seq": [1, 2, 3, 4, 5, 6, 7, 8],
            "event_type": ["impression", "impression", "impression", "click", "purchase", "rating", "rating", "click"],
            "item_id": ["a", "b", "c", "a", "b", "c", "a", "z"],
            "value": [None, None, None, None, 12.5, 5.0, 2.0, None],
            "request_id": ["r", "r", "s", "r", "r", "s", "r", None],
            "propensity": [0.5, 1.0, None, None, None, None, None, None],
        }
    )
    s = scan_log(t.to_batches(), LabelsConfig())
    assert dict(s.slots) == {"r": 2} and s.last_seq == 2 and s.impressions == 2
    assert s.positives == {("r", "a"), ("r", "b"), ("s", "c")}  # a rating of 2 is no positive; no request, no pair


def test_the_hook_sees_each_learn_step_before_it_is_learned(cfg: Config, sim_files: tuple[Path, Path]) -> None:
    events = pq.read_table(sim_files[0]).slice(0, 200)
    events = events.append_column("seq", pa.array(np.arange(1, 201), pa.int64()))
    learner = OnlineLearner(cfg)
    seen: list[tuple[int, int, bool]] = []

    def hook(t: pa.Table) -> None:
        user = pc.cast(t.column("user_id"), pa.string())[0].as_py()
        seen.append((t.num_rows, learner.examples_seen, learner.featurizer.users.get(user) is None))

    learner.before_chunk = hook
    learner.learn(events)
    assert [n for n, _, _ in seen] == [64, 64, 64, 8]
    assert seen[0][1:] == (0, True)  # nothing learned, not even the first user known


def test_replay_report_has_an_ope_section_only_with_propensities(
    cfg: Config, sim_files: tuple[Path, Path], tmp_path: Path
) -> None:
    events, items = sim_files
    res = run_replay(events, cfg, items_path=items, report_dir=tmp_path / "a", ablations=False)
    ope = res.data["ope"]
    assert set(ope["policies"]) == {"epsilon:epsilon=0.05", "none"}  # the configured exploration, and greedy
    assert ope["logging"]["ips"]["value"] == ope["observed_click_rate"] == round(ope["clicks"] / ope["shown"], 6)
    for est in ope["policies"]["none"]["rtrec"].values():
        assert est["low"] <= est["value"] <= est["high"] and est["ess"] > 0
    t = pq.read_table(events)
    bare = tmp_path / "bare.parquet"
    pq.write_table(
        t.set_column(t.schema.get_field_index("propensity"), "propensity", pa.nulls(len(t), pa.float64())), bare
    )
    assert "ope" not in run_replay(bare, cfg, items_path=items, report_dir=tmp_path / "b", ablations=False).data


@pytest.fixture(scope="module")
def leakage_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    out = tmp_path_factory.mktemp("leak")
    sim = Simulator(SimConfig(n_users=80, n_items=120, n_events=5_000, seed=0))
    real = sim.generate()
    pq.write_table(real, out / "real.parquet")
    pq.write_table(permute_within_requests(real, seed=1), out / "permuted.parquet")
    pq.write_table(sim.catalog(), out / "items.parquet")
    return out / "real.parquet", out / "permuted.parquet", out / "items.parquet"


def test_leakage_greedy_advantage_does_not_survive_permuted_clicks(leakage_logs: tuple[Path, Path, Path]) -> None:
    """Each request's clicks moved to a random item it showed: no policy can pick the clicked item any more.

    On the real log the greedy policy beats the logging one and uniform exploration by far; on the
    permuted log every policy should earn the logging policy's rate, within noise. Were a request
    ranked with a model that had seen its outcome, greedy would still win there.
    """
    real, permuted, items = leakage_logs
    cfg = load_config(overrides={"text": {"enabled": False}, "features": {"bits": 16}, "learner": {"batch_size": 128}})
    policies = [parse_policy("none"), parse_policy("epsilon=1")]
    a = evaluate(cfg, log_path=real, items_path=items, policies=policies)
    b = evaluate(cfg, log_path=permuted, items_path=items, policies=policies)
    greedy, uniform = a.values["none"]["rtrec"]["snips"], a.values["epsilon:epsilon=1"]["rtrec"]["snips"]
    assert greedy.value > a.logging["snips"].value and greedy.value > uniform.value + 0.1
    greedy, uniform = b.values["none"]["rtrec"]["snips"], b.values["epsilon:epsilon=1"]["rtrec"]["snips"]
    assert abs(greedy.value - b.logging["snips"].value) < 2 * greedy.se
    assert abs(greedy.value - uniform.value) < 2 * math.hypot(greedy.se, uniform.se)
