"""The items each user touched, as :class:`rtrec._native.ItemSets` (4 bytes per pair, a bound per
user), and the flat form checkpoints hold them in: user keys, set sizes and all members in three
arrays, so a copy under the model lock costs three array copies.

>>> s = load_item_sets(({3: [1, 2], 7: [9]}), max_per_user=0)  # the form of older checkpoints
>>> [a.tolist() for a in s.to_flat()]
[[3, 7], [2, 1], [1, 2, 9]]
>>> load_item_sets(s.to_flat(), max_per_user=1).get(3).tolist()
[2]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rtrec import _native

__all__ = ["add_pairs", "as_dict", "load_item_sets"]


def load_item_sets(state: Any, max_per_user: int) -> _native.ItemSets:
    """Item sets from a checkpoint's form: ``(keys, sizes, members)``, or a list per key (older)."""
    if isinstance(state, dict):
        lists = [list(v) for v in state.values()]
        keys = np.fromiter(state.keys(), np.int64, len(state))
        sizes = np.fromiter(map(len, lists), np.int64, len(lists))
        members = np.asarray([i for v in lists for i in v], np.int64)
    else:
        keys, sizes, members = (np.asarray(a, np.int64) for a in state)
    return _native.ItemSets.from_flat(keys, sizes, members, max_per_user)


def as_dict(sets: _native.ItemSets) -> dict[int, set[int]]:
    """Each user's items as a set (for inspection and tests: a Python set costs ~20x the memory)."""
    keys, sizes, members = sets.to_flat()
    parts = np.split(members, np.cumsum(sizes)[:-1]) if len(keys) else []
    return {int(u): set(p.tolist()) for u, p in zip(keys.tolist(), parts, strict=True)}


def add_pairs(sets: _native.ItemSets, users: np.ndarray, items: np.ndarray) -> None:
    """Add ``(users[k], items[k])`` in order (any integer arrays)."""
    sets.add(np.ascontiguousarray(users, np.int64), np.ascontiguousarray(items, np.int64))
