"""Small array helpers of the candidate sources: top-k, first-seen unique, unit vectors."""

from __future__ import annotations

import numpy as np

__all__ = ["SMALL", "top_k", "unique", "unit_or_none"]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest finite scores, best first."""
    finite = np.isfinite(scores)
    m = int(finite.sum())
    if m == 0:
        return np.zeros(0, np.int64)
    k = min(k, m)
    part = np.argpartition(-scores, k - 1)[:k]
    part = part[np.isfinite(scores[part])]
    return part[np.argsort(-scores[part], kind="stable")].astype(np.int64)


SMALL = 4096  # below this many items, set operations run in Python: numpy's sorts let the interpreter go


def unique(a: np.ndarray) -> np.ndarray:
    """``a`` without repeats, in first-seen order."""
    if len(a) <= SMALL:
        return np.fromiter(dict.fromkeys(a.tolist()), a.dtype, count=-1)
    _, first = np.unique(a, return_index=True)
    return a[np.sort(first)]


def unit_or_none(v: np.ndarray) -> np.ndarray | None:
    """``v`` scaled to unit length, or None when it is (nearly) zero."""
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-6 else None
