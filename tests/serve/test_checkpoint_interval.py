"""Checkpoints take at most a tenth of the time: a slow one pushes the next one back."""

from __future__ import annotations

from pathlib import Path

from rtrec.contracts import CheckpointInfo
from rtrec.serve.checkpoints import WRITE_SHARE, CheckpointStore


def test_a_slow_checkpoint_pushes_the_next_one_back(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, log_=None)  # type: ignore[arg-type]
    assert store.interval(30.0) == 30.0  # none written yet
    store.last = CheckpointInfo(seq=1, path="x", created_at=0.0, seconds=1.0)
    assert store.interval(30.0) == 30.0  # 1 s of 30: within the share
    store.last = CheckpointInfo(seq=2, path="y", created_at=0.0, seconds=7.5)
    assert store.interval(30.0) == 7.5 / WRITE_SHARE == 75.0
