"""The label policy: turn feedback events into weighted training examples, impressions included.

Rules (driven by :class:`rtrec.config.LabelsConfig`):

* event types in ``positive`` / ``negative`` are labelled 1 / 0 with their configured weight;
  a ``rating`` is positive when ``value >= rating_threshold`` and negative below it, with
  ``rating_weight``; other event types make no example.
* an ``impression`` is held pending for ``impression_window_s`` of event time. A labelled event
  for the same user and item (and the same ``request_id`` when both carry one) that arrives
  while it is pending resolves it: one example is emitted from the impression's columns (its
  context and propensity are what was shown) with the resolving event's label and weight and
  origin ``"impression"``; the resolving event makes no example of its own.
* once the event-time watermark (the largest ``ts`` seen) passes an impression's deadline
  (``ts + window``) the impression is emitted as a negative with weight 1 and origin ``"impression"``.
* **Late labels.** A positive that arrives after its impression already went out as a negative
  is emitted as a positive example from the impression's columns with origin ``"late"``: the
  learner has seen the negative and now sees the correction (a later, opposite-labelled example
  for the same features). Expired impressions are remembered for ``late_retention_s`` for this.

Expiry is decided row by row against the running watermark, so the examples and their order
do not depend on how the stream is cut into batches: the daemon (small batches) and a replay
(large ones) label the same stream identically. Examples come out in stream order; an
expired impression is placed just before the row whose timestamp pushed the watermark past its
deadline.

>>> import pyarrow as pa
>>> lab = Labeler()
>>> ev = pa.table({"seq": [1, 2], "event_id": ["a", "b"], "ts": pa.array([0, 60_000_000], pa.timestamp("us")),
...     "user_id": ["u", "u"], "item_id": ["i", "i"], "event_type": ["impression", "click"],
...     "value": [None, None], "request_id": ["r", "r"], "propensity": [0.5, None], "context": [None, None]})
>>> ex = lab.process(ev)
>>> ex.column("label").to_pylist(), ex.column("origin").to_pylist(), ex.column("seq").to_pylist()
([1.0], ['impression'], [1])
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec.config import LabelsConfig
from rtrec.errors import CorruptDataError, InvalidInputError
from rtrec.events.schema import EVENT_COLUMNS, EVENT_SCHEMA, EVENT_TYPES, EXAMPLE_SCHEMA

__all__ = ["Labeler"]

_SEP = "\x1f"
_TS = EVENT_COLUMNS.index("ts")
_RID = EVENT_COLUMNS.index("request_id")
_STATE_VERSION = 1


class _Imp:
    """A pending (or expired) impression."""

    __slots__ = ("alive", "deadline", "key", "order", "row")

    def __init__(self, row: tuple[Any, ...], key: str, deadline: int, order: int) -> None:
        self.row = row
        self.key = key
        self.deadline = deadline
        self.order = order
        self.alive = True


def _compatible(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


class Labeler:
    """Stateful labeller for a stream of event batches (see the module docstring for the rules)."""

    def __init__(self, cfg: LabelsConfig | None = None, *, late_retention_s: float = 86_400.0) -> None:
        self.cfg = cfg if cfg is not None else LabelsConfig()
        self._window = round(self.cfg.impression_window_s * 1e6)
        self._retention = round(late_retention_s * 1e6)
        pos = np.full(len(EVENT_TYPES), np.nan)
        neg = np.full(len(EVENT_TYPES), np.nan)
        for i, t in enumerate(EVENT_TYPES):
            if t in self.cfg.positive:
                pos[i] = self.cfg.positive[t]
            if t in self.cfg.negative:
                neg[i] = self.cfg.negative[t]
        self._pos_w = pos
        self._neg_w = neg
        self._imp_code = EVENT_TYPES.index("impression")
        self._rating_code = EVENT_TYPES.index("rating")
        self._types = pa.array(EVENT_TYPES, pa.string())
        self._reset()

    def _reset(self) -> None:
        self._pending: dict[str, list[_Imp]] = {}
        self._heap: list[tuple[int, int, _Imp]] = []
        self._n_pending = 0
        self._expired: dict[str, list[_Imp]] = {}
        self._expired_q: deque[_Imp] = deque()
        self._watermark: int | None = None
        self._order = 0

    # -- public API ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Impressions waiting for a label."""
        return self._n_pending

    @property
    def watermark(self) -> float | None:
        """The largest event time seen, in epoch seconds (None before the first event)."""
        return None if self._watermark is None else self._watermark / 1e6

    def process(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        """Label a batch of events (``EVENT_COLUMNS``, in stream order); return ``EXAMPLE_SCHEMA`` rows."""
        t = self._conform(batch)
        n = t.num_rows
        if n == 0:
            return EXAMPLE_SCHEMA.empty_table()
        codes = pc.fill_null(pc.index_in(t.column("event_type"), value_set=self._types), -1).to_numpy()
        codes = np.asarray(codes, dtype=np.int64)
        if (codes < 0).any():
            bad = t.column("event_type")[int(np.flatnonzero(codes < 0)[0])].as_py()
            raise InvalidInputError(f"event_type: unknown value {bad!r} (expected one of {', '.join(EVENT_TYPES)})")
        value = t.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
        pos_w = self._pos_w[codes]
        neg_w = self._neg_w[codes]
        is_rating = codes == self._rating_code
        if is_rating.any():
            good = value >= self.cfg.rating_threshold
            pos_w = np.where(is_rating & good, self.cfg.rating_weight, pos_w)
            neg_w = np.where(is_rating & ~good, self.cfg.rating_weight, neg_w)
        is_pos = ~np.isnan(pos_w)
        is_neg = ~np.isnan(neg_w)
        has_label = is_pos | is_neg
        label = is_pos.astype(np.float32)
        weight = np.where(is_pos, pos_w, neg_w).astype(np.float32)
        ts = np.asarray(t.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
        wm = np.maximum.accumulate(ts)
        if self._watermark is not None:
            wm = np.maximum(wm, self._watermark)
        is_imp = codes == self._imp_code

        if not is_imp.any() and not self._pending and not self._expired:
            # The common path (e.g. ratings only): no impression bookkeeping, fully vectorised.
            self._watermark = int(wm[-1])
            rows = np.flatnonzero(has_label)
            return _attach(t.take(rows), label[rows], weight[rows], "event")

        keys = pc.binary_join_element_wise(t.column("user_id"), t.column("item_id"), _SEP)
        # A key is in play when an impression of it is pending, expired (for late labels) or in
        # this batch. Looked up key by key: a set of every pending key per batch cost O(pending),
        # milliseconds per call once tens of thousands of impressions wait for a label.
        key_list = keys.to_pylist()
        pending, expired = self._pending, self._expired
        batch_imps = {k for k, imp in zip(key_list, is_imp.tolist(), strict=True) if imp}
        in_play = np.fromiter(
            (k in pending or k in expired or k in batch_imps for k in key_list), dtype=bool, count=len(key_list)
        )
        cand_label = has_label & in_play
        fast = np.flatnonzero(has_label & ~cand_label)
        cand = np.flatnonzero(is_imp | cand_label)

        records: list[tuple[Any, ...]] = []
        rec_label: list[float] = []
        rec_weight: list[float] = []
        rec_origin: list[str] = []
        rec_key: list[tuple[int, int, int, int]] = []

        def emit(row: tuple[Any, ...], lab: float, w: float, origin: str, key: tuple[int, int, int, int]) -> None:
            records.append(row)
            rec_label.append(lab)
            rec_weight.append(w)
            rec_origin.append(origin)
            rec_key.append(key)

        def expire_before(limit: int) -> None:
            for imp in self._pop_expired(limit):
                pos = int(np.searchsorted(wm, imp.deadline, side="right"))
                emit(imp.row, 0.0, 1.0, "impression", (pos, 0, imp.deadline, imp.order))

        if len(cand):
            sub = t.take(cand)
            cols = [sub.column(c).to_pylist() for c in EVENT_COLUMNS]
            cols[_TS] = ts[cand].tolist()
            cand_keys = [key_list[r] for r in cand.tolist()]
            for j, r in enumerate(cand.tolist()):
                expire_before(int(wm[r]))
                row = tuple(c[j] for c in cols)
                key = cand_keys[j]
                if is_imp[r]:
                    self._add_pending(row, key)
                    continue
                lab, w = float(label[r]), float(weight[r])
                imp = self._match_pending(key, row[_RID])
                if imp is not None:
                    emit(imp.row, lab, w, "impression", (r, 1, 0, 0))
                    continue
                if lab > 0:
                    late = self._match_expired(key, row[_RID])
                    if late is not None:
                        emit(late.row, lab, w, "late", (r, 1, 0, 0))
                        continue
                emit(row, lab, w, "event", (r, 1, 0, 0))
        expire_before(int(wm[-1]))
        self._watermark = int(wm[-1])
        self._prune_expired()

        parts = [_attach(t.take(fast), label[fast], weight[fast], "event")]
        sort_keys = [np.stack([fast, np.ones_like(fast), np.zeros_like(fast), np.zeros_like(fast)], axis=1)]
        if records:
            parts.append(_records_table(records, rec_label, rec_weight, rec_origin))
            sort_keys.append(np.asarray(rec_key, dtype=np.int64).reshape(-1, 4))
        out = pa.concat_tables(parts)
        k = np.concatenate(sort_keys)
        order = np.lexsort((k[:, 3], k[:, 2], k[:, 1], k[:, 0]))
        return out.take(order)

    def expire(self, now: float | None = None) -> pa.Table:
        """Emit, as negatives, the impressions whose deadline is before ``now`` (epoch seconds).

        ``now`` defaults to the watermark. It does not move the watermark: a positive that
        arrives afterwards for an impression expired here is emitted as ``"late"``.
        """
        if now is None:
            if self._watermark is None:
                return EXAMPLE_SCHEMA.empty_table()
            limit = self._watermark
        else:
            limit = round(float(now) * 1e6)
        return self._negatives(self._pop_expired(limit))

    def drain(self) -> pa.Table:
        """Emit every pending impression as a negative (the end of a replay)."""
        return self._negatives(self._pop_expired(None))

    def state_dict(self) -> dict[str, Any]:
        """Picklable state (plain types) for checkpoints."""
        pending = sorted((imp for imps in self._pending.values() for imp in imps if imp.alive), key=lambda i: i.order)
        return {
            "version": _STATE_VERSION,
            "window_us": self._window,
            "watermark": self._watermark,
            "order": self._order,
            "pending": [[list(i.row), i.key, i.deadline, i.order] for i in pending],
            "expired": [[list(i.row), i.key, i.deadline, i.order] for i in self._expired_q if i.alive],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        try:
            if state.get("version") != _STATE_VERSION:
                raise CorruptDataError(f"labeler state has version {state.get('version')!r}, expected {_STATE_VERSION}")
            self._reset()
            self._watermark = None if state["watermark"] is None else int(state["watermark"])
            for row, key, deadline, order in state["pending"]:
                imp = _Imp(tuple(row), str(key), int(deadline), int(order))
                self._pending.setdefault(imp.key, []).append(imp)
                heapq.heappush(self._heap, (imp.deadline, imp.order, imp))
                self._n_pending += 1
            for row, key, deadline, order in state["expired"]:
                imp = _Imp(tuple(row), str(key), int(deadline), int(order))
                self._expired.setdefault(imp.key, []).append(imp)
                self._expired_q.append(imp)
            self._order = int(state["order"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDataError(f"labeler state is damaged: {exc}") from exc

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _conform(batch: pa.RecordBatch | pa.Table) -> pa.Table:
        t = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        missing = [c for c in EVENT_COLUMNS if c not in t.column_names]
        if missing:
            raise InvalidInputError(f"events batch: {missing[0]}: missing column (expected {', '.join(EVENT_COLUMNS)})")
        t = t.select(list(EVENT_COLUMNS))
        if not t.schema.equals(EVENT_SCHEMA, check_metadata=False):
            ts = t.column("ts")
            if pa.types.is_timestamp(ts.type) and ts.type.tz is not None:
                t = t.set_column(_TS, "ts", ts.cast(pa.timestamp(ts.type.unit)))
            t = pa.Table.from_arrays(
                [t.column(i).cast(f.type) for i, f in enumerate(EVENT_SCHEMA)], schema=EVENT_SCHEMA
            )
        if t.column("ts").null_count:
            raise InvalidInputError("events batch: ts: missing value")
        return t

    def _add_pending(self, row: tuple[Any, ...], key: str) -> None:
        imp = _Imp(row, key, int(row[_TS]) + self._window, self._order)
        self._order += 1
        self._pending.setdefault(key, []).append(imp)
        heapq.heappush(self._heap, (imp.deadline, imp.order, imp))
        self._n_pending += 1

    def _match_pending(self, key: str, request_id: str | None) -> _Imp | None:
        imp = _take_match(self._pending, key, request_id)
        if imp is not None:
            self._n_pending -= 1
        return imp

    def _match_expired(self, key: str, request_id: str | None) -> _Imp | None:
        return _take_match(self._expired, key, request_id)

    def _pop_expired(self, limit: int | None) -> list[_Imp]:
        """Pending impressions with ``deadline < limit`` (all when None), by deadline; remembered as expired."""
        out: list[_Imp] = []
        heap = self._heap
        while heap and (limit is None or heap[0][0] < limit):
            _, _, imp = heapq.heappop(heap)
            if not imp.alive:
                continue
            imps = self._pending[imp.key]
            imps.remove(imp)
            if not imps:
                del self._pending[imp.key]
            self._n_pending -= 1
            out.append(imp)
            self._expired.setdefault(imp.key, []).append(imp)
            self._expired_q.append(imp)
        return out

    def _prune_expired(self) -> None:
        if self._watermark is None:
            return
        horizon = self._watermark - self._retention
        q = self._expired_q
        while q and q[0].deadline < horizon:
            imp = q.popleft()
            if imp.alive:
                imps = self._expired.get(imp.key)
                if imps is not None:
                    imps.remove(imp)
                    if not imps:
                        del self._expired[imp.key]
            imp.alive = False
        # Entries consumed by a late positive stay in the queue as dead ones; drop them from the front too.
        while q and not q[0].alive:
            q.popleft()

    def _negatives(self, imps: list[_Imp]) -> pa.Table:
        if not imps:
            return EXAMPLE_SCHEMA.empty_table()
        return _records_table([i.row for i in imps], [0.0] * len(imps), [1.0] * len(imps), ["impression"] * len(imps))


def _attach(events: pa.Table, label: np.ndarray, weight: np.ndarray, origin: str) -> pa.Table:
    n = events.num_rows
    return pa.Table.from_arrays(
        [
            *events.columns,
            pa.array(np.asarray(label, dtype=np.float32), pa.float32()),
            pa.array(np.asarray(weight, dtype=np.float32), pa.float32()),
            pa.array(np.full(n, origin, dtype=object), pa.string()),
        ],
        schema=EXAMPLE_SCHEMA,
    )


def _records_table(rows: list[tuple[Any, ...]], label: list[float], weight: list[float], origin: list[str]) -> pa.Table:
    cols: list[pa.Array] = []
    for i, f in enumerate(EVENT_SCHEMA):
        values = [r[i] for r in rows]
        if i == _TS:
            cols.append(pa.array(values, pa.int64()).cast(pa.timestamp("us")))
        else:
            cols.append(pa.array(values, f.type))
    cols += [pa.array(label, pa.float32()), pa.array(weight, pa.float32()), pa.array(origin, pa.string())]
    return pa.Table.from_arrays(cols, schema=EXAMPLE_SCHEMA)


def _take_match(store: dict[str, list[_Imp]], key: str, request_id: str | None) -> _Imp | None:
    """Remove and return the newest impression under ``key`` that ``request_id`` can resolve."""
    imps = store.get(key)
    if not imps:
        return None
    for i in range(len(imps) - 1, -1, -1):
        imp = imps[i]
        if _compatible(imp.row[_RID], request_id):
            imp.alive = False
            del imps[i]
            if not imps:
                del store[key]
            return imp
    return None
