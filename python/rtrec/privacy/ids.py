"""Pseudonymous user ids: a keyed hash replaces the raw id before anything is stored.

HMAC-SHA256 with a secret key, cut to 128 bits: the same raw id always gives the same
pseudonym (so the model learns as before), nobody without the key can compute it from a
guessed id, and it cannot be reversed. The key must stay the same for the life of a home:
another key makes every user a stranger.

>>> p = Pseudonymizer("a secret key of 16+ chars")
>>> p("alice") == p("alice"), p("alice") == p("bob"), len(p("alice"))
(True, False, 34)
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pyarrow as pa

__all__ = ["PREFIX", "Pseudonymizer", "salted_hash"]

PREFIX = "p_"


class Pseudonymizer:
    """Maps raw user ids to pseudonyms (``p_`` and 32 hex digits)."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def __call__(self, user_id: str) -> str:
        digest = hmac.new(self._key, str(user_id).encode(), hashlib.sha256).hexdigest()
        return PREFIX + digest[:32]

    def column(self, ids: pa.Array) -> pa.Array:
        """The pseudonym of each id of a string column (nulls stay null)."""
        return pa.array([None if v is None else self(v) for v in ids.to_pylist()], pa.string())

    def redact_row(self, text: str | None) -> str | None:
        """A stored copy of a rejected row without its raw user id: the JSON object with
        ``user_id`` replaced by its pseudonym, or None when the row is not such an object."""
        if text is None:
            return None
        try:
            row = json.loads(text)
        except ValueError:
            return None
        if not isinstance(row, dict):
            return None
        if "user_id" in row:
            row["user_id"] = self(str(row["user_id"]))
        return json.dumps(row, ensure_ascii=False)


def salted_hash(salt: str, user_id: str) -> str:
    """The audit record of an id: SHA-256 of a per-home salt and the id (never the id itself)."""
    return hashlib.sha256(f"{salt}\x00{user_id}".encode()).hexdigest()
