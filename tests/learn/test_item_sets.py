"""The items remembered per user: the native sets against a plain model, and their bound in the learner."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtrec import _native
from rtrec.config import load_config
from rtrec.errors import InvalidInputError
from rtrec.events import EventLog
from rtrec.learn import OnlineLearner
from rtrec.sets import as_dict, load_item_sets
from rtrec.sim import SimConfig, Simulator

OPS = st.lists(
    st.one_of(
        st.lists(st.tuples(st.integers(0, 5), st.integers(0, 12)), max_size=30).map(lambda p: ("add", p)),
        st.integers(0, 6).map(lambda u: ("remove", u)),
    ),
    max_size=25,
)


def reference(ops: list[tuple[str, object]], bound: int) -> tuple[dict[int, list[int]], int]:
    """Lists in touch order: bounded, a touch moves the item to the end and the front is forgotten."""
    sets: dict[int, list[int]] = {}
    evicted = 0
    for op, arg in ops:
        if op == "remove":
            sets.pop(arg, None)  # type: ignore[call-overload]
            continue
        for u, i in arg:  # type: ignore[attr-defined]
            s = sets.setdefault(u, [])
            if i in s:
                if bound:
                    s.remove(i)
                    s.append(i)
                continue
            if bound and len(s) >= bound:
                s.pop(0)
                evicted += 1
            s.append(i)
    return {u: s for u, s in sets.items() if s}, evicted


@settings(max_examples=300, deadline=None)
@given(ops=OPS, bound=st.integers(0, 4))
def test_item_sets_match_a_plain_model(ops: list[tuple[str, object]], bound: int) -> None:
    sets = _native.ItemSets(bound)
    for op, arg in ops:
        if op == "remove":
            sets.remove(arg)  # type: ignore[arg-type]
        else:
            pairs = np.array(arg, np.int64).reshape(-1, 2)  # type: ignore[arg-type]
            sets.add(np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]))
    want, evicted = reference(ops, bound)
    assert {u: sets.get(u).tolist() for u in range(7) if len(sets.get(u))} == want
    assert sets.pairs == sum(map(len, want.values())) and sets.users == len(want) and sets.evicted == evicted
    again = load_item_sets(sets.to_flat(), bound)  # the checkpoint form keeps the order
    assert [again.get(u).tolist() for u in range(7)] == [sets.get(u).tolist() for u in range(7)]


def test_a_negative_index_is_refused_and_changes_nothing() -> None:
    sets = _native.ItemSets(0)
    sets.add(np.array([1], np.int64), np.array([2], np.int64))
    with pytest.raises(InvalidInputError, match="items"):
        sets.add(np.array([1, 1], np.int64), np.array([3, -1], np.int64))
    assert as_dict(sets) == {1: {2}}


SIM = SimConfig(n_users=20, n_items=60, n_topics=4, n_events=3_000, seed=3)


def learn(tmp_path: Path, bound: int) -> OnlineLearner:
    overrides = {"text": {"enabled": False}, "features": {"bits": 14}, "learner": {"items_per_user": bound}}
    learner = OnlineLearner(load_config(overrides=copy.deepcopy(overrides)))
    sim = Simulator(SIM)
    with EventLog.open(tmp_path / f"{bound}.duckdb") as log:
        log.ingest(sim.generate())
        log.upsert_items(sim.catalog())
        learner.set_catalog(log.items())
        for b in log.tail(0, batch_size=500):
            learner.learn(b)
    return learner


def test_the_learner_keeps_at_most_items_per_user_in_each_of_its_sets(tmp_path: Path) -> None:
    full, bounded = learn(tmp_path, 0), learn(tmp_path, 5)
    for name in ("user_items", "interacted", "consumed"):
        owner = {"user_items": "featurizer", "interacted": "retrieval"}.get(name)
        a = getattr(getattr(full, owner) if owner else full, name)
        b = getattr(getattr(bounded, owner) if owner else bounded, name)
        assert a.evicted == 0 and max(map(len, as_dict(a).values())) > 5, name  # the bound has work to do
        assert b.evicted > 0 and max(map(len, as_dict(b).values())) <= 5, name
        for u, items in as_dict(b).items():
            assert items <= as_dict(a)[u], name  # nothing that was not touched
    stats = bounded.stats()["user_items"]
    assert stats["max_per_user"] == 5 and stats["evicted"] > 0 and stats["pairs"] > 0
    assert stats["pairs"] < full.stats()["user_items"]["pairs"]
