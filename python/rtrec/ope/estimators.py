"""IPS, self-normalised IPS and doubly robust estimates of a list policy's click rate, with intervals.

**What is estimated.** The value of a policy is its click rate per shown item: the expected
clicks in the list it would serve for a logged request, over the list's length, pooled over
requests. The target serves as many items as the logging policy showed in that request.

**Reward and action probability.** A shown item's reward is whether it was clicked (or any
positive label). Each item is weighted by ``pi(i) / mu(i)``: the probabilities that the
target and the logging policy put item ``i`` *anywhere* in the list of that length (see
:mod:`rtrec.ope.marginals`). This is the item-level (independent-item) estimator: it
assumes that whether an item is clicked depends on the user and the item, not on its
position or on the other items of the list. It is unbiased under that assumption and far
less noisy than weighting whole lists (a list of ten drawn from two hundred candidates is
almost never repeated) or item-at-position pairs. Where position matters (users click the
top more), the estimate is that of a policy that shows the same items in any order.

With requests ``x``, list lengths ``k_x``, shown items ``S_x``, weights ``w`` and rewards ``r``:

- IPS: ``sum_x sum_{i in S_x} w r / sum_x k_x``.
- SNIPS: ``sum w r / sum w``; ``E[sum_{i in S_x} w] = k_x``, so it is IPS with the list
  lengths estimated from the same weights; biased by O(1/n), much less variance.
- DR: ``sum_x (DM_x + sum_{i in S_x} w (r - q)) / sum_x k_x``, where ``q`` is a model's click
  probability of a shown item and ``DM_x = sum_i pi(i) q(i)`` over all candidates (the
  direct method). Unbiased when either the weights or the model are right.

**Intervals.** Requests are the independent units: each estimate is a ratio of sums over
requests, and its standard error is the delta-method (linearised) one,
``sqrt(sum_x (A_x - V B_x)^2) / sum_x B_x``. The 95% interval is ``V +- 1.96 se``.

**Clipping.** ``clip`` caps each weight (a documented bias towards the logging policy, for
less variance). The effective sample size ``(sum w)^2 / sum w^2`` says how many shown
items the estimate really rests on: far below the number logged means the target goes
where the logging policy rarely went, and the interval is not to be trusted.

>>> import numpy as np
>>> data = Logged(request=np.array([0, 0, 1]), reward=np.array([1.0, 0.0, 1.0]),
...     logging=np.array([0.5, 1.0, 0.5]), target=np.array([1.0, 1.0, 0.25]),
...     slots=np.array([2, 1]))
>>> round(ips(data).value, 4), round(snips(data).value, 4)
(0.8333, 0.7143)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtrec.errors import InvalidInputError

__all__ = ["ESTIMATORS", "Estimate", "Logged", "dr", "estimate_all", "ips", "snips"]

ESTIMATORS = ("ips", "snips", "dr")
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Logged:
    """Shown items of logged requests, with what the estimators need to weight them.

    One entry per shown item: ``request`` (0..n-1), ``reward``, ``logging`` (the logging
    policy's probability of showing it in that list) and ``target`` (the target policy's).
    Per request: ``slots`` (the list's length). For DR, ``model`` (the model's click
    probability of each shown item) and ``direct`` (per request, ``sum_i pi(i) q(i)`` over
    every candidate).
    """

    request: np.ndarray
    reward: np.ndarray
    logging: np.ndarray
    target: np.ndarray
    slots: np.ndarray
    model: np.ndarray | None = None
    direct: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.request)
        for name in ("reward", "logging", "target") + (("model",) if self.model is not None else ()):
            if len(getattr(self, name)) != n:
                raise InvalidInputError(f"{name}: {len(getattr(self, name))} values for {n} shown items")
        if n and (self.request.min() < 0 or self.request.max() >= len(self.slots)):
            raise InvalidInputError("request: indices must lie in [0, number of requests)")
        if np.any(~(self.logging > 0)) or np.any(self.logging > 1 + 1e-9):
            raise InvalidInputError("logging: propensities must be in (0, 1]")
        if np.any(self.target < 0) or np.any(~np.isfinite(self.target)):
            raise InvalidInputError("target: probabilities must be finite and non-negative")
        if self.direct is not None and len(self.direct) != len(self.slots):
            raise InvalidInputError(f"direct: {len(self.direct)} values for {len(self.slots)} requests")

    @property
    def n_requests(self) -> int:
        return len(self.slots)


@dataclass(frozen=True)
class Estimate:
    """A policy value with its standard error, 95% interval and how much data it rests on."""

    value: float
    se: float
    low: float
    high: float
    ess: float  # effective sample size of the weights (shown items)
    n_requests: int
    n_shown: int
    max_weight: float
    clipped: int  # weights capped by ``clip``

    def as_dict(self) -> dict[str, float | int]:
        return {
            "value": self.value,
            "se": self.se,
            "low": self.low,
            "high": self.high,
            "ess": self.ess,
            "n_requests": self.n_requests,
            "n_shown": self.n_shown,
            "max_weight": self.max_weight,
            "clipped": self.clipped,
        }


def weights(data: Logged, clip: float | None = None) -> tuple[np.ndarray, int]:
    """``target / logging`` per shown item, capped at ``clip``; and how many were capped."""
    w = data.target / data.logging
    if clip is None:
        return w, 0
    if not clip > 0:
        raise InvalidInputError(f"clip: must be positive, got {clip}")
    return np.minimum(w, clip), int((w > clip).sum())


def ips(data: Logged, clip: float | None = None) -> Estimate:
    w, clipped = weights(data, clip)
    a = _per_request(data, w * data.reward)
    return _ratio(a, data.slots.astype(np.float64), w, data, clipped)


def snips(data: Logged, clip: float | None = None) -> Estimate:
    w, clipped = weights(data, clip)
    a = _per_request(data, w * data.reward)
    b = _per_request(data, w)
    if b.sum() <= 0:
        return _empty(data, w, clipped)
    return _ratio(a, b, w, data, clipped)


def dr(data: Logged, clip: float | None = None) -> Estimate:
    if data.model is None or data.direct is None:
        raise InvalidInputError("dr: needs the model's probabilities (model and direct)")
    w, clipped = weights(data, clip)
    a = data.direct + _per_request(data, w * (data.reward - data.model))
    return _ratio(a, data.slots.astype(np.float64), w, data, clipped)


def estimate_all(data: Logged, clip: float | None = None) -> dict[str, Estimate]:
    """Every estimator that ``data`` supports (DR only with a model)."""
    out = {"ips": ips(data, clip), "snips": snips(data, clip)}
    if data.model is not None and data.direct is not None:
        out["dr"] = dr(data, clip)
    return out


def _per_request(data: Logged, v: np.ndarray) -> np.ndarray:
    return np.bincount(data.request, weights=v, minlength=data.n_requests)


def _ratio(a: np.ndarray, b: np.ndarray, w: np.ndarray, data: Logged, clipped: int) -> Estimate:
    n = len(a)
    if n == 0 or b.sum() <= 0:
        return _empty(data, w, clipped)
    v = float(a.sum() / b.sum())
    resid = a - v * b
    # Linearised variance of a ratio of sums over independent requests (n / (n - 1) corrected).
    var = float((resid**2).sum()) / float(b.sum()) ** 2 * (n / (n - 1) if n > 1 else 1.0)
    se = float(np.sqrt(var))
    return Estimate(
        value=v,
        se=se,
        low=v - Z95 * se,
        high=v + Z95 * se,
        ess=_ess(w),
        n_requests=n,
        n_shown=len(w),
        max_weight=float(w.max()) if len(w) else 0.0,
        clipped=clipped,
    )


def _empty(data: Logged, w: np.ndarray, clipped: int) -> Estimate:
    nan = float("nan")
    return Estimate(nan, nan, nan, nan, _ess(w), data.n_requests, len(w), float(w.max()) if len(w) else 0.0, clipped)


def _ess(w: np.ndarray) -> float:
    sq = float((w**2).sum())
    return float(w.sum()) ** 2 / sq if sq > 0 else 0.0
