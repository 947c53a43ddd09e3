"""Row-by-row validation of events and items given as JSON objects (HTTP bodies, JSON Lines files).

Each row gets its verdict from its own fields only, never from the other rows of its batch:
types are checked here, in Python, before the rows become Arrow columns (whose inferred
types would otherwise depend on the batch). A valid row comes out normalised, with
``ts`` as integer epoch microseconds and ``context`` as JSON text; an invalid one gets a
reason that names the field.

Limits (``[events]`` in the config, :class:`rtrec.config.EventsConfig`):

* identifiers (``event_id``, ``user_id``, ``item_id``, ``request_id``) have at most
  ``max_id_chars`` characters;
* ``ts`` lies between ``oldest`` and ``max_future_s`` seconds after the receiving clock;
* ``context`` (and an item's ``attrs``) nests at most ``max_depth`` levels and serialises
  to at most ``max_json_chars`` characters;
* no string may hold a lone UTF-16 surrogate (it cannot be stored as UTF-8).

>>> v = Validator()
>>> v.event({"ts": 1_700_000_000, "user_id": "u", "item_id": "i", "event_type": "click"}, now_us=1_800_000_000_000_000)
{'event_id': None, 'ts': 1700000000000000, 'user_id': 'u', 'item_id': 'i', 'event_type': 'click', 'value': None, \
'request_id': None, 'propensity': None, 'context': None}
>>> v.event({"ts": True, "user_id": "u", "item_id": "i", "event_type": "click"})
'ts: malformed value True (expected a timestamp or integer epoch seconds/milliseconds)'
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from rtrec.config import EVENT_TYPES, EventsConfig
from rtrec.events.schema import EVENT_INPUT_COLUMNS, ITEM_COLUMNS

__all__ = ["Unparsed", "Validator", "split_json_array"]

# Integer epochs at or above this magnitude are milliseconds, below it seconds (as in the SQL
# path, rtrec.events._sql): 1e11 seconds is the year 5138, 1e11 milliseconds March 1973.
MS_THRESHOLD = 1e11
_KNOWN = frozenset(EVENT_INPUT_COLUMNS) | {"seq"}
_TYPES = frozenset(EVENT_TYPES)


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class Validator:
    """Checks and normalises event and item rows under one set of :class:`EventsConfig` limits."""

    def __init__(self, cfg: EventsConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else EventsConfig()
        oldest = datetime.fromisoformat(self.cfg.oldest)
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        self.oldest_us = round(oldest.timestamp() * 1e6)

    # -- events ----------------------------------------------------------------------------------
    def event(self, row: Any, now_us: int | None = None) -> dict[str, Any] | str:
        """The normalised event, or the reason it is rejected."""
        if isinstance(row, Unparsed):
            return row.reason
        if not isinstance(row, Mapping):
            return f"row: expected a JSON object, got {type(row).__name__}"
        for key in row:
            if key not in _KNOWN:
                return f"row: unknown field {_show(key)}"
        out: dict[str, Any] = {}
        for name, required in (("event_id", False),):
            got = self._id(row.get(name), name, required)
            if isinstance(got, Err):
                return got.reason
            out[name] = got
        ts = self.ts(row.get("ts"), now_us)
        if isinstance(ts, Err):
            return ts.reason
        out["ts"] = ts
        for name in ("user_id", "item_id", "event_type"):
            got = self._id(row.get(name), name, True)
            if isinstance(got, Err):
                return got.reason
            out[name] = got
        if out["event_type"] not in _TYPES:
            return f"event_type: unknown value {_show(out['event_type'])} (expected one of {', '.join(EVENT_TYPES)})"
        value = self._number(row.get("value"), "value")
        if isinstance(value, Err):
            return value.reason
        if value is None and out["event_type"] == "rating":
            return "value: missing (rating events need the rating as value)"
        out["value"] = value
        rid = self._id(row.get("request_id"), "request_id", False)
        if isinstance(rid, Err):
            return rid.reason
        out["request_id"] = rid
        prop = self._number(row.get("propensity"), "propensity", finite=False)
        if isinstance(prop, Err):
            return prop.reason
        if prop is not None and not 0.0 < prop <= 1.0:  # NaN too
            return f"propensity: {prop} is outside (0, 1]"
        out["propensity"] = prop
        ctx = self.json_object(row.get("context"), "context")
        if isinstance(ctx, Err):
            return ctx.reason
        out["context"] = ctx
        return out

    def ts(self, v: Any, now_us: int | None = None) -> int | Err:
        """Epoch microseconds of a ``ts`` value inside the accepted range."""
        if v is None:
            return Err("ts: missing")
        us: int | None = None
        if isinstance(v, bool):
            us = None
        elif isinstance(v, int | float):
            f = float(v)
            if math.isfinite(f) and abs(f) < 1e14:
                us = round(f * 1e6) if abs(f) < MS_THRESHOLD else round(f * 1e3)
        elif isinstance(v, str):
            us = _parse_time(v)
        elif isinstance(v, datetime):
            us = round((v if v.tzinfo is not None else v.replace(tzinfo=UTC)).timestamp() * 1e6)
        elif isinstance(v, date):
            us = round(datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp() * 1e6)
        if us is None:
            return Err(f"ts: malformed value {_show(v)} (expected a timestamp or integer epoch seconds/milliseconds)")
        return self.check_ts(us, now_us, v)

    def latest_us(self, now_us: int | None = None) -> int:
        """The latest accepted ``ts`` (epoch microseconds): the clock, ``now_us`` or now, plus the skew."""
        now_us = now_us if now_us is not None else round(time.time() * 1e6)
        return now_us + round(self.cfg.max_future_s * 1e6)

    def check_ts(self, us: int, now_us: int | None = None, shown: Any = None) -> int | Err:
        """``us`` if it lies in the accepted time range, else the reason."""
        if us > self.latest_us(now_us):
            return Err(
                f"ts: {_show(shown if shown is not None else us)} is more than {self.cfg.max_future_s:g} s "
                "in the future of the daemon's clock (events.max_future_s)"
            )
        if us < self.oldest_us:
            return Err(f"ts: {_show(shown if shown is not None else us)} is before {self.cfg.oldest} (events.oldest)")
        return us

    # -- items -----------------------------------------------------------------------------------
    def item(self, row: Any) -> dict[str, Any] | str:
        """An item row with its strings and ``attrs`` checked (values otherwise as given), or the reason."""
        if isinstance(row, Unparsed):
            return row.reason
        if not isinstance(row, Mapping):
            return f"row: expected a JSON object, got {type(row).__name__}"
        iid = self._id(row.get("item_id"), "item_id", True)
        if isinstance(iid, Err):
            return iid.reason
        out = dict(row)
        out["item_id"] = iid
        for name in ("title", "description", "category"):
            v = row.get(name)
            if (v is not None and not isinstance(v, str | int | float)) or isinstance(v, bool):
                return f"{name}: expected text, got {_show(v)}"
            if isinstance(v, str) and (bad := self._text(v, name)):
                return bad
        tags = row.get("tags")
        if isinstance(tags, list | tuple):
            for t in tags:
                if not isinstance(t, str):
                    return f"tags: expected a list of strings, got an element {_show(t)}"
                if bad := self._text(t, "tags"):
                    return bad
        elif isinstance(tags, str):
            if bad := self._text(tags, "tags"):
                return bad
        elif tags is not None:
            return f"tags: expected a list or 'a|b' text, got {_show(tags)}"
        attrs = self.json_object(row.get("attrs"), "attrs")
        if isinstance(attrs, Err):
            return attrs.reason
        for key, v in row.items():
            if key in ITEM_COLUMNS:
                continue
            if not isinstance(key, str) or (bad := self._text(key, "field name")):
                return f"row: bad field name {_show(key)}"
            if (bad := self._json_value(v, key)) is not None:
                return bad
        return out

    # -- pieces ----------------------------------------------------------------------------------
    def _text(self, s: str, name: str) -> str | None:
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return f"{name}: holds a lone surrogate (not valid Unicode text)"
        if len(s) > self.cfg.max_json_chars:
            return f"{name}: longer than {self.cfg.max_json_chars} characters (events.max_json_chars)"
        return None

    def _id(self, v: Any, name: str, required: bool) -> str | Err | None:
        if v is None:
            return Err(f"{name}: missing") if required else None
        if isinstance(v, bool) or not isinstance(v, str | int):
            if isinstance(v, float) and v.is_integer() and abs(v) < 9e15:
                v = int(v)
            else:
                return Err(f"{name}: malformed value {_show(v)} (expected a non-empty string)")
        s = v if isinstance(v, str) else str(v)
        if not s.strip():
            return Err(f"{name}: malformed value {_show(v)} (expected a non-empty string)")
        if len(s) > self.cfg.max_id_chars:
            return Err(f"{name}: {len(s)} characters, over the limit of {self.cfg.max_id_chars} (events.max_id_chars)")
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return Err(f"{name}: holds a lone surrogate (not valid Unicode text)")
        return s

    @staticmethod
    def _number(v: Any, name: str, *, finite: bool = True) -> float | Err | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            return Err(f"{name}: malformed value {_show(v)} (expected a number)")
        if isinstance(v, str):
            if not v.strip():
                return None
            try:
                v = float(v)
            except ValueError:
                return Err(f"{name}: malformed value {_show(v)} (expected a number)")
        f = float(v)
        if finite and not math.isfinite(f):
            return Err(f"{name}: non-finite number {f}")
        return f

    def json_object(self, v: Any, name: str) -> str | Err | None:
        """JSON text of an object (given as an object or as JSON text), within the depth and size limits."""
        if v is None:
            return None
        if isinstance(v, str):
            if not v.strip():
                return None
            if len(v) > self.cfg.max_json_chars:
                return Err(f"{name}: longer than {self.cfg.max_json_chars} characters (events.max_json_chars)")
            if bad := self._text(v, name):
                return Err(bad)
            try:
                v = json.loads(v)
            except (ValueError, RecursionError):
                return Err(f"{name}: malformed value {_show(v)} (expected a JSON object)")
        if not isinstance(v, Mapping):
            return Err(f"{name}: malformed value {_show(v)} (expected a JSON object)")
        if (bad := self._json_value(v, name)) is not None:
            return Err(bad)
        text = json.dumps(v, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        if len(text) > self.cfg.max_json_chars:
            return Err(f"{name}: longer than {self.cfg.max_json_chars} characters (events.max_json_chars)")
        return text

    def _json_value(self, v: Any, name: str) -> str | None:
        """Walk a JSON value without recursion: depth, strings, numbers."""
        stack: list[tuple[Any, int]] = [(v, 1)]
        while stack:
            x, depth = stack.pop()
            if isinstance(x, Mapping | list | tuple):
                if depth > self.cfg.max_depth:
                    return f"{name}: nests deeper than {self.cfg.max_depth} levels (events.max_depth)"
                if isinstance(x, Mapping):
                    for k, val in x.items():
                        if not isinstance(k, str):
                            return f"{name}: bad key {_show(k)}"
                        if bad := self._text(k, name):
                            return bad
                        stack.append((val, depth + 1))
                else:
                    stack.extend((val, depth + 1) for val in x)
            elif isinstance(x, str):
                if bad := self._text(x, name):
                    return bad
            elif isinstance(x, float) and not math.isfinite(x):
                return f"{name}: non-finite number {x}"
            elif x is not None and not isinstance(x, bool | int | float):
                return f"{name}: unsupported value {_show(x)}"
        return None


class Unparsed:
    """A row of a request body that could not be decoded on its own, with the reason and its raw text."""

    __slots__ = ("raw", "reason")

    def __init__(self, reason: str, raw: str) -> None:
        self.reason, self.raw = reason, raw

    def __repr__(self) -> str:
        return f"Unparsed({self.reason!r})"


def split_json_array(text: str) -> list[str] | None:
    """The top-level elements of a JSON array, as text, found without recursion (None: not an array).

    For bodies that :func:`json.loads` cannot take whole (an element nested deeper than
    Python's recursion allows): each element is then decoded, or rejected, on its own.
    """
    s = text.strip()
    if not (s.startswith("[") and s.endswith("]")):
        return None
    out: list[str] = []
    depth, start, in_str, esc = 0, 1, False, False
    for k in range(1, len(s) - 1):
        c = s[k]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(s[start:k])
            start = k + 1
    if depth != 0 or in_str:
        return None
    last = s[start:-1]
    if last.strip() or out:
        out.append(last)
    return [e for e in out if e.strip()] if out else []


class Err:
    """A rejection reason (a distinct type, so that a reason is never mistaken for a value)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _parse_time(s: str) -> int | None:
    text = s.strip()
    if not text:
        return None
    try:
        f = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(f) and abs(f) < 1e14:
            return round(f * 1e6) if abs(f) < MS_THRESHOLD else round(f * 1e3)
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith(("Z", "z")) else text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1e6)
