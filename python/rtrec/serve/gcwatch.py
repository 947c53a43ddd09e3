"""Garbage-collector pauses: measured, and kept short by freezing what start-up loaded.

A full collection (generation 2) stops every thread of the daemon while it walks every
object the interpreter tracks. Most of them are what start-up loaded and never frees: the
modules of torch, transformers, pyarrow and duckdb, and the restored model. Measured on the
development box, a full collection took about 170 ms right after those imports and 350 to
500 ms under the overload benchmark, about every 10 s. :func:`freeze_startup` moves what
start-up built into the permanent generation (``gc.freeze``), so later collections skip it;
objects that die are still freed by reference counting as before. :class:`GcWatch` times
every collection by generation, for ``/v1/stats`` (``gc``) and ``/metrics``
(``rtrec_gc_pause_gen{0,1,2}_seconds``).
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from rtrec.contracts import GcStats
from rtrec.serve.metrics import Registry

__all__ = ["GcWatch", "freeze_startup"]

# Pauses span microseconds (a young collection) to a second (a full one on a large heap).
GC_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def freeze_startup() -> int:
    """Collect once, then exempt every surviving object from later collections; how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcWatch:
    """Times each collection (a ``gc.callbacks`` hook) into one latency meter per generation."""

    def __init__(self, registry: Registry) -> None:
        self.pauses = [
            registry.latency(f"gc_pause_gen{g}_seconds", f"Garbage-collector pauses of generation {g}.", GC_BUCKETS)
            for g in range(3)
        ]
        self._start = threading.local()
        self._installed = False
        # Objects frozen at start-up, as freeze_startup counted them. Not asked again per read:
        # gc.get_freeze_count walks the whole permanent generation while holding the GIL (22 ms
        # for the 225,000 objects torch and friends leave, stalling every request meanwhile).
        self.frozen = 0

    def install(self) -> GcWatch:
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True
        return self

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start.t = time.perf_counter()
            return
        t0 = getattr(self._start, "t", None)
        gen = int(info.get("generation", 0))
        if t0 is not None and 0 <= gen < len(self.pauses):
            self.pauses[gen].observe(time.perf_counter() - t0)
            self._start.t = None

    def stats(self) -> GcStats:
        return {
            "frozen": self.frozen,
            "pauses": {f"gen{g}": lat.percentiles() for g, lat in enumerate(self.pauses)},
            "max_s": {f"gen{g}": lat.max() for g, lat in enumerate(self.pauses)},
        }
