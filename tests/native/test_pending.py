"""The native waiting room of the labeller: its bookkeeping through a store's columns, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from rtrec._native import PendingImpressions
from rtrec.errors import InvalidInputError
from rtrec.labels.store import ANSWERED, EXPIRED, SnapshotStore


def store_with(keys: list[int], deadlines: list[int]) -> tuple[SnapshotStore, np.ndarray]:
    st = SnapshotStore(dense_dim=0, n_preds=1)
    slots = st.alloc(len(keys))
    st.key[slots] = keys
    st.deadline[slots] = deadlines
    st.seq[slots] = np.arange(1, len(keys) + 1)
    return st, slots


def test_impressions_wait_resolve_expire_and_come_back_late():
    st, slots = store_with([7, 8], [100, 100])
    w = PendingImpressions(1_000, 10)
    assert w.memory_bytes == 0
    # Rows: two impressions, then a click on key 7; the watermark stays at 0.
    got = w.plan(
        st.columns(),
        np.array([0, 1, 2]),
        np.array([slots[0], slots[1], -1]),
        np.array([7, 8, 7]),
        np.zeros(3, np.int64),
        np.array([0, 0, 1], np.float32),
        np.ones(3, np.float32),
        np.zeros(3, np.int64),
    )
    ex_slot, ex_label, _, ex_origin, ex_order, event_rows, freed = got
    assert ex_slot.tolist() == [slots[0]] and ex_label.tolist() == [1.0]
    assert ex_origin.tolist() == [1] and ex_order.tolist() == [2 * 2 + 2]
    assert len(event_rows) == 0 and len(freed) == 0
    assert (w.n_pending, w.n_retained) == (1, 1) and st.state[slots[0]] == ANSWERED
    assert w.memory_bytes >= 2 * 24  # two queue entries at least
    # The watermark passes key 8's deadline: a negative, kept as expired for a late click.
    ex_slot, ex_label, *_ = w.expire(st.columns(), 200, 200)
    assert ex_slot.tolist() == [slots[1]] and ex_label.tolist() == [0.0]
    assert st.state[slots[1]] == EXPIRED and w.n_pending == 0
    assert w.in_play(np.array([8, 9]), np.array([False, False])).tolist() == [True, False]
    # Past deadline + retention both snapshots are freed.
    *_, freed = w.expire(st.columns(), 2_000, 2_000)
    assert sorted(freed.tolist()) == sorted(slots.tolist()) and w.is_empty


def test_rebuild_restores_what_the_store_says():
    st, slots = store_with([7, 7, 9], [100, 200, 300])
    w = PendingImpressions(0, 10)
    w.plan(
        st.columns(),
        np.arange(3),
        slots,
        np.array([7, 7, 9]),
        np.zeros(3, np.int64),
        np.zeros(3, np.float32),
        np.ones(3, np.float32),
        np.zeros(3, np.int64),
    )
    again = PendingImpressions(0, 10)
    again.rebuild(st.columns(), slots, np.zeros(0, np.int64))
    assert again.n_pending == 3
    ex_slot, *_ = again.expire(st.columns(), None, None)
    assert ex_slot.tolist() == slots.tolist()  # by deadline


def test_bad_input_names_the_field():
    st, slots = store_with([7], [100])
    w = PendingImpressions(0, 10)
    cols = st.columns()
    args = (np.zeros(1, np.int64), np.zeros(1, np.float32), np.ones(1, np.float32), np.zeros(1, np.int64))
    with pytest.raises(InvalidInputError, match="store"):
        w.plan(cols[:5], np.array([0]), slots, np.array([7]), *args)
    with pytest.raises(InvalidInputError, match="slot"):
        w.plan(cols, np.array([0]), np.array([len(st.key)]), np.array([7]), *args)
    with pytest.raises(InvalidInputError, match="cand"):
        w.plan(cols, np.array([1]), slots, np.array([7]), *args)
    with pytest.raises(InvalidInputError, match="pending"):
        w.rebuild(cols, np.array([-1]), np.zeros(0, np.int64))
