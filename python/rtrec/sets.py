"""Sets of integers per integer key (the items each user consumed), in the flat form that
checkpoints hold: keys, set sizes and all members in three arrays. Copying them under the model
lock costs three array copies instead of a list per key.

>>> flat = flat_sets({3: {1, 2}, 7: {9}})
>>> [a.tolist() for a in flat]
[[3, 7], [2, 1], [1, 2, 9]]
>>> unflat_sets(flat)
{3: {1, 2}, 7: {9}}
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

__all__ = ["flat_sets", "unflat_sets"]


def flat_sets(sets: dict[int, set[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys, set sizes and the members of every set, in the mapping's order."""
    keys = np.fromiter(sets.keys(), np.int64, len(sets))
    sizes = np.fromiter(map(len, sets.values()), np.int64, len(sets))
    members = np.fromiter(itertools.chain.from_iterable(sets.values()), np.int64, int(sizes.sum()))
    return keys, sizes, members


def unflat_sets(state: Any) -> dict[int, set[int]]:
    if isinstance(state, dict):  # checkpoints before the flat form: a sorted list per key
        return {int(u): set(v) for u, v in state.items()}
    keys, sizes, members = state
    parts = np.split(np.asarray(members), np.cumsum(sizes)[:-1]) if len(keys) else []
    return {int(u): set(p.tolist()) for u, p in zip(keys.tolist(), parts, strict=True)}
