"""Rows on their way in: what an ingest reports, validated rows as Arrow columns, raw text of rejects."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from rtrec import _native
from rtrec.errors import InvalidInputError
from rtrec.events.schema import EVENT_INPUT_COLUMNS, EVENT_TYPES, ITEM_COLUMNS, ITEM_SCHEMA
from rtrec.events.validate import Unparsed, Validator
from rtrec.jsonable import jsonable

__all__ = ["IngestSummary", "Rejected"]


@dataclass(frozen=True)
class Rejected:
    """A row that was not stored: its position in the input and why."""

    index: int
    reason: str


@dataclass
class IngestSummary:
    """What one ingest did. ``rejected`` rows are also stored in the ``rejected_events`` table."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None
    source: str = "api"

    @property
    def total(self) -> int:
        return self.accepted + self.duplicates + len(self.rejected)

    def merge(self, other: IngestSummary) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)
        if other.first_seq is not None and self.first_seq is None:
            self.first_seq = other.first_seq
        if other.last_seq is not None:
            self.last_seq = other.last_seq

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
        }

    def __str__(self) -> str:
        seqs = f", seq {self.first_seq}..{self.last_seq}" if self.first_seq is not None else ""
        return (
            f"{self.source}: {self.accepted} accepted, {self.duplicates} duplicates, "
            f"{len(self.rejected)} rejected{seqs}"
        )


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), default=str, ensure_ascii=False)


_EVENT_TYPES_IN = [
    ("event_id", pa.string()),
    ("ts", pa.int64()),
    ("user_id", pa.string()),
    ("item_id", pa.string()),
    ("event_type", pa.string()),
    ("value", pa.float64()),
    ("request_id", pa.string()),
    ("propensity", pa.float64()),
    ("context", pa.string()),
]
#: Raw text kept for a rejected row is clipped to this many characters.
RAW_LIMIT = 65_536


def events_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Validated, normalised rows as typed columns (``ts`` in epoch microseconds)."""
    cols = {name: pa.array([r[name] for r in rows], tp) for name, tp in _EVENT_TYPES_IN}
    cols["ts"] = cols["ts"].cast(pa.timestamp("us"))
    return pa.table(cols)


def simple_events(body: bytes, validator: Validator, max_rows: int) -> pa.Table | None:
    """What :func:`to_arrow` would make of the JSON array ``body`` when the validator takes every
    row as it is (the same table, nothing rejected), parsed natively with the GIL released;
    None when some row is not of the simple shape (string ids, numeric ``ts``, no ``context``)
    or not valid, and the rows must be parsed and checked one by one.

    A posted batch costs the GIL about 17 ms per thousand rows when parsed and checked in
    Python: time the learner and the recommend requests wait for.
    """
    got = _native.parse_simple_events(
        body, list(EVENT_TYPES), validator.latest_us(), validator.oldest_us, validator.cfg.max_id_chars, max_rows
    )
    if got is None:
        return None
    n, ts_us, event_id, user_id, item_id, event_type, value, request_id, propensity = got

    def strings(col: tuple[bytes, np.ndarray, np.ndarray]) -> pa.Array:
        data, offsets, valid = col
        nulls = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), nulls)

    def numbers(col: tuple[np.ndarray, np.ndarray]) -> pa.Array:
        return pa.array(col[0], pa.float64(), mask=~col[1])

    cols = {
        "event_id": strings(event_id),
        "ts": pa.array(ts_us, pa.int64()).cast(pa.timestamp("us")),
        "user_id": strings(user_id),
        "item_id": strings(item_id),
        "event_type": strings(event_type),
        "value": numbers(value),
        "request_id": strings(request_id),
        "propensity": numbers(propensity),
        "context": pa.nulls(n, pa.string()),
    }
    return pa.table(cols)


def raw_json(row: Any) -> str:
    """The row as JSON text for ``rejected_events.raw``: ASCII (a lone surrogate is escaped), clipped,
    and a placeholder when it cannot be written at all (nested too deep, say)."""
    if isinstance(row, Unparsed):
        return row.raw.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:RAW_LIMIT]
    try:
        text = json.dumps(row, ensure_ascii=True, default=str)
    except (RecursionError, ValueError, TypeError) as exc:
        text = json.dumps(f"<{type(row).__name__} not stored: {type(exc).__name__}>")
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT]


def with_rejected(
    summary: IngestSummary, kept: np.ndarray | None, rejected: list[tuple[int, str, str]]
) -> IngestSummary:
    """Map the stored rows' indices back to the input, and add the rows rejected before Arrow."""
    if kept is None:
        return summary
    summary.rejected = sorted(
        [Rejected(int(kept[r.index]), r.reason) for r in summary.rejected]
        + [Rejected(i, reason) for i, reason, _ in rejected],
        key=lambda r: r.index,
    )
    return summary


def items_from_rows(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInputError(f"items row {i}: expected an object, got {type(row).__name__}")
        item_id = row.get("item_id")
        if item_id is None or (isinstance(item_id, str) and not item_id.strip()):
            raise InvalidInputError(f"items row {i}: item_id: missing; no items were written")
        if isinstance(item_id, bool) or not isinstance(item_id, str | int):
            raise InvalidInputError(f"items row {i}: item_id: expected a string or integer, got {item_id!r}")
        tags = row.get("tags")
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split("|") if t.strip()]
        elif tags is not None:
            if not isinstance(tags, list | tuple):
                raise InvalidInputError(f"items row {i}: tags: expected a list or 'a|b' text, got {tags!r}")
            tags = [str(t) for t in tags]
        attrs = row.get("attrs")
        if isinstance(attrs, str):
            try:
                attrs = json.loads(attrs)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"items row {i}: attrs: not valid JSON ({exc})") from exc
        if attrs is not None and not isinstance(attrs, Mapping):
            raise InvalidInputError(f"items row {i}: attrs: expected a JSON object, got {attrs!r}")
        extra = {k: v for k, v in row.items() if k not in ITEM_COLUMNS}
        if extra:
            attrs = {**(attrs or {}), **extra}
        updated = row.get("updated_at")
        out.append(
            {
                "item_id": str(item_id),
                "title": None if row.get("title") is None else str(row["title"]),
                "description": None if row.get("description") is None else str(row["description"]),
                "category": None if row.get("category") is None else str(row["category"]),
                "tags": tags,
                "attrs": None if attrs is None else dumps(attrs),
                "updated_at": None
                if updated is None
                else str(updated)
                if not isinstance(updated, int | float)
                else updated,
            }
        )
    upd = [r.pop("updated_at") for r in out]
    schema = pa.schema([f for f in ITEM_SCHEMA if f.name != "updated_at"])
    table = pa.Table.from_pylist(out, schema=schema)
    if any(u is not None for u in upd):
        if all(isinstance(u, int | float) or u is None for u in upd):
            table = table.append_column("updated_at", pa.array(upd, pa.float64()))
        else:
            table = table.append_column(
                "updated_at", pa.array([None if u is None else str(u) for u in upd], pa.string())
            )
    return table


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def id_hashes(ids: Sequence[str]) -> np.ndarray:
    """Python's hash of each event id (randomised per process, so only ever compared within one)."""
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))


def member(sorted_hashes: np.ndarray, h: np.ndarray) -> np.ndarray:
    if len(sorted_hashes) == 0:
        return np.zeros(len(h), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_hashes, h), len(sorted_hashes) - 1)
    return sorted_hashes[pos] == h


class StoredIds:
    """Hashes of every stored ``event_id``, so that ingest finds duplicates without scanning the log.

    A miss is certain (every insert adds its ids, and the set starts from the table); a hit may
    be a hash collision, so the caller confirms hits against the table. Costs 8 bytes per stored
    event: one large sorted array, plus a sorted run of recent ids merged into it once the run
    passes an eighth of its size (so each insert copies the small run, not the whole array).
    """

    def __init__(self, hashes: np.ndarray) -> None:
        self._base = np.sort(hashes.astype(np.int64, copy=False))
        self._recent = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._base) + len(self._recent)

    def contains(self, h: np.ndarray) -> np.ndarray:
        return member(self._base, h) | member(self._recent, h)

    def discard(self, h: np.ndarray) -> None:
        """Forget the hashes ``h`` (events deleted from the log: their ids may come again)."""
        self._base = self._base[~np.isin(self._base, h)]
        self._recent = self._recent[~np.isin(self._recent, h)]

    def add(self, h: np.ndarray) -> None:
        h = np.sort(h)
        self._recent = np.insert(self._recent, np.searchsorted(self._recent, h), h)
        if len(self._recent) > max(1 << 16, len(self._base) >> 3):
            self._base = np.insert(self._base, np.searchsorted(self._base, self._recent), self._recent)
            self._recent = np.zeros(0, dtype=np.int64)


@dataclass
class Pending:
    """One caller's batch waiting for a group commit."""

    table: pa.Table
    source: str
    summary: IngestSummary | None = None
    error: BaseException | None = None


def check_columns(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in EVENT_INPUT_COLUMNS and n != "seq"]
    if unknown:
        raise InvalidInputError(
            f"unknown event field {unknown[0]!r}",
            hint=f"event fields: {', '.join(EVENT_INPUT_COLUMNS)}",
        )


def to_arrow(data: Any, validator: Validator) -> tuple[pa.Table, np.ndarray | None, list[tuple[int, str, str]]]:
    """An Arrow table of the rows to store, the input index of each (None: all, in order), and
    the rows rejected before Arrow: (index, reason, raw JSON text).

    Rows given as objects are checked one by one (:class:`rtrec.events.validate.Validator`),
    so that a row's verdict never depends on the other rows of its batch.
    """
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        check_columns(data.column_names)
        if "seq" in data.column_names:
            data = data.drop_columns(["seq"])
        return data, None, []
    if isinstance(data, Mapping | str | bytes) or not isinstance(data, Sequence):
        raise InvalidInputError(
            f"events must be a list of objects or an Arrow table, got {type(data).__name__}",
        )
    check = validator.event
    now_us = round(time.time() * 1e6)
    good: list[dict[str, Any]] = []
    kept: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    for i, row in enumerate(data):
        out = check(row, now_us)
        if isinstance(out, str):
            rejected.append((i, out, raw_json(row)))
        else:
            good.append(out)
            kept.append(i)
    return events_table(good), np.asarray(kept, np.int64), rejected
