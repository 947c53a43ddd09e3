"""The cleaning rules written plainly, one row at a time, to check the vectorised cleaner against."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import pyarrow as pa

from rtrec.clean.bots import SHOWN_ITEMS
from rtrec.clean.cleaner import ENGAGED_ITEMS, ENGAGEMENT
from rtrec.clean.values import ValueSample
from rtrec.config import EVENT_TYPES, CleanConfig
from rtrec.events import EVENT_SCHEMA

T0 = 1_700_000_000  # epoch seconds of a stream's second 0
STEP_US = 10_000_000  # the rate window's step


def stream(rows: list[tuple[Any, ...]], start_seq: int = 1) -> pa.Table:
    """Events (seconds after T0, user, item, type[, value[, request]]) in the log's schema."""
    n = len(rows)
    return pa.Table.from_pydict(
        {
            "seq": list(range(start_seq, start_seq + n)),
            "event_id": [f"e{start_seq + k}" for k in range(n)],
            "ts": [round((T0 + r[0]) * 1_000_000) for r in rows],
            "user_id": [r[1] for r in rows],
            "item_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "value": [r[4] if len(r) > 4 else None for r in rows],
            "request_id": [r[5] if len(r) > 5 else None for r in rows],
            "propensity": [None] * n,
            "context": [None] * n,
        },
        schema=EVENT_SCHEMA,
    )


class Reference:
    """The same verdicts as :class:`rtrec.clean.Cleaner`, from plain per-row bookkeeping."""

    def __init__(self, cfg: CleanConfig) -> None:
        self.cfg = cfg
        self.clock = -math.inf
        self.last: dict[tuple[Any, ...], int] = {}
        self.tally: dict[str, list[int]] = {}
        self.bots: dict[str, str] = {}
        self.shown: dict[str, deque[tuple[str, int]]] = {}
        self.engaged: dict[str, deque[str]] = {}
        self.logs_impressions = False
        self.logs_engagement = False
        self.user_steps: dict[str, list[int]] = {}
        self.item_steps: dict[str, list[int]] = {}
        self.samples: dict[str, list[float]] = {}
        self.seen: dict[str, int] = {}
        self.ref: dict[str, tuple[int, float, float]] = {}

    def clean(self, t: pa.Table) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        quarantined, flagged = [], []
        for r in t.to_pylist():
            ts = int(np.datetime64(r["ts"], "us").astype(np.int64))
            why, flag = self.row(ts, r["user_id"], r["item_id"], r["event_type"], r["value"], r["request_id"])
            if why:
                quarantined.append((r["seq"], why))
            if flag:
                flagged.append((r["seq"], flag))
        return quarantined, flagged

    def row(self, ts: int, user: str, item: str, typ: str, value: float | None, request: str | None) -> tuple[Any, Any]:
        cfg = self.cfg
        # repeat
        self.clock = max(self.clock, ts)
        key = (user, item, typ, value, request if typ == "impression" else None)
        w = round(cfg.repeat_window_s * 1e6)
        prev = self.last.get(key)
        repeat = cfg.repeat_window_s > 0 and prev is not None and abs(ts - prev) <= w and prev >= self.clock - w
        self.last[key] = ts
        # bot
        tally = self.tally.setdefault(user, [0, 0, 0, 0])
        judged = typ == "click" and not repeat and self.logs_impressions and cfg.bot_min_clicks > 0
        if judged:
            hits = [s for i, s in self.shown.get(user, ()) if i == item]
            tally[2] += 1
            tally[3] += not (hits and abs(ts // 1_000_000 - hits[-1]) <= cfg.bot_shown_window_s)
        if typ == "impression" and not repeat:
            tally[0] += 1
            self.shown.setdefault(user, deque(maxlen=SHOWN_ITEMS)).append((item, ts // 1_000_000))
        if typ == "click" and not repeat:
            tally[1] += 1
        self.logs_impressions |= typ == "impression"
        imps, clicks, n, unshown = tally
        if user not in self.bots:
            if cfg.bot_min_impressions and imps >= cfg.bot_min_impressions and clicks >= cfg.bot_click_rate * imps:
                self.bots[user] = f"bot: click rate {clicks / imps:.2f} over {imps} impressions"
            elif cfg.bot_min_clicks and n >= cfg.bot_min_clicks and unshown >= cfg.bot_unshown_share * n:
                self.bots[user] = f"bot: {unshown / n:.0%} of {n} clicks on items not shown to this user"
        # rates
        per_user = per_item = 0
        if typ != "impression":
            per_user = self._window(self.user_steps.setdefault(user, []), ts)
            per_item = self._window(self.item_steps.setdefault(item, []), ts)
        why = None
        if user in self.bots:
            why = self.bots[user]
        elif repeat:
            why = f"repeat: same user, item and {typ} within {cfg.repeat_window_s:g} s"
        elif cfg.user_max_per_min and per_user > cfg.user_max_per_min:
            why = f"rate_user: {per_user} events in 60 s by this user (limit {cfg.user_max_per_min})"
        elif cfg.item_max_per_min and per_item > cfg.item_max_per_min:
            why = f"rate_item: {per_item} events in 60 s on this item (limit {cfg.item_max_per_min})"
        elif value is not None and cfg.value_min_count and typ in EVENT_TYPES:
            why = self._value(typ, value)
        # sequence
        flag = None
        if typ == "purchase" and why is None and self.logs_engagement and item not in self.engaged.get(user, ()):
            flag = "sequence: purchase without earlier engagement"
        if typ in ENGAGEMENT and not repeat:
            self.engaged.setdefault(user, deque(maxlen=ENGAGED_ITEMS)).append(item)
        self.logs_engagement |= typ in ENGAGEMENT
        return why, flag

    @staticmethod
    def _window(steps: list[int], ts: int) -> int:
        clock = max([ts // STEP_US, *steps[-1:]])
        steps.append(clock)
        return sum(s >= clock - 5 for s in steps)

    def _value(self, typ: str, v: float) -> str | None:
        cfg = self.cfg
        sample = self.samples.setdefault(typ, [])
        block = self.seen.get(typ, 0) // ValueSample.REFRESH
        self.seen[typ] = self.seen.get(typ, 0) + 1
        if self.ref.get(typ, (-1,))[0] != block:
            med = mad = math.nan
            if len(sample) >= cfg.value_min_count:
                m = float(np.median(sample))
                d = max(
                    float(np.median(np.abs(np.subtract(sample, m)))),
                    cfg.value_mad_floor * float(np.median(np.abs(sample))),
                )
                if d > 0:
                    med, mad = m, d
            self.ref[typ] = (block, med, mad)
        _, med, mad = self.ref[typ]
        if not math.isfinite(v):
            return f"value: {v:g} is not a finite number"
        if not math.isnan(med) and abs(v - med) > cfg.value_mad_k * mad:
            return f"value: {v:g} is an outlier for {typ} (median {med:g}, MAD {mad:g})"
        sample.append(v)
        del sample[: -ValueSample.SAMPLE]
        return None
