"""The label policy: which events are examples, and how impressions wait for their label.

Rules (driven by :class:`rtrec.config.LabelsConfig`):

* event types in ``positive`` / ``negative`` are labelled 1 / 0 with their configured weight;
  a ``rating`` is positive when ``value >= rating_threshold`` and negative below it, with
  ``rating_weight``; other event types make no example.
* an ``impression`` is an example whose features are taken **when it is shown** (its
  *read*) and whose label comes later. It waits ``impression_window_s`` of event time for a
  labelled event on the same user and item (and the same ``request_id`` when both carry
  one). Such an event resolves it: one example with the impression's features and the
  resolving event's label and weight (origin ``impression``); the resolving event makes no
  example of its own.
* once the event-time watermark (the largest ``ts`` seen) passes an impression's deadline
  (``ts + window``) it becomes a negative with weight 1 (origin ``impression``).
* **Late labels.** After its window (or after its label) an impression's snapshot is kept
  until ``late_window_s`` past its deadline. A positive that arrives for an impression that
  went out as a negative is learned as a positive from the impression's features (origin
  ``late``): the model has seen the negative and now sees the correction. Further feedback
  on an impression that already has its label (an add-to-cart after the click, a purchase
  after that) is learned from the impression's features too, with its own label and
  weight (origin ``followup``): it is the outcome of the same showing.
* any other labelled event (a rating, a click with no impression logged) is read and
  resolved at once: its features are taken as it arrives, before its label is learned
  (origin ``event``).

The labeller does not compute features. :meth:`Labeler.plan` turns a chunk of events into a
:class:`Plan`: which rows are *read* (featurized now), which store slot keeps each new
impression's snapshot, and the examples that resolve in this chunk, in stream order. Each
example has an *order key* that places it among the reads: ``2 * row`` for impressions
whose window ends just before ``row`` (the first row whose time passes their deadline),
``2 * row + 1`` for the read of ``row`` and ``2 * row + 2`` for labels that resolve at
``row``. A feature of a read may count an example only when the example's key is smaller,
so nothing a row reads depends on labels that resolve after it, and the features do not
depend on how the stream is cut into chunks.

>>> import pyarrow as pa
>>> lab = Labeler()
>>> ev = pa.table({"seq": [1, 2], "event_id": ["a", "b"], "ts": pa.array([0, 60_000_000], pa.timestamp("us")),
...     "user_id": ["u", "u"], "item_id": ["i", "i"], "event_type": ["impression", "click"],
...     "value": [None, None], "request_id": ["r", "r"], "propensity": [0.5, None], "context": [None, None]})
>>> p = lab.plan(ev, np.array([0, 0]), np.array([0, 0]))
>>> p.reads.tolist(), p.ex_slot.tolist(), p.ex_label.tolist(), p.ex_order.tolist()
([0], [0], [1.0], [4])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec import _native
from rtrec.config import LabelsConfig
from rtrec.errors import CorruptDataError, InvalidInputError
from rtrec.events.schema import EVENT_TYPES
from rtrec.labels.plan import Plan, PlanBuilder, conform, keys_of, request_hashes
from rtrec.labels.store import ANSWERED, EXPIRED, PENDING, SnapshotStore

__all__ = [
    "EVENT",
    "FOLLOWUP",
    "IMPRESSION",
    "LATE",
    "ORIGINS",
    "Labeler",
    "Plan",
    "conform",
    "keys_of",
    "request_hashes",
]

EVENT, IMPRESSION, LATE, FOLLOWUP = 0, 1, 2, 3
ORIGINS = ("event", "impression", "late", "followup")
_STATE_VERSION = 2


class Labeler:
    """Label rules plus the pending impressions and their snapshots (:class:`SnapshotStore`)."""

    def __init__(self, cfg: LabelsConfig | None = None, *, dense_dim: int = 0, n_preds: int = 1) -> None:
        self.cfg = cfg if cfg is not None else LabelsConfig()
        self._window = round(self.cfg.impression_window_s * 1e6)
        self._retention = round(self.cfg.late_window_s * 1e6)
        self._cap = self.cfg.max_snapshots
        self._lead = round(self.cfg.watermark_lead_s * 1e6)
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
        self.store = SnapshotStore(dense_dim, n_preds)
        self._reset()

    def _reset(self) -> None:
        # The key indexes (newest slot per user-item key; older ones chain through store.next)
        # and the deadline queues of pending and kept impressions, in native code: a few dozen
        # bytes per impression, and the per-row loop of a chunk runs without the GIL.
        self._waiting = _native.PendingImpressions(self._retention, self._cap)
        self._watermark: int | None = None

    # -- public API ----------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Impressions waiting for a label."""
        return int(self._waiting.n_pending)

    @property
    def retained(self) -> int:
        """Impressions already labelled, kept for a late positive or a follow-up."""
        return int(self._waiting.n_retained)

    @property
    def expired_early(self) -> int:
        """Pending impressions learned as negatives before their window, at ``max_snapshots``."""
        return int(self._waiting.expired_early)

    @property
    def dropped(self) -> int:
        """Kept snapshots dropped before their late window ended, at ``max_snapshots``."""
        return int(self._waiting.dropped)

    @property
    def index_bytes(self) -> int:
        """Bytes held by the key indexes and deadline queues (the store's arrays not counted)."""
        return int(self._waiting.memory_bytes)

    @property
    def watermark(self) -> float | None:
        """The largest event time seen, in epoch seconds (None before the first event)."""
        return None if self._watermark is None else self._watermark / 1e6

    def labels(self, t: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row: is it an impression, has it a label, the label and the weight."""
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
        has_label = is_pos | ~np.isnan(neg_w)
        label = is_pos.astype(np.float32)
        weight = np.where(is_pos, pos_w, neg_w).astype(np.float32)
        return codes == self._imp_code, has_label, label, weight

    def plan(
        self,
        batch: pa.RecordBatch | pa.Table,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        *,
        clock_us: int | None = None,
    ) -> Plan:
        """Label a chunk of events (``EVENT_COLUMNS``, in stream order) whose user and item indices are given.

        With ``clock_us`` (the learner's clock, epoch microseconds) the watermark never runs more
        than ``watermark_lead_s`` ahead of it: one event stamped far in the future cannot expire
        every pending impression at once.
        """
        t = conform(batch)
        n = t.num_rows
        if n == 0:
            return Plan.empty()
        is_imp, has_label, label, weight = self.labels(t)
        ts = np.asarray(t.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
        wm = np.maximum.accumulate(ts)
        if clock_us is not None:
            wm = np.minimum(wm, clock_us + self._lead)
        if self._watermark is not None:
            wm = np.maximum(wm, self._watermark)
        out = PlanBuilder()

        if not is_imp.any() and self._waiting.is_empty:
            # The common path (e.g. ratings only): every labelled row is read and resolved at once.
            self._watermark = int(wm[-1])
            rows = np.flatnonzero(has_label)
            return out.events_only(rows, label[rows], weight[rows])

        keys = keys_of(user_idx, item_idx)
        rids = request_hashes(t.column("request_id"))
        seqs = t.column("seq").to_numpy().astype(np.int64)
        in_play = self._waiting.in_play(keys, is_imp)
        cand = np.flatnonzero(is_imp | (has_label & in_play))
        fast = np.flatnonzero(has_label & ~in_play)
        out.add_events(fast, label[fast], weight[fast])

        imp_rows = cand[is_imp[cand]]
        slots = self.store.alloc(len(imp_rows))
        st = self.store
        st.key[slots], st.rid[slots], st.ts[slots], st.seq[slots] = (
            keys[imp_rows],
            rids[imp_rows],
            ts[imp_rows],
            seqs[imp_rows],
        )
        st.deadline[slots] = ts[imp_rows] + self._window
        out.add_reads(imp_rows, slots)
        slot_of_row = np.full(n, -1, np.int64)
        slot_of_row[imp_rows] = slots
        # Row by row: expire what the row's watermark passed, then file the impression or
        # resolve the label; finally expire what the chunk's last watermark passed.
        got = self._waiting.plan(
            st.columns(), cand.astype(np.int64), slot_of_row, keys, rids,
            label.astype(np.float32), weight.astype(np.float32), wm.astype(np.int64),
        )  # fmt: skip
        self._watermark = int(wm[-1])
        return self._built(out, got, label, weight)

    @staticmethod
    def _built(out: PlanBuilder, got: tuple[np.ndarray, ...], label: Any = None, weight: Any = None) -> Plan:
        ex_slot, ex_label, ex_weight, ex_origin, ex_order, event_rows, freed = got
        if len(event_rows):
            out.add_events(event_rows, label[event_rows], weight[event_rows])
        out.examples(ex_slot, ex_label, ex_weight, ex_origin, ex_order)
        out.free(freed)
        return out.build()

    def expire(self, now: float | None = None) -> Plan:
        """Impressions whose deadline is before ``now`` (epoch seconds; default the watermark), as negatives.

        It does not move the watermark: a positive that arrives afterwards for an impression
        expired here is learned as ``late``.
        """
        if now is None:
            if self._watermark is None:
                return Plan.empty()
            limit = self._watermark
        else:
            limit = round(float(now) * 1e6)
        horizon = max(limit, self._watermark if self._watermark is not None else limit)
        return self._built(PlanBuilder(), self._waiting.expire(self.store.columns(), limit, horizon))

    def drain(self) -> Plan:
        """Every pending impression as a negative (the end of a replay)."""
        return self._built(PlanBuilder(), self._waiting.expire(self.store.columns(), None, None))

    def release(self, plan: Plan) -> None:
        """Free the slots a plan is done with (call after its examples were learned)."""
        if len(plan.release):
            self.store.release(plan.release)

    def forget_user(self, user: int) -> int:
        """Drop every pending and retained impression of one user (index), unlearned; how many."""
        st = self.store
        live = np.flatnonzero(st.state[: st.high] != 0)
        mine = live[(st.key[live] >> 32) == user]
        if not len(mine):
            return 0
        st.release(mine)
        self.load_state_dict(self.state_dict())  # rebuilds the indexes and queues
        return len(mine)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Picklable state for checkpoints: numpy arrays and plain numbers only, the store
        compacted (live slots only, no garbage). The key indexes and deadline queues are
        rebuilt from the store's slots on load."""
        out = self.snapshot(copy=False)
        out["store"] = SnapshotStore.compact(out.pop("store_raw"))
        return out

    def snapshot(self, *, copy: bool = True) -> dict[str, Any]:
        """The state with the store's arrays as they are (:meth:`SnapshotStore.raw`). With
        ``copy``, taken under the learner's lock, later learning cannot change it (and while it
        lives the store hands out no slot it holds); :meth:`finish` makes it writable."""
        return {
            "version": _STATE_VERSION,
            "window_us": self._window,
            "watermark": self._watermark,
            "expired_early": self.expired_early,
            "dropped": self.dropped,
            "store_raw": self.store.raw(copy=copy),
        }

    @staticmethod
    def finish(snapshot: dict[str, Any]) -> dict[str, Any]:
        """:meth:`state_dict`'s form of a :meth:`snapshot`: the store's arrays as they are (a
        checkpoint writes them without a copy; they are compacted when read). The snapshot
        itself keeps its hold: drop it once written."""
        if "store_raw" not in snapshot:
            return snapshot
        raw = {k: v for k, v in snapshot["store_raw"].items() if k != "hold"}
        return {**{k: v for k, v in snapshot.items() if k != "store_raw"}, "store_raw": raw}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            if state.get("version") != _STATE_VERSION:
                raise CorruptDataError(f"labeler state has version {state.get('version')!r}, expected {_STATE_VERSION}")
            self._reset()
            # "store": compacted (state_dict); "store_raw": as a snapshot shared it (finish).
            stored = state["store"] if "store" in state else SnapshotStore.compact(dict(state["store_raw"]))
            self.store = SnapshotStore.from_state(stored)
            self._watermark = None if state["watermark"] is None else int(state["watermark"])
            self._waiting.expired_early = int(state["expired_early"])
            self._waiting.dropped = int(state["dropped"])
            st = self.store
            live = np.flatnonzero(st.state[: st.high] != 0)
            pend = live[st.state[live] == PENDING].astype(np.int64)
            kept = live[np.isin(st.state[live], (EXPIRED, ANSWERED))].astype(np.int64)
            self._waiting.rebuild(st.columns(), pend, kept)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDataError(f"labeler state is damaged: {exc}") from exc
