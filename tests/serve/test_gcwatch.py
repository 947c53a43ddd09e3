"""Garbage-collector pauses: each collection is timed under its generation; freezing empties full ones."""

from __future__ import annotations

import gc

from rtrec.serve.gcwatch import GcWatch, freeze_startup
from rtrec.serve.metrics import Registry


def test_every_collection_is_timed_by_generation():
    watch = GcWatch(Registry()).install()
    try:
        for gen in (0, 1, 2):
            gc.collect(gen)
        stats = watch.stats()
    finally:
        watch.uninstall()
    assert [stats["pauses"][f"gen{g}"]["count"] >= 1 for g in range(3)] == [True] * 3
    assert stats["max_s"]["gen2"] > 0.0
    gc.collect(2)  # uninstalled: no longer counted
    assert watch.stats()["pauses"]["gen2"]["count"] == stats["pauses"]["gen2"]["count"]


def test_freezing_leaves_full_collections_little_to_walk():
    keep = [{"n": i} for i in range(50_000)]  # long-lived containers, as a loaded model holds
    try:
        frozen = freeze_startup()
        assert frozen >= len(keep)
        assert len(gc.get_objects(generation=2)) < frozen  # the walked generation no longer holds them
    finally:
        gc.unfreeze()
    del keep


def test_reading_the_stats_does_not_walk_the_frozen_objects(monkeypatch):
    """``gc.get_freeze_count`` walks every frozen object under the GIL (tens of ms after start-up);
    a dashboard polling ``/v1/stats`` must not pay that, nor make every request wait for it."""
    watch = GcWatch(Registry())
    watch.frozen = 1234

    def walk() -> int:
        raise AssertionError("stats() walked the permanent generation")

    monkeypatch.setattr(gc, "get_freeze_count", walk)
    assert watch.stats()["frozen"] == 1234
