"""Progressive-validation metrics: AUC, log loss, calibration, ranking quality."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from rtrec.contracts import MinuteQuality, Progressive

EPS = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None when only one class is present.

    Counted, for each positive, as the negatives scored below it plus half those scored the
    same: two sorts and a binary search, a third of the cost of ranking every score.
    """
    y = np.asarray(labels) >= 0.5
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    s = np.asarray(scores)
    if s.dtype != np.float32:  # float32 sorts faster, and compares as its exact float64 values would
        s = s.astype(np.float64)
    neg, pos = np.sort(s[~y]), np.sort(s[y])
    below = int(np.searchsorted(neg, pos, "left").sum())
    up_to = int(np.searchsorted(neg, pos, "right").sum())
    return float((below + up_to) / 2.0 / (n_pos * n_neg))


def group_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float | None:
    """Mean AUC over the groups (requests) that hold both a positive and a negative.

    The standard metric for impression logs (as in the MIND benchmark): it asks whether the
    model ranks the clicked items of a slate above the others shown with them, which no
    user- or request-level signal can answer. Each group counts once; None without any
    such group.

    >>> group_auc(np.array([1, 0, 0, 1, 1]), np.array([0.9, 0.1, 0.5, 0.2, 0.3]), np.array([1, 1, 2, 2, 3]))
    0.5
    """
    y = np.asarray(labels) >= 0.5
    g = np.asarray(groups)
    if len(g) == 0:
        return None
    order = np.argsort(g, kind="stable")
    gs = g[order]
    starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
    ends = np.r_[starts[1:], len(gs)]
    pos = np.add.reduceat(y[order].astype(np.int64), starts)
    mixed = (pos > 0) & (pos < ends - starts)
    if not mixed.any():
        return None
    s = np.asarray(scores, np.float64)[order]
    yo = y[order]
    vals = [auc(yo[a:b], s[a:b]) for a, b in zip(starts[mixed].tolist(), ends[mixed].tolist(), strict=True)]
    return float(np.mean([v for v in vals if v is not None]))


def logloss(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray | None = None) -> float | None:
    if len(labels) == 0:
        return None
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(labels, dtype=np.float64)
    ll = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.average(ll, weights=weights))


def calibration(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Mean prediction over the observed positive rate (1.0 is perfectly calibrated on average)."""
    rate = float(np.mean(labels)) if len(labels) else 0.0
    if rate == 0.0:
        return None
    return float(np.mean(probs)) / rate


MISSED = 1 << 30  # the rank of an item a list does not hold: a miss at every cut-off


def rank_of(order: np.ndarray, item: int) -> int:
    """0-based position of ``item`` in ``order`` (a ranked list), or :data:`MISSED`.

    >>> rank_of(np.array([7, 3, 5]), 5), rank_of(np.array([7, 3, 5]), 4) == MISSED
    (2, True)
    """
    found = np.flatnonzero(order == item)
    return int(found[0]) if len(found) else MISSED


def rank_metrics(ranks: list[int], k: int = 10) -> tuple[float | None, float | None]:
    """HR@k and NDCG@k from 0-based ranks of the held-out positive item."""
    if not ranks:
        return None, None
    r = np.asarray(ranks)
    hits = r < k
    ndcg = np.where(hits, 1.0 / np.log2(r + 2.0), 0.0)
    return float(hits.mean()), float(ndcg.mean())


def summarise(
    labels: np.ndarray, probs: np.ndarray | None, scores: np.ndarray | None = None
) -> dict[str, float | None]:
    """AUC from ``scores`` (or ``probs``), log loss and calibration from ``probs`` when given."""
    s = scores if scores is not None else probs
    out: dict[str, float | None] = {"n": float(len(labels)), "auc": auc(labels, s) if s is not None else None}
    out["logloss"] = logloss(labels, probs) if probs is not None else None
    out["calibration"] = calibration(labels, probs) if probs is not None else None
    return out


class PageHinkley:
    """Page-Hinkley test for an increase in the mean of a stream (here: normalised entropy).

    Raises an alarm when the cumulative deviation above the mean, less ``delta`` per step,
    exceeds ``threshold`` above its minimum. The mean is a running mean that turns into an
    exponential moving average with weight ``1 - alpha`` once it has seen ``1 / (1 - alpha)``
    values, so a long warm-up does not mask a later change. The first ``min_samples`` values
    only set the mean (a cold model's first observations are not judged). Resets after an alarm.
    """

    def __init__(
        self, delta: float = 0.005, threshold: float = 50.0, min_samples: int = 30, alpha: float = 1.0
    ) -> None:
        self.delta, self.threshold, self.min_samples, self.alpha = delta, threshold, min_samples, alpha
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.cum = 0.0
        self.min_cum = 0.0

    last_alarm_stat: float = math.nan  # the statistic when the last alarm was raised (it resets after)

    def update(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        self.n += 1
        self.mean += (x - self.mean) * max(1.0 / self.n, 1.0 - self.alpha)
        if self.n <= self.min_samples:
            return False  # warm-up: learn the mean only, so the first eligible value is not judged on it
        self.cum += x - self.mean - self.delta
        self.min_cum = min(self.min_cum, self.cum)
        if self.cum - self.min_cum > self.threshold:
            self.last_alarm_stat = self.cum - self.min_cum
            self.reset()
            return True
        return False

    def update_many(self, xs: np.ndarray) -> list[int]:
        """Feed observations in order; return the positions (in ``xs``) that raised an alarm.

        Non-finite observations are skipped, as :meth:`update` skips them.
        """
        return [i for i, x in enumerate(np.asarray(xs, dtype=np.float64).tolist()) if self.update(x)]

    @property
    def stat(self) -> float:
        return self.cum - self.min_cum

    def state_dict(self) -> dict[str, float]:
        return {"n": self.n, "mean": self.mean, "cum": self.cum, "min_cum": self.min_cum}

    def load_state_dict(self, s: dict[str, float]) -> None:
        self.n, self.mean, self.cum, self.min_cum = int(s["n"]), s["mean"], s["cum"], s["min_cum"]


def progressive(
    history: list[dict[str, Any]], now: float, window_s: float, minutes: dict[int, Any] | None = None
) -> Progressive:
    """Progressive quality of the learned batches in ``history`` (``wall``, ``labels``, ``probs``):
    overall and per minute over the last ``window_s`` seconds (the last 50 batches when none).
    ``minutes`` keeps each minute's figures between calls, recomputed only when that minute's
    batches change (a closed minute changes only when the history drops its oldest batches)."""
    recent = [h for h in history if now - h["wall"] <= window_s] or history[-50:]
    labels = np.concatenate([h["labels"] for h in recent]) if recent else np.zeros(0)
    probs = np.concatenate([h["probs"] for h in recent]) if recent else np.zeros(0)
    series: dict[int, list[dict[str, Any]]] = {}
    for h in recent:
        series.setdefault(int(h["wall"] // 60), []).append(h)
    kept = {} if minutes is None else minutes
    for minute in [m for m in kept if m not in series]:
        del kept[minute]
    out: list[MinuteQuality] = []
    for minute, hs in sorted(series.items()):
        key = (len(hs), hs[0]["wall"], hs[-1]["wall"])
        if minute not in kept or kept[minute][0] != key:
            y = np.concatenate([h["labels"] for h in hs])
            p = np.concatenate([h["probs"] for h in hs])
            q: MinuteQuality = {
                "minute": minute * 60, "n": len(y), "auc": auc(y, p), "logloss": logloss(y, p), "ctr": float(y.mean())
            }  # fmt: skip
            kept[minute] = (key, q)
        out.append(kept[minute][1])
    return {
        "n": len(labels),
        "auc": auc(labels, probs),
        "logloss": logloss(labels, probs),
        "ctr": float(labels.mean()) if len(labels) else None,
        "mean_prediction": float(probs.mean()) if len(probs) else None,
        "per_minute": out,
    }


class ProgressiveMemo:
    """:func:`progressive` for frequent readers (a dashboard, a metrics scrape, the stats series):
    one answer serves every call for ``ttl_s`` seconds, and each minute's figures are kept until
    its batches change. Over an hour of history that is millions of predictions to sort, so the
    caller copies the history under the learner's lock and calls this outside it."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self._minutes: dict[int, Any] = {}
        self._last: tuple[float, float, Progressive] | None = None  # (now, window_s, answer)
        self._lock = threading.Lock()  # one computation at a time; the others wait and share it

    def __call__(self, history: list[dict[str, Any]], now: float, window_s: float) -> Progressive:
        with self._lock:
            last = self._last
            if last is not None and last[1] == window_s and 0.0 <= now - last[0] < self.ttl_s:
                return last[2]
            out = progressive(history, now, window_s, self._minutes)
            self._last = (now, window_s, out)
            return out
