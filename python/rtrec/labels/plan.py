"""What one chunk of events does: the plan the labeller makes, and the helpers to make it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from rtrec.errors import InvalidInputError
from rtrec.events.schema import EVENT_COLUMNS, EVENT_SCHEMA

__all__ = ["Plan", "PlanBuilder", "conform", "keys_of", "request_hashes"]

_TS = EVENT_COLUMNS.index("ts")
_RID_SEEDS = (0x5EED_0001, 0x5EED_0002)
_RID_HASHERS: list[Any] | None = None


@dataclass
class Plan:
    """What one chunk of events does (see the module docstring).

    ``reads``: chunk rows to featurize now (ascending); ``read_slot``: the store slot of each
    read that is an impression (-1 for a labelled event, read and resolved at once).
    Examples, in the order they resolve: ``ex_row`` (the chunk row of an ``event`` example,
    else -1), ``ex_slot`` (the store slot of an impression's example, else -1), ``ex_label``,
    ``ex_weight``, ``ex_origin`` (index into :data:`ORIGINS`), ``ex_order`` (the order key).
    ``release``: slots to free once the examples have been learned.
    """

    reads: np.ndarray
    read_slot: np.ndarray
    ex_row: np.ndarray
    ex_slot: np.ndarray
    ex_label: np.ndarray
    ex_weight: np.ndarray
    ex_origin: np.ndarray
    ex_order: np.ndarray
    release: np.ndarray

    @property
    def n_examples(self) -> int:
        return len(self.ex_label)

    @classmethod
    def empty(cls) -> Plan:
        i, f = np.zeros(0, np.int64), np.zeros(0, np.float32)
        return cls(i, i, i, i, f, f, np.zeros(0, np.int8), i, i)


def request_hashes(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each request id, stable across processes; 0 for a missing one."""
    from rtrec.features import Hasher

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    if col.null_count == n:
        return np.zeros(n, dtype=np.int64)
    global _RID_HASHERS
    if _RID_HASHERS is None:  # built once: building one costs more than hashing a request id
        _RID_HASHERS = [Hasher(["request_id"], bits=32, seed=seed) for seed in _RID_SEEDS]
    parts = []
    for hasher in _RID_HASHERS:
        h = hasher.hash({"request_id": col})
        full = np.zeros(n, dtype=np.int64)
        has = np.diff(h.offsets) > 0
        full[has] = h.indices
        parts.append(full)
    out = (parts[0] << 32) | parts[1]
    out[out == 0] = 1  # 0 means "no request id"
    valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    out[~valid] = 0
    return out


def keys_of(user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
    return (np.asarray(user_idx, np.int64) << 32) | np.asarray(item_idx, np.int64)


class PlanBuilder:
    """Collects a plan's reads, examples and freed slots in the order the labeller finds them."""

    def __init__(self) -> None:
        self.read_rows: list[np.ndarray] = []
        self.read_slots: list[np.ndarray] = []
        self.ev_rows: list[np.ndarray] = []
        self.ev_label: list[np.ndarray] = []
        self.ev_weight: list[np.ndarray] = []
        # Examples of stored impressions (their chunk row is -1), as the labeller returns them.
        self.st_slot: list[np.ndarray] = []
        self.st_label: list[np.ndarray] = []
        self.st_weight: list[np.ndarray] = []
        self.st_origin: list[np.ndarray] = []
        self.st_order: list[np.ndarray] = []
        self.freed: list[np.ndarray] = []

    def events_only(self, rows: np.ndarray, label: np.ndarray, weight: np.ndarray) -> Plan:
        none = np.full(len(rows), -1, dtype=np.int64)
        return Plan(
            reads=rows.astype(np.int64),
            read_slot=none,
            ex_row=rows.astype(np.int64),
            ex_slot=none,
            ex_label=label.astype(np.float32),
            ex_weight=weight.astype(np.float32),
            ex_origin=np.zeros(len(rows), np.int8),
            ex_order=2 * rows.astype(np.int64) + 2,
            release=np.zeros(0, np.int64),
        )

    def add_events(self, rows: np.ndarray, label: np.ndarray, weight: np.ndarray) -> None:
        self.ev_rows.append(rows.astype(np.int64))
        self.ev_label.append(label)
        self.ev_weight.append(weight)

    def add_reads(self, rows: np.ndarray, slots: np.ndarray) -> None:
        self.read_rows.append(rows.astype(np.int64))
        self.read_slots.append(slots.astype(np.int64))

    def examples(
        self, slots: np.ndarray, label: np.ndarray, weight: np.ndarray, origin: np.ndarray, order: np.ndarray
    ) -> None:
        """Examples of stored impressions, in the order they resolve."""
        self.st_slot.append(slots)
        self.st_label.append(label)
        self.st_weight.append(weight)
        self.st_origin.append(origin)
        self.st_order.append(order)

    def free(self, slots: np.ndarray) -> None:
        self.freed.append(slots)

    def build(self) -> Plan:
        ev = np.concatenate(self.ev_rows) if self.ev_rows else np.zeros(0, np.int64)
        reads = np.concatenate([*self.read_rows, ev])
        read_slot = np.concatenate([*self.read_slots, np.full(len(ev), -1, np.int64)])
        order = np.argsort(reads, kind="stable")
        st_slot = _cat(self.st_slot, np.int64)
        ex_row = np.concatenate([ev, np.full(len(st_slot), -1, np.int64)])
        ex_slot = np.concatenate([np.full(len(ev), -1, np.int64), st_slot])
        ex_label = _cat([*self.ev_label, *self.st_label], np.float32)
        ex_weight = _cat([*self.ev_weight, *self.st_weight], np.float32)
        ex_origin = np.concatenate([np.zeros(len(ev), np.int8), _cat(self.st_origin, np.int8)])
        ex_order = np.concatenate([2 * ev + 2, _cat(self.st_order, np.int64)])
        # Stable: examples that share an order key keep the order they were emitted in.
        by = np.argsort(ex_order, kind="stable")
        return Plan(
            reads=reads[order],
            read_slot=read_slot[order],
            ex_row=ex_row[by],
            ex_slot=ex_slot[by],
            ex_label=ex_label[by],
            ex_weight=ex_weight[by],
            ex_origin=ex_origin[by],
            ex_order=ex_order[by],
            release=_cat(self.freed, np.int64),
        )


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def conform(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """The event columns in the log's schema (``ts`` as naive microseconds), or a clear error."""
    t = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    missing = [c for c in EVENT_COLUMNS if c not in t.column_names]
    if missing:
        raise InvalidInputError(f"events batch: {missing[0]}: missing column (expected {', '.join(EVENT_COLUMNS)})")
    t = t.select(list(EVENT_COLUMNS))
    if not t.schema.equals(EVENT_SCHEMA, check_metadata=False):
        ts = t.column("ts")
        if pa.types.is_timestamp(ts.type) and ts.type.tz is not None:
            t = t.set_column(_TS, "ts", ts.cast(pa.timestamp(ts.type.unit)))
        t = pa.Table.from_arrays([t.column(i).cast(f.type) for i, f in enumerate(EVENT_SCHEMA)], schema=EVENT_SCHEMA)
    if t.column("ts").null_count:
        raise InvalidInputError("events batch: ts: missing value")
    return t
