"""Tests for rtrec.labels.store: slots, the CSR arena, compaction and persistence."""

from __future__ import annotations

import numpy as np

from rtrec.labels import SnapshotStore, csr_gather
from rtrec.labels.store import csr_join


def rows(store: SnapshotStore, slots: np.ndarray) -> list[tuple[list[int], list[int]]]:
    ind, off, xind, xoff = store.indices(slots)
    return [(ind[off[k] : off[k + 1]].tolist(), xind[xoff[k] : xoff[k + 1]].tolist()) for k in range(len(slots))]


def put(store: SnapshotStore, slots: np.ndarray, data: list[tuple[list[int], list[int]]]) -> None:
    ind = np.array([v for a, _ in data for v in a], np.int64)
    off = np.concatenate([[0], np.cumsum([len(a) for a, _ in data])]).astype(np.int64)
    xind = np.array([v for _, b in data for v in b], np.int64)
    xoff = np.concatenate([[0], np.cumsum([len(b) for _, b in data])]).astype(np.int64)
    store.put_indices(slots, ind, off, xind, xoff)


def test_csr_helpers() -> None:
    values, offsets = csr_gather(np.arange(10), np.array([7, 0, 3]), np.array([2, 0, 3]))
    assert values.tolist() == [7, 8, 3, 4, 5] and offsets.tolist() == [0, 2, 2, 5]
    joined, off = csr_join(np.array([1, 2, 3]), np.array([0, 2, 3]), np.array([9, 8]), np.array([0, 0, 2]))
    assert joined.tolist() == [1, 2, 3, 9, 8] and off.tolist() == [0, 2, 5]


def test_slots_keep_their_rows_through_reuse_and_compaction() -> None:
    rng = np.random.default_rng(0)
    store = SnapshotStore(dense_dim=3, n_preds=2)
    truth: dict[int, tuple[list[int], list[int]]] = {}
    for _ in range(200):
        slots = store.alloc(int(rng.integers(1, 20)))
        data = [
            (rng.integers(0, 2**32, rng.integers(0, 30)).tolist(), rng.integers(0, 2**24, rng.integers(0, 4)).tolist())
            for _ in slots
        ]
        put(store, slots, data)
        truth.update(zip(slots.tolist(), data, strict=True))
        gone = [s for s in truth if rng.random() < 0.4]
        store.release(np.array(gone, np.int64))
        for s in gone:
            del truth[s]
    live = np.array(sorted(truth), np.int64)
    assert store.live == len(live)
    assert rows(store, live) == [truth[s] for s in live.tolist()]
    # The arena holds at most about twice what is live (garbage is compacted away).
    assert store.arena_live == sum(len(a) + len(b) for a, b in truth.values())
    restored = SnapshotStore.from_state(store.state_dict())
    assert rows(restored, live) == [truth[s] for s in live.tolist()]
    assert restored.live == store.live and len(restored.free) == restored.high - restored.live
    fresh = restored.alloc(5)
    assert not set(fresh.tolist()) & set(live.tolist())  # reuse never hands out a live slot


def test_dense_and_predictions_round_trip() -> None:
    store = SnapshotStore(dense_dim=2, n_preds=1)
    slots = store.alloc(3)
    put(store, slots, [([1], []), ([2, 3], [5]), ([], [])])
    store.put(slots, dense=np.arange(6, dtype=np.float32).reshape(3, 2), preds=np.array([[0.1], [0.2], [0.3]]))
    snap = SnapshotStore.from_state(store.state_dict()).gather(slots[::-1])
    assert snap.dense.tolist() == [[4.0, 5.0], [2.0, 3.0], [0.0, 1.0]]
    np.testing.assert_allclose(snap.preds[:, 0], [0.3, 0.2, 0.1], rtol=1e-6)
    assert snap.indices.tolist() == [2, 3, 1] and snap.xindices.tolist() == [5]


def test_compacting_a_raw_copy_lets_go_of_each_array_and_keeps_every_row() -> None:
    """A checkpoint's raw copy is as large as the store: compacting it must not keep it whole
    beside the compacted form (the two together would double the checkpoint's memory)."""
    store = SnapshotStore(dense_dim=2, n_preds=1)
    slots = store.alloc(4)
    put(store, slots, [([1], [7]), ([2, 3], []), ([4], [8, 9]), ([], [])])
    store.release(slots[1:2])
    raw = store.raw(copy=True)
    compacted = SnapshotStore.compact(raw)
    assert {k for k, v in raw.items() if isinstance(v, np.ndarray)} == {"free"}  # the free list is kept as is
    live = np.array([0, 2, 3], np.int64)
    assert rows(SnapshotStore.from_state(compacted), live) == rows(store, live)
    assert rows(SnapshotStore.from_state(store.state_dict()), live) == rows(store, live)


def test_a_checkpoint_copy_shares_the_rows_and_later_changes_do_not_reach_it() -> None:
    """``raw(copy=True)`` copies only the state and key-chain columns. While it lives, no slot it
    holds is handed out again and the arena and ``start`` are replaced, not rewritten, so that
    freeing, refilling and compacting after the copy leave what it shares as it was."""
    rng = np.random.default_rng(1)
    store = SnapshotStore(dense_dim=2, n_preds=1)
    store.release(store.alloc(5000))  # room enough that no column grows (a grown column is a new array)
    slots = store.alloc(300)
    data = [(rng.integers(0, 2**32, 20).tolist(), rng.integers(0, 2**24, 3).tolist()) for _ in slots]
    put(store, slots, data)
    store.put(slots, dense=rng.random((300, 2), dtype=np.float32))
    store.release(slots[:50])
    truth = rows(store, slots[50:])
    dense = store.dense[slots[50:]].copy()
    raw = store.raw(copy=True)
    assert np.shares_memory(raw["dense"], store.dense) and np.shares_memory(raw["arena"], store.arena)
    assert not np.shares_memory(raw["state"], store.state)
    arena = store.arena

    gone = slots[50:200]
    store.release(gone)
    for _ in range(40):  # refill and free again until the arena is compacted at least once
        new = store.alloc(100)
        assert not set(new.tolist()) & set(gone.tolist())  # held by the copy: not handed out
        put(store, new, [(rng.integers(0, 2**32, 30).tolist(), [7]) for _ in new])
        store.put(new, dense=np.full((100, 2), -1.0, np.float32))
        store.release(new)
    assert store.arena is not arena  # compacted into a new arena
    assert store.high == 5000  # no column grew: the copy shares the very arrays learning wrote to

    restored = SnapshotStore.from_state(SnapshotStore.compact(dict(raw)))
    assert restored.live == 250
    assert rows(restored, slots[50:]) == truth
    np.testing.assert_array_equal(restored.dense[slots[50:]], dense)
    del raw
    again = store.alloc(store.high)  # every free slot, the held ones included once the copy is gone
    assert set(gone.tolist()) <= set(again.tolist())
