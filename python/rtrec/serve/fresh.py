"""Users with events committed but not yet learned, and what they consumed meanwhile.

The learner's own record catches up within its next step; this covers the moment in between,
so that a user's first recommend right after their first events is not a stranger's, and an
item they just bought is not recommended back to them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from rtrec.learn.online import CONSUMED_TYPES

__all__ = ["FreshUsers", "committed"]

# Users remembered between a commit and the learner's step (the learner keeps the rest).
FRESH_USERS = 100_000
# What a user who consumed nothing since the learner's step has: one shared empty set, rather
# than a new set per row of every batch.
NOTHING: frozenset[str] = frozenset()


class FreshUsers:
    """What was committed per user since the learner's step (newest users last, bounded)."""

    def __init__(self, learned: Callable[[str], tuple[bool, set[str]]]) -> None:
        self._learned = learned
        self._fresh: dict[str, set[str] | frozenset[str]] = {}
        self._lock = threading.Lock()

    def note(self, rows: Iterable[tuple[Any, Any, Any]], stored_id: Callable[[str], str]) -> None:
        """Committed rows as (user_id, event_type, item_id): who is known now, and what they consumed."""
        with self._lock:
            fresh = self._fresh
            for user, event_type, item in rows:
                if user is None:
                    continue
                key = stored_id(str(user))
                seen = fresh.pop(key, NOTHING)
                if event_type in CONSUMED_TYPES and item is not None:
                    seen = {*seen, str(item)}
                fresh[key] = seen  # newest last
            while len(self._fresh) > FRESH_USERS:
                self._fresh.pop(next(iter(self._fresh)))

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._fresh.pop(user_id, None)

    def user_state(self, user_id: str) -> tuple[bool, set[str]]:
        """Whether the user has history, and the items not to recommend to them again: from the
        learner's record (no query of the log), plus what was committed since its last step."""
        known, consumed = self._learned(user_id)
        with self._lock:
            fresh = self._fresh.get(user_id)
        return (True, consumed | fresh) if fresh is not None else (known, consumed)


def committed(rows: Sequence[Any] | pa.Table, rejected: set[int]) -> Iterator[tuple[Any, Any, Any]]:
    """(user_id, event_type, item_id) of each row not in ``rejected``; rows as JSON objects or a table."""
    if isinstance(rows, pa.Table):
        cols = [rows.column(c).to_pylist() for c in ("user_id", "event_type", "item_id")]
        got: Iterable[Any] = zip(*cols, strict=True)
    else:
        got = ((r.get("user_id"), r.get("event_type"), r.get("item_id")) if isinstance(r, dict) else None for r in rows)
    return (t for j, t in enumerate(got) if t is not None and j not in rejected)
