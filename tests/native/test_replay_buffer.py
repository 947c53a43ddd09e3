"""The native replay ring buffer: push/sample invariants, threads, serialisation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtrec._native import ReplayBuffer
from rtrec.errors import CorruptDataError, InvalidInputError


def push_range(buf: ReplayBuffer, start: int, n: int, dense_dim: int = 0) -> None:
    ids = np.arange(start, start + n, dtype=np.int64)
    buf.push(
        np.repeat(ids, 2),
        np.arange(0, 2 * n + 1, 2, dtype=np.int64),
        (ids % 2).astype(np.float32),
        np.ones(n, dtype=np.float32),
        ids.astype(np.float64),
        ids,
        np.repeat(ids, dense_dim).astype(np.float32).reshape(n, dense_dim) if dense_dim else None,
    )


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 50), pushes=st.lists(st.integers(0, 30), max_size=8), n=st.integers(0, 40))
def test_push_sample_invariants(capacity: int, pushes: list[int], n: int) -> None:
    buf = ReplayBuffer(capacity, dense_dim=2, seed=3)
    start = 0
    for k in pushes:
        push_range(buf, start, k, dense_dim=2)
        start += k
    assert len(buf) == min(capacity, start)
    assert buf.pushed == start
    rows = buf.rows()
    assert rows["row_ids"].tolist() == list(range(max(0, start - capacity), start))
    s = buf.sample(n, "uniform")
    if start == 0:
        assert len(s["labels"]) == 0
        return
    assert len(s["labels"]) == n and s["offsets"][-1] == len(s["indices"])
    live = set(rows["row_ids"].tolist())
    assert set(s["row_ids"].tolist()) <= live
    # Every sampled row is intact: its features, label and dense values belong together.
    feats = s["indices"].reshape(-1, 2)
    assert (feats[:, 0] == s["row_ids"]).all()
    assert (s["labels"] == (s["row_ids"] % 2)).all()
    assert (s["dense"][:, 0] == s["row_ids"]).all()


def test_concurrent_push_and_sample_keep_rows_whole() -> None:
    buf = ReplayBuffer(500, seed=1)
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            for i in range(200):
                push_range(buf, i * 50, 50)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def consumer() -> None:
        try:
            for _ in range(200):
                s = buf.sample(64, "recency", half_life=100.0)
                if len(s["labels"]):
                    feats = s["indices"].reshape(-1, 2)
                    assert (feats[:, 0] == s["row_ids"]).all()
                    assert (feats[:, 1] == s["row_ids"]).all()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert buf.pushed == 10_000 and len(buf) == 500
    assert buf.rows()["row_ids"].tolist() == list(range(9_500, 10_000))


def test_strategies_behave() -> None:
    buf = ReplayBuffer(2000, seed=5)
    push_range(buf, 0, 2000)
    recent = buf.sample(4000, "recency", half_life=50.0)["row_ids"]
    assert np.median(2000 - 1 - recent) == pytest.approx(50, abs=8)
    by_time = buf.sample(4000, "recency_seconds", half_life=50.0)["row_ids"]
    assert np.median(2000 - 1 - by_time) == pytest.approx(50, abs=8)
    buf2 = ReplayBuffer(100, seed=5)
    ids = np.arange(100, dtype=np.int64)
    labels = (ids < 5).astype(np.float32)
    buf2.push(ids, np.arange(101, dtype=np.int64), labels, np.ones(100, np.float32), ids.astype(float))
    assert buf2.positives == 5
    bal = buf2.sample(1000, "balanced")["labels"]
    assert (bal >= 0.5).sum() == 500
    with pytest.raises(InvalidInputError, match="half_life"):
        buf.sample(3, "recency")
    with pytest.raises(InvalidInputError, match="strategy"):
        buf.sample(3, "newest")


def test_seeded_samples_repeat_and_round_trip() -> None:
    buf = ReplayBuffer(64, dense_dim=1, seed=9)
    push_range(buf, 0, 100, dense_dim=1)
    a = buf.sample(32, "uniform", seed=4)
    b = buf.sample(32, "uniform", seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    blob = buf.to_bytes()
    back = ReplayBuffer.from_bytes(blob)
    assert back.to_bytes() == blob
    x, y = buf.sample(16), back.sample(16)
    assert all(np.array_equal(x[k], y[k]) for k in x)


def test_bad_blobs_and_pushes_raise_clear_errors() -> None:
    buf = ReplayBuffer(8)
    push_range(buf, 0, 4)
    blob = bytearray(buf.to_bytes())
    with pytest.raises(CorruptDataError, match="magic"):
        ReplayBuffer.from_bytes(b"PK\x03\x04 a zip file")
    blob[-20] ^= 0x55
    with pytest.raises(CorruptDataError, match="checksum"):
        ReplayBuffer.from_bytes(bytes(blob))
    with pytest.raises(InvalidInputError, match="offsets"):
        buf.push(
            np.array([1], np.int64),
            np.array([0, 2], np.int64),
            np.ones(1, np.float32),
            np.ones(1, np.float32),
            np.zeros(1),
        )
    with pytest.raises(InvalidInputError, match="labels"):
        buf.push(
            np.array([1], np.int64),
            np.array([0, 1], np.int64),
            np.array([np.nan], np.float32),
            np.ones(1, np.float32),
            np.zeros(1),
        )
    with pytest.raises(InvalidInputError, match="capacity"):
        ReplayBuffer(0)
    assert len(buf) == 4
