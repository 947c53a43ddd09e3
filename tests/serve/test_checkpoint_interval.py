"""Checkpoints take at most a tenth of the time: a slow one pushes the next one back."""

from __future__ import annotations

import threading
from pathlib import Path

from rtrec.config import load_config
from rtrec.contracts import CheckpointInfo
from rtrec.learn import OnlineLearner
from rtrec.serve.checkpoints import MAX_STRETCH, STALL_SHARE, WRITE_SHARE, CheckpointStore


def test_a_slow_checkpoint_pushes_the_next_one_back(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, log_=None)  # type: ignore[arg-type]
    assert store.interval(30.0) == 30.0  # none written yet
    store.last = CheckpointInfo(seq=1, path="x", created_at=0.0, seconds=1.0)
    assert store.interval(30.0) == 30.0  # 1 s of 30: within the share
    store.last = CheckpointInfo(seq=2, path="y", created_at=0.0, seconds=7.5)
    assert store.interval(30.0) == 7.5 / WRITE_SHARE == 75.0


def test_a_long_hold_of_the_learner_spaces_checkpoints_within_a_bound(tmp_path: Path) -> None:
    """Each copy under the lock stalls the learner: at most a hundredth of the time, and never
    more than MAX_STRETCH intervals between checkpoints (what a crash makes the learner redo)."""
    store = CheckpointStore(tmp_path, log_=None)  # type: ignore[arg-type]
    store.last = CheckpointInfo(seq=1, path="x", created_at=0.0, seconds=0.5, lock_seconds=0.2)
    assert store.interval(30.0) == 30.0  # 0.2 s of 30: within the share
    store.last = CheckpointInfo(seq=2, path="y", created_at=0.0, seconds=2.0, lock_seconds=1.2)
    assert store.interval(30.0) == 1.2 / STALL_SHARE == 120.0
    store.last = CheckpointInfo(seq=3, path="z", created_at=0.0, seconds=6.0, lock_seconds=5.0)
    assert store.interval(30.0) == MAX_STRETCH * 30.0
    store.last = CheckpointInfo(seq=4, path="w", created_at=0.0, seconds=40.0, lock_seconds=5.0)
    assert store.interval(30.0) == 40.0 / WRITE_SHARE  # writing alone may stretch it further


def test_waiting_for_the_lock_is_not_counted_as_holding_the_learner(tmp_path: Path) -> None:
    """While the checkpoint waits for a learn step to end, the learner learns: only the copy
    after that stalls it, and only that may push the next checkpoint back."""
    learner = OnlineLearner(load_config(overrides={"text": {"enabled": False}, "features": {"bits": 12}}))
    learner.model_version = 1
    lock = threading.RLock()
    held, release = threading.Event(), threading.Event()

    def learn_step() -> None:
        with lock:
            held.set()
            release.wait(10)

    step = threading.Thread(target=learn_step)
    step.start()
    held.wait(10)
    threading.Timer(1.0, release.set).start()
    log_ = type("Log", (), {"record_checkpoint": lambda *a: None})()
    info = CheckpointStore(tmp_path, log_=log_).save(learner, lock)  # type: ignore[arg-type]
    step.join()
    assert info is not None and info["lock_wait_seconds"] >= 0.9
    assert info["lock_seconds"] < info["lock_wait_seconds"]
