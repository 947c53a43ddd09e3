"""Checkpoint files: large arrays go through tensor records (no pickled copy) and come back as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rtrec.learn.checkpoint import MAGIC, VERSION, ArrayRecord, Shadows, read_checkpoint, write_checkpoint


def test_large_arrays_round_trip_through_tensor_records(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    state = {
        "magic": MAGIC,
        "version": VERSION,
        "arena": rng.integers(0, 2**32, 300_000, dtype=np.uint32),
        "keys": rng.integers(0, 2**63, 200_000, dtype=np.uint64),
        "pair": (rng.random((70_000, 4), dtype=np.float32), "text"),
        "nested": [{"mask": rng.random(2_000_000) < 0.5}],
        "strided": np.arange(600_000, dtype=np.int64)[::2],
        "small": np.arange(3),
        "names": ["u1", "u2"],
        "weights": torch.arange(5.0),
    }
    path = write_checkpoint(state, tmp_path / "x.ckpt")
    raw = torch.load(path, weights_only=False)
    assert isinstance(raw["arena"], ArrayRecord) and isinstance(raw["nested"][0]["mask"], ArrayRecord)
    assert isinstance(raw["small"], np.ndarray)  # small arrays stay pickled
    back = read_checkpoint(path)
    for name in ("arena", "keys", "strided", "small"):
        assert back[name].dtype == state[name].dtype
        np.testing.assert_array_equal(back[name], state[name])
    np.testing.assert_array_equal(back["pair"][0], state["pair"][0])
    assert back["pair"][1] == "text" and back["names"] == ["u1", "u2"]
    np.testing.assert_array_equal(back["nested"][0]["mask"], state["nested"][0]["mask"])
    assert torch.equal(back["weights"], state["weights"])


def test_a_checkpoint_of_the_previous_format_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "v2.ckpt"
    torch.save({"magic": MAGIC, "version": 2, "arena": np.arange(400_000, dtype=np.uint32)}, path)
    back = read_checkpoint(path)
    assert back["arena"].dtype == np.uint32 and int(back["arena"][-1]) == 399_999


def test_shadows_reuse_a_dropped_snapshots_buffers_and_never_overwrite_a_live_one() -> None:
    """A snapshot copies large tensors into the buffers of the last one once that is dropped (no
    fresh pages under the learner's lock); while it lives, the next one clones afresh."""
    big = torch.arange(1 << 19, dtype=torch.float32)  # 2 MB: above Shadows.MIN_BYTES
    small = torch.ones(3)
    shadows = Shadows()
    first, hold = shadows.copy({"big": big, "small": small, "n": 7})
    assert hold is not None and first["n"] == 7
    assert first["big"].data_ptr() != big.data_ptr() and torch.equal(first["big"], big)
    kept = first["big"].data_ptr()

    big += 1  # learning goes on
    second, second_hold = shadows.copy({"big": big, "small": small, "n": 8})
    assert second_hold is None  # the first is alive: its buffer is not touched
    assert torch.equal(first["big"], big - 1) and torch.equal(second["big"], big)
    assert second["big"].data_ptr() != kept
    del second, second_hold

    del first, hold
    big += 1
    third, _ = shadows.copy({"big": big, "small": small, "n": 9})
    assert third["big"].data_ptr() == kept and torch.equal(third["big"], big)  # the dropped snapshot's buffer
    assert third["small"].data_ptr() != small.data_ptr()
