"""The sceptic's test: with each request's feedback moved to a random item it showed, no model beats chance.

If a row's features or recorded prediction depended on labels that resolved after it was
shown (or on its place among rows that resolve together), the models would still rank the
clicked item of a request first on the permuted log. They must not.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rtrec.config import load_config
from rtrec.replay import permute_within_requests, run_replay
from rtrec.sim import SimConfig, Simulator
from rtrec.text.testing import build_tiny_gpt2

# Large enough that chance stays inside the tolerance: about 1,400 requests hold both a click
# and a non-click, so a per-request AUC of pure chance has a standard error near 0.008.
SIM = SimConfig(n_events=14_000, seed=0)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    out = tmp_path_factory.mktemp("logs")
    sim = Simulator(SIM)
    real = sim.generate()
    pq.write_table(real, out / "real.parquet")
    pq.write_table(permute_within_requests(real, seed=1), out / "permuted.parquet")
    pq.write_table(sim.catalog(), out / "items.parquet")
    return out / "real.parquet", out / "permuted.parquet", out / "items.parquet"


def test_permute_moves_feedback_within_requests_only(logs: tuple[Path, Path, Path]) -> None:
    real, permuted = (pq.read_table(p) for p in logs[:2])
    assert real.num_rows == permuted.num_rows
    shown: dict[str, set[str]] = {}
    for r, k, i in zip(*(real.column(c).to_pylist() for c in ("request_id", "event_type", "item_id")), strict=True):
        if k == "impression":
            shown.setdefault(r, set()).add(i)
    moved = 0
    cols = ("request_id", "event_type", "item_id")
    for (r, k, i), (_, _, j) in zip(
        zip(*(real.column(c).to_pylist() for c in cols), strict=True),
        zip(*(permuted.column(c).to_pylist() for c in cols), strict=True),
        strict=True,
    ):
        if k == "impression":
            assert i == j
        elif r in shown:
            assert j in shown[r]
            moved += i != j
    assert moved > 500


def test_no_model_beats_chance_within_requests_on_permuted_feedback(
    logs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, permuted, items = logs
    model = build_tiny_gpt2(tmp_path / "tiny-gpt2")
    cfg = load_config(overrides={"text": {"enabled": True, "model": str(model), "device": "cpu"}})
    rep = run_replay(permuted, cfg, items_path=items, report_dir=tmp_path / "perm")
    names = set(rep.models)
    assert {"rtrec", "static", "linear", "popularity", "rtrec_no_text", "rtrec_with_distill"} <= names
    # A model that sees only user- and request-level features sets the bar for global AUC.
    user_level = replace(
        load_config(overrides={"text": {"enabled": False}}),
        features=replace(cfg.features, namespaces=("user", "hour", "weekday", "device"), crosses=()),
    )
    ref = run_replay(permuted, user_level, items_path=items, report_dir=tmp_path / "ref", ablations=False)
    bar = ref.models["linear"]["auc"]
    assert rep.data["requests"] > 2_000
    for name, row in rep.models.items():
        assert row["group_auc"] == pytest.approx(0.5, abs=0.03), (name, row["group_auc"])
        assert row["auc"] <= bar + 0.02, (name, row["auc"], bar)


def test_on_real_feedback_group_auc_is_reported_and_learned(logs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    real, _, items = logs
    cfg = load_config(overrides={"text": {"enabled": False}})
    rep = run_replay(real, cfg, items_path=items, report_dir=tmp_path / "real", ablations=False)
    for row in rep.models.values():
        assert row["group_auc"] is not None
    assert rep.models["rtrec"]["group_auc"] > 0.6  # the simulated tastes are learnable within requests
    assert rep.models["popularity"]["group_auc"] < rep.models["rtrec"]["group_auc"]
