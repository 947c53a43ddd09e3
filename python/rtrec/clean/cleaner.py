"""The cleaner: sets aside rows the learner should not learn from, flags doubtful ones, keeps the reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec.clean.bots import Bots
from rtrec.clean.memory import RecentItems, RecentKeys, Rows, WindowCounter
from rtrec.clean.values import ValueSample
from rtrec.config import EVENT_TYPES, CleanConfig
from rtrec.errors import CorruptDataError
from rtrec.features import Hasher

__all__ = ["ENGAGED_ITEMS", "ENGAGEMENT", "FLAGS", "RULES", "Cleaned", "Cleaner"]

# Rules that set rows aside, in the order they are tried: a row carries the first that applies.
RULES = ("bot", "repeat", "rate_user", "rate_item", "value")
# Rules that flag rows that are still learned.
FLAGS = ("sequence",)
# Events that show interest in an item before buying it.
ENGAGEMENT = ("click", "favorite", "add_to_cart", "rating")
# Engaged items remembered per user, for the sequence rule.
ENGAGED_ITEMS = 32
VERSION = 1

_TYPES = pa.array(EVENT_TYPES, pa.string())
_CODE = {name: k for k, name in enumerate(EVENT_TYPES)}
_NULL_VALUE = np.uint64(0x7FF8_DEAD_BEEF_0001)  # a NaN payload no float64 column produces
_ENGAGEMENT = np.isin(np.arange(len(EVENT_TYPES) + 1), [_CODE[e] for e in ENGAGEMENT])  # index -1: unknown


@dataclass
class Cleaned:
    """One chunk after cleaning."""

    table: pa.Table  # the rows to learn: the input's schema, in stream order
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (seq, reason): set aside, not learned
    flagged: list[tuple[int, str]] = field(default_factory=list)  # (seq, reason): learned, but doubtful
    new_bots: list[str] = field(default_factory=list)  # users judged bots in this chunk


class Cleaner:
    """Cleans chunks of the event log, in sequence order, before the learner sees them.

    Every verdict on a row depends only on the rows before it in the stream, so it is the same
    however the stream is cut into chunks, and it does not change when later rows arrive. The
    rules (each can be switched off in ``[clean]``), in the order they are tried:

    * ``bot``: a user flagged as a bot (see :class:`rtrec.clean.bots.Bots`); every row of the
      user from the one that tipped the verdict on is set aside.
    * ``repeat``: a copy of an earlier row (same user, item, type and value, and for
      impressions the same request) within ``repeat_window_s`` of it. A copy of a copy is one
      too, so a burst of copies is learned once. Other values are corrections (a re-rating)
      and other requests other showings, so neither is a copy.
    * ``rate_user``, ``rate_item``: more than ``user_max_per_min`` (``item_max_per_min``)
      events in 60 s of the user's (item's) event time, counting every event sent, set aside
      or not, but no impressions: a flood stays set aside while it lasts instead of getting
      the limit through each minute, and impressions come in slates of the server's making.
    * ``value``: a value more than ``value_mad_k`` MADs from the median of its type's recent
      kept values (:class:`rtrec.clean.values.ValueSample`), or one that is not finite.

    Flagged (learned, but counted and reported): ``sequence``, a purchase with no earlier
    click, favorite, add_to_cart or rating of that item by that user among their last
    ``ENGAGED_ITEMS`` engaged items. Only once the stream has logged such engagement: in a
    purchases-only log every purchase would be flagged.

    Evidence: the rate and repeat windows count every row as sent; the bot and sequence rules
    count every row but repeats (a client that sends each click twice must not double a click
    rate); value samples hold kept values only.

    Memory per user: 32 bytes for the rate window, 17 for the bot tallies, 264 for the shown
    items (once the stream logs impressions), 136 for the engaged items (once it logs
    engagement), and about 150 for the id (a dict entry and the string): about 600 bytes, and
    up to a quarter more of array headroom (``bench/clean.py`` measured 723 bytes of resident
    memory per user at a million users). Besides: 32 bytes per item with ``item_max_per_min``
    on, 24 bytes per event of the last ``repeat_window_s``, and 8 KiB per event type with values.

    >>> import pyarrow as pa
    >>> from rtrec.config import CleanConfig
    >>> from rtrec.events import EVENT_SCHEMA
    >>> rows = {"seq": [1, 2], "event_id": ["a", "b"], "ts": [0, 500_000], "user_id": ["u", "u"],
    ...         "item_id": ["i", "i"], "event_type": ["click", "click"]}
    >>> t = pa.table({f.name: pa.array(rows.get(f.name, [None, None]), f.type) for f in EVENT_SCHEMA})
    >>> Cleaner(CleanConfig()).clean(t).quarantined
    [(2, 'repeat: same user, item and click within 2 s')]
    """

    def __init__(self, cfg: CleanConfig) -> None:
        self.cfg = cfg
        self._items_hash = Hasher(["item"], bits=32)
        self._requests_hash = Hasher(["request"], bits=32)
        self._ids: dict[str, int] = {}
        self._names: list[str | None] = []  # user index -> id (None: free)
        self._free: list[int] = []
        self._cap = 0
        self._item_ids: dict[str, int] = {}  # only with item_max_per_min on
        self._rate_user = WindowCounter()
        self._rate_item = WindowCounter()
        self._repeats = RecentKeys()
        self._bots = Bots(cfg)
        self._engaged = RecentItems(ENGAGED_ITEMS, timed=False)
        self._logs_engagement = False
        self._values: dict[str, ValueSample] = {}
        self._counts = dict.fromkeys(("events", "bot_users", *RULES, *FLAGS), 0)

    # -- cleaning ----------------------------------------------------------------------------------
    def clean(self, t: pa.Table) -> Cleaned:
        """Split one chunk (the event log's columns, in sequence order) into rows to learn and rows set aside."""
        cfg = self.cfg
        n = t.num_rows
        if not cfg.enabled or n == 0:
            return Cleaned(t)
        users = self._user_indices(t.column("user_id"))
        items = self._items_hash.hash({"item": t.column("item_id")}).indices
        rows = Rows(users, items, _micros(t.column("ts")))
        codes = pc.index_in(t.column("event_type"), value_set=_TYPES)
        types = (pc.fill_null(codes, -1) if codes.null_count else codes).to_numpy().astype(np.int64)
        col = t.column("value")
        has_value = pc.is_valid(col).to_numpy() if col.null_count else np.ones(n, bool)
        values = col.to_numpy()
        impression = types == _CODE["impression"]
        none = np.zeros(n, bool)

        repeat = none
        if cfg.repeat_window_s > 0:
            keys = self._repeat_keys(t, rows, types, values, has_value, impression)
            repeat = self._repeats.repeats(keys, rows.ts, users, round(cfg.repeat_window_s * 1e6))
        bot, newly = self._bots.judge(rows, impression, types == _CODE["click"], ~repeat)
        feedback = ~impression
        in_window = np.zeros(n, np.int64)
        rate_user = none
        if cfg.user_max_per_min > 0:
            pos = rows.by_user[feedback[rows.by_user]]
            in_window[pos] = self._rate_user.count(users[pos], rows.ts[pos])
            rate_user = in_window > cfg.user_max_per_min
        item_window = np.zeros(n, np.int64)
        rate_item = none
        if cfg.item_max_per_min > 0:
            at = np.flatnonzero(feedback)
            ids = self._item_indices(t.column("item_id").take(pa.array(at)))
            pos = np.argsort(ids, kind="stable")
            item_window[at[pos]] = self._rate_item.count(ids[pos], rows.ts[at[pos]])
            rate_item = item_window > cfg.item_max_per_min
        rule = np.zeros(n, np.int8)  # 0: kept, else 1 + index into RULES
        for k, mask in enumerate((bot, repeat, rate_user, rate_item), 1):
            rule[(rule == 0) & mask] = k
        median, mad = self._judge_values(values, has_value, users, types, rule)
        sequence = self._judge_sequences(rows, types, repeat, rule)

        names = t.column("event_type")
        seqs = t.column("seq").to_numpy()
        quarantined: list[tuple[int, str]] = []
        for r in np.flatnonzero(rule).tolist():
            name = RULES[rule[r] - 1]
            if name == "bot":
                why = self._bots.reasons[int(users[r])]
            elif name == "repeat":
                why = f"repeat: same user, item and {names[r].as_py()} within {cfg.repeat_window_s:g} s"
            elif name == "rate_user":
                why = f"rate_user: {in_window[r]} events in 60 s by this user (limit {cfg.user_max_per_min})"
            elif name == "rate_item":
                why = f"rate_item: {item_window[r]} events in 60 s on this item (limit {cfg.item_max_per_min})"
            else:
                why = _value_reason(float(values[r]), names[r].as_py(), median[r], mad[r])
            quarantined.append((int(seqs[r]), why))
            self._counts[name] += 1
        flagged = [(int(seqs[r]), "sequence: purchase without earlier engagement") for r in sequence.tolist()]
        self._counts["sequence"] += len(flagged)
        self._counts["events"] += n
        self._counts["bot_users"] += len(newly)
        kept = t if not quarantined else t.filter(pa.array(rule == 0))
        return Cleaned(kept, quarantined, flagged, [str(self._names[int(u)]) for u in newly])

    def _repeat_keys(
        self,
        t: pa.Table,
        rows: Rows,
        types: np.ndarray,
        values: np.ndarray,
        has_value: np.ndarray,
        impression: np.ndarray,
    ) -> np.ndarray:
        """A 64-bit hash per row of user, item, type, value and (for impressions) request."""
        bits = np.where(has_value, values.view(np.uint64), _NULL_VALUE)
        extra = (types + 1).astype(np.uint64) * np.uint64(0xC2B2_AE3D_27D4_EB4F) ^ bits
        if impression.any():
            req = self._requests_hash.hash({"request": pc.fill_null(t.column("request_id"), "")}).indices
            extra ^= np.where(impression, req + 1, 0).astype(np.uint64)
        h = (extra ^ (extra >> np.uint64(31))) * np.uint64(0x9E37_79B9_7F4A_7C15)
        return (h ^ (h >> np.uint64(29))) ^ rows.pairs.astype(np.uint64) * np.uint64(0xD6E8_FEB8_6659_FD93)

    def _judge_values(
        self, values: np.ndarray, has_value: np.ndarray, users: np.ndarray, types: np.ndarray, rule: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mark value outliers in ``rule``; the median and MAD each judged row was judged by."""
        n = len(users)
        median, mad = np.full(n, np.nan), np.full(n, np.nan)
        cfg = self.cfg
        if cfg.value_min_count == 0:
            return median, mad
        judged = np.flatnonzero(has_value & (rule == 0) & (types >= 0))
        if not len(judged):
            return median, mad
        for code in np.unique(types[judged]).tolist():
            at = judged[types[judged] == code]
            sample = self._values.setdefault(EVENT_TYPES[code], ValueSample())
            out, median[at], mad[at] = sample.judge(
                values[at], users[at], cfg.value_min_count, cfg.value_mad_k, cfg.value_mad_floor
            )
            rule[at[out]] = 1 + RULES.index("value")
        return median, mad

    def _judge_sequences(self, rows: Rows, types: np.ndarray, repeat: np.ndarray, rule: np.ndarray) -> np.ndarray:
        """Rows of kept purchases without earlier engagement (once the stream logs engagement)."""
        engagement = (types >= 0) & _ENGAGEMENT[types]
        query = (types == _CODE["purchase"]) & (rule == 0)
        if not self._logs_engagement:
            first = int(np.argmax(engagement)) if engagement.any() else len(types)
            if first == len(types):
                return np.zeros(0, np.int64)
            self._logs_engagement = True
            self._engaged.reserve(self._cap)
            query &= np.arange(len(types)) > first
        add = engagement & ~repeat
        if not query.any() and not add.any():
            return np.zeros(0, np.int64)
        return np.flatnonzero(query & ~self._engaged.match_then_add(rows, query, add))

    # -- users -------------------------------------------------------------------------------------
    def _user_indices(self, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Dense indices of the chunk's users (new users get one): a dict look-up per distinct user."""
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        enc = pc.dictionary_encode(pc.fill_null(arr, "") if arr.null_count else arr)
        names = enc.dictionary.to_pylist()
        ids = np.fromiter((self._user(name) for name in names), np.int64, len(names))
        self._reserve(len(self._names))
        return ids[enc.indices.to_numpy(zero_copy_only=False)]

    def _user(self, name: str) -> int:
        k = self._ids.get(name)
        if k is None:
            k = self._free.pop() if self._free else len(self._names)
            if k == len(self._names):
                self._names.append(name)
            else:
                self._names[k] = name
            self._ids[name] = k
        return k

    def _item_indices(self, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        enc = pc.dictionary_encode(pc.fill_null(arr, ""))
        ids = np.fromiter(
            (self._item_ids.setdefault(name, len(self._item_ids)) for name in enc.dictionary.to_pylist()), np.int64
        )
        self._rate_item.reserve(len(self._item_ids))
        return ids[enc.indices.to_numpy(zero_copy_only=False)]

    def _reserve(self, n: int) -> None:
        if n <= self._cap:
            return
        self._cap = max(n, self._cap + self._cap // 4, 1024)  # 25% headroom: arrays of ~450 bytes a user
        self._rate_user.reserve(self._cap)
        self._bots.reserve(self._cap)
        if self._logs_engagement:
            self._engaged.reserve(self._cap)

    # -- state -------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Cumulative: events seen, rows set aside per rule, rows flagged per rule, users flagged as bots."""
        return dict(self._counts)

    def forget_user(self, user_id: str) -> None:
        """Drop everything held about one user (their values leave the samples too)."""
        k = self._ids.pop(user_id, None)
        if k is None:
            return
        self._names[k] = None
        self._free.append(k)
        self._rate_user.clear(k)
        self._bots.forget(k)
        if self._logs_engagement:
            self._engaged.clear(k)
        self._repeats.forget(k)
        for sample in self._values.values():
            sample.forget(k, self.cfg.value_min_count, self.cfg.value_mad_floor)

    def state_dict(self) -> dict[str, Any]:
        """Everything the cleaner holds, as plain Python and numpy values (picklable)."""
        n = len(self._names)
        return {
            "version": VERSION,
            "users": list(self._names),
            "free": list(self._free),
            "items": list(self._item_ids),
            "rate_user": self._rate_user.state(n),
            "rate_item": self._rate_item.state(len(self._item_ids)),
            "repeats": self._repeats.state(),
            "bots": self._bots.state(n),
            "logs_engagement": self._logs_engagement,
            "engaged": self._engaged.state(n) if self._logs_engagement else None,
            "values": {name: s.state() for name, s in self._values.items()},
            "counts": dict(self._counts),
        }

    def load_state_dict(self, s: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output, as if the chunks it saw had been cleaned here."""
        if not isinstance(s, dict) or s.get("version") != VERSION:
            got = s.get("version") if isinstance(s, dict) else type(s).__name__
            raise CorruptDataError(f"cleaner state: expected version {VERSION}, got {got!r}")
        self._names = list(s["users"])
        self._ids = {name: k for k, name in enumerate(self._names) if name is not None}
        self._free = [int(k) for k in s["free"]]
        self._item_ids = {name: k for k, name in enumerate(s["items"])}
        self._rate_user = WindowCounter()
        self._rate_user.load(s["rate_user"])
        self._rate_item = WindowCounter()
        self._rate_item.load(s["rate_item"])
        self._repeats = RecentKeys()
        self._repeats.load(s["repeats"])
        self._bots = Bots(self.cfg)
        self._bots.load(s["bots"])
        self._logs_engagement = bool(s["logs_engagement"])
        self._engaged = RecentItems(ENGAGED_ITEMS, timed=False)
        if self._logs_engagement:
            self._engaged.load(s["engaged"])
        self._values = {}
        for name, v in s["values"].items():
            self._values[name] = ValueSample()
            self._values[name].load(v)
        self._counts = {**dict.fromkeys(self._counts, 0), **{k: int(v) for k, v in s["counts"].items()}}
        self._cap = len(self._names)
        self._rate_item.reserve(len(self._item_ids))


def _micros(col: pa.ChunkedArray) -> np.ndarray:
    """Event times as int64 microseconds since the epoch (UTC)."""
    if pa.types.is_timestamp(col.type) and col.type.unit != "us":
        col = pc.cast(col, pa.timestamp("us", col.type.tz))
    micros = col.cast(pa.int64())
    return np.asarray((pc.fill_null(micros, 0) if micros.null_count else micros).to_numpy(), np.int64)


def _value_reason(value: float, event_type: str, median: float, mad: float) -> str:
    if not np.isfinite(value):
        return f"value: {value:g} is not a finite number"
    return f"value: {value:g} is an outlier for {event_type} (median {median:g}, MAD {mad:g})"
