"""Users with events committed but not yet learned, and what they consumed meanwhile.

The learner's own record catches up within its next step; this covers the moment in between,
so that a user's first recommend right after their first events is not a stranger's, and an
item they just bought is not recommended back to them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from rtrec.learn.online import CONSUMED_TYPES

__all__ = ["FreshUsers"]

# Users remembered between a commit and the learner's step (the learner keeps the rest).
FRESH_USERS = 100_000


class FreshUsers:
    """What was committed per user since the learner's step (newest users last, bounded)."""

    def __init__(self, learned: Callable[[str], tuple[bool, set[str]]]) -> None:
        self._learned = learned
        self._fresh: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def note(self, rows: Iterable[Any], stored_id: Callable[[str], str]) -> None:
        """Committed rows (JSON objects): who is known now, and what they consumed."""
        with self._lock:
            for r in rows:
                user = r.get("user_id")
                if user is None:
                    continue
                key = stored_id(str(user))
                seen = self._fresh.pop(key, None) or set()
                if r.get("event_type") in CONSUMED_TYPES and r.get("item_id") is not None:
                    seen.add(str(r["item_id"]))
                self._fresh[key] = seen  # newest last
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
