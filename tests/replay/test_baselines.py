"""The replay's popularity rows rank as of each event: every earlier positive counts, and every
item the user rated earlier is left out, also within the learn chunk (a session); a target is
cold by the item's ratings before it, also within the chunk."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rtrec.config import load_config
from rtrec.replay import run_replay

from .test_run import SMALL

T0 = 1_600_000_000
N_ITEMS = 30


def _log(tmp_path: Path) -> tuple[Path, Path, list[tuple[float, str, int, float]]]:
    """Sessions of ratings: each user rates a dozen items within minutes, so a session spans
    learn chunks (64 events) and its earlier items must leave that user's later lists."""
    rng = np.random.default_rng(3)
    weights = 1.0 / np.arange(1, N_ITEMS + 1)  # a few items far more rated than the rest
    rows: list[tuple[float, str, int, float]] = []
    t = float(T0)
    for s in range(60):
        user = f"u{s % 25}"
        items = rng.choice(N_ITEMS, size=12, replace=False, p=weights / weights.sum())
        t += 3600.0 * rng.integers(1, 48)
        for i in items.tolist():
            t += 7.0
            rows.append((t, user, i, float(rng.choice([2.0, 3.0, 4.0, 4.5, 5.0]))))
    # One rating per user and item (the last one drawn).
    rows = sorted({(u, i): (ts, u, i, v) for ts, u, i, v in rows}.values())
    events = pa.table(
        {
            "event_id": [f"e{k}" for k in range(len(rows))],
            "ts": pa.array([int(ts * 1e6) for ts, *_ in rows], pa.timestamp("us")),
            "user_id": [u for _, u, _, _ in rows],
            "item_id": [f"i{i}" for _, _, i, _ in rows],
            "event_type": ["rating"] * len(rows),
            "value": [v for *_, v in rows],
        }
    )
    items = pa.table({"item_id": [f"i{i}" for i in range(N_ITEMS)], "title": [f"item {i}" for i in range(N_ITEMS)]})
    pq.write_table(events, tmp_path / "events.parquet")
    pq.write_table(items, tmp_path / "items.parquet")
    return tmp_path / "events.parquet", tmp_path / "items.parquet", rows


def _reference(rows: list[tuple[float, str, int, float]], half_life_s: float) -> tuple[dict[str, float], list[bool]]:
    """HR@10 of both popularity rows, one event at a time (ties count against the target), and
    which targets were cold (fewer than 5 earlier ratings of the item)."""
    positives: list[tuple[float, int]] = []
    rated: dict[str, set[int]] = {}
    ratings = np.zeros(N_ITEMS, np.int64)
    hits: dict[str, list[bool]] = {"popularity": [], "popularity_all_time": []}
    cold: list[bool] = []
    for ts, user, item, value in rows:
        seen = rated.setdefault(user, set())
        if value >= 4.0:
            cold.append(bool(ratings[item] < 5))
            cand = [i for i in range(N_ITEMS) if i not in seen or i == item]
            all_time = {i: sum(1.0 for _, j in positives if j == i) for i in cand}
            decayed = {i: sum(math.exp2(-(ts - t) / half_life_s) for t, j in positives if j == i) for i in cand}
            for name, score in (("popularity_all_time", all_time), ("popularity", decayed)):
                above = sum(1 for i in cand if i != item and score[i] >= score[item] * (1 - 1e-9))
                hits[name].append(above < 10)
            positives.append((ts, item))
        seen.add(item)
        ratings[item] += 1
    return {name: float(np.mean(h)) for name, h in hits.items()}, cold


def test_popularity_rows_rank_as_of_each_event(tmp_path: Path) -> None:
    events, items, rows = _log(tmp_path)
    overrides = copy.deepcopy(SMALL)
    overrides["replay"]["ranking_sample"] = 1.0  # every positive is ranked
    cfg = load_config(overrides=overrides)
    rep = run_replay(events, cfg, items_path=items, report_dir=tmp_path / "r", ablations=False)
    expected, cold = _reference(rows, cfg.learner.counter_half_life_s)
    for name, hr in expected.items():
        row = rep.models[name]
        assert row["ranked_events"] == len(cold) and row["cold_ranked_events"] == sum(cold)
        assert row["hr_at_10"] == pytest.approx(hr, abs=1e-6), name  # the report keeps six digits
    assert 0.0 < expected["popularity"] < 1.0 and 0.0 < expected["popularity_all_time"] < 1.0
    assert 0 < sum(cold) < len(cold)
