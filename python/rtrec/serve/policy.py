"""Exploration policies: from candidate scores to a slate of items with propensities.

Every policy fills a slate of ``k`` from the candidates. Three probabilities are known for
each shown item (see :mod:`rtrec.ope.marginals` for how each is computed):

- ``propensities``: that the policy puts the item anywhere in this list of ``k``; what a
  client echoes into the impression event and what the off-policy estimators divide by;
- ``position_propensities``: that it puts the item at this position;
- ``slot_propensities``: that it picked the item for its slot *given the items above it*
  (within one slot these sum to one over the remaining candidates; the cascade view).

The policies:

- ``none``: greedy by score; every propensity is 1.
- ``epsilon``: with probability ``1 - epsilon`` the best remaining item, otherwise one
  drawn uniformly from the remaining items.
- ``softmax``: Plackett-Luce sampling with weights ``exp(score / temperature)``, done
  with the Gumbel-top-k trick (one vectorised draw instead of ``k`` sequential ones).
- ``thompson``: posterior sampling: each score is drawn from a normal around it with the
  item's own uncertainty ``sigma`` (less for items with more feedback), and the top ``k``
  draws are shown.

>>> import numpy as np
>>> slate = select_slate(np.array([0.1, 0.9, 0.5]), 2, policy="none")
>>> slate.indices.tolist(), slate.propensities.tolist()
([1, 2], [1.0, 1.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtrec.errors import InvalidInputError
from rtrec.ope.marginals import DEFAULT_SAMPLES, list_marginals

POLICIES = ("none", "epsilon", "softmax", "thompson")
SLOT_POLICIES = ("none", "epsilon", "softmax")  # with a closed-form slot distribution


@dataclass(frozen=True)
class Slate:
    """Chosen candidate positions, best slot first, and the probabilities of each choice."""

    indices: np.ndarray
    propensities: np.ndarray  # in the list of k at all (what impressions log)
    explored: np.ndarray  # per slot: True where the item differs from the greedy choice
    slot_propensities: np.ndarray | None = None  # for its slot, given the items above (not for thompson)
    position_propensities: np.ndarray | None = None  # at its position


def _check(scores: np.ndarray, policy: str, epsilon: float, temperature: float) -> np.ndarray:
    if policy not in POLICIES:
        raise InvalidInputError(f"exploration policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if not 0.0 <= epsilon <= 1.0:
        raise InvalidInputError(f"epsilon must be in [0, 1], got {epsilon}")
    if policy in ("softmax", "thompson") and not temperature > 0.0:
        raise InvalidInputError(f"temperature must be positive, got {temperature}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise InvalidInputError(f"scores must be one-dimensional, got shape {s.shape}")
    # NaN scores would poison sorting and sampling; treat them as the worst possible score.
    return np.where(np.isnan(s), -np.inf, s)


def slot_probabilities(
    scores: np.ndarray,
    shown: np.ndarray | None = None,
    *,
    policy: str = "epsilon",
    epsilon: float = 0.05,
    temperature: float = 0.1,
) -> np.ndarray:
    """The probability of each candidate being drawn for the next slot.

    ``shown`` is a boolean mask of candidates already placed above (probability 0).
    The result is non-negative and sums to one over the candidates not shown.
    """
    if policy == "thompson":
        raise InvalidInputError("thompson has no closed-form slot distribution: use rtrec.ope.list_marginals")
    s = _check(scores, policy, epsilon, temperature)
    n = s.shape[0]
    avail = np.ones(n, dtype=bool) if shown is None else ~np.asarray(shown, dtype=bool)
    m = int(avail.sum())
    out = np.zeros(n, dtype=np.float64)
    if m == 0:
        return out
    if policy == "softmax":
        z = np.where(avail, s / temperature, -np.inf)
        finite = np.isfinite(z)
        if not finite.any():
            out[avail] = 1.0 / m
            return out
        w = np.zeros(n)
        w[finite] = np.exp(z[finite] - z[finite].max())
        return w / w.sum()
    eps = 0.0 if policy == "none" else epsilon
    best = int(np.argmax(np.where(avail, s, -np.inf)))
    if not avail[best]:  # every remaining score is -inf: argmax landed on a shown one
        best = int(np.flatnonzero(avail)[0])
    out[avail] = eps / m
    out[best] += 1.0 - eps
    return out


def select_slate(
    scores: np.ndarray,
    k: int,
    *,
    policy: str = "epsilon",
    epsilon: float = 0.05,
    temperature: float = 0.1,
    sigma: np.ndarray | float | None = None,
    samples: int = DEFAULT_SAMPLES,
    rng: np.random.Generator | None = None,
) -> Slate:
    """Pick up to ``k`` distinct candidates from ``scores`` with the given exploration policy.

    Ties are broken by position (earlier wins), so the greedy slate is deterministic.
    ``sigma`` (thompson) is each candidate's score uncertainty, ``temperature`` when None;
    ``samples`` is the Monte Carlo size for the propensities of softmax and thompson.
    """
    s = _check(scores, policy, epsilon, temperature)
    if k < 0:
        raise InvalidInputError(f"k must be non-negative, got {k}")
    n = s.shape[0]
    k = min(k, n)
    if k == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Slate(empty, np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0), np.zeros(0))
    rng = rng if rng is not None else np.random.default_rng()
    if policy == "thompson":
        sig = np.broadcast_to(np.asarray(temperature if sigma is None else sigma, np.float64), (n,))
        if not np.all(sig > 0):
            raise InvalidInputError("sigma must be positive for every candidate")
        slate = _thompson_slate(s, k, sig, rng)
        m = list_marginals(s, k, policy="thompson", sigma=sig, samples=samples, rng=rng, items=slate.indices)
    else:
        eps = 0.0 if policy == "none" else epsilon
        slate = _softmax_slate(s, k, temperature, rng) if policy == "softmax" else _epsilon_slate(s, k, eps, rng)
        m = list_marginals(
            s, k, policy=policy, epsilon=eps, temperature=temperature, samples=samples, rng=rng, items=slate.indices
        )
    return Slate(
        slate.indices,
        m.inclusion,
        slate.explored,
        slot_propensities=slate.propensities if policy != "thompson" else None,
        position_propensities=m.position[np.arange(k), np.arange(k)],
    )


def _thompson_slate(s: np.ndarray, k: int, sigma: np.ndarray, rng: np.random.Generator) -> Slate:
    finite = np.isfinite(s)
    base = np.where(finite, s, (s[finite].min() if finite.any() else 0.0) - 1e6)
    draws = base + sigma * rng.standard_normal(len(s))
    idx = _ranked(draws, k)[:k].astype(np.int64)
    greedy = _ranked(s, k)[:k]
    explored = np.array([int(i) not in set(greedy[: j + 1].tolist()) for j, i in enumerate(idx.tolist())], dtype=bool)
    return Slate(idx, np.full(k, np.nan), explored)


def _ranked(s: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` best scores, best first, ties by position."""
    n = s.shape[0]
    if top >= n:
        return np.lexsort((np.arange(n), -s))
    part = np.argpartition(-s, top - 1)[:top]
    # argpartition may pick any of several tied items at the boundary; widen to all ties.
    cutoff = s[part].min()
    part = np.flatnonzero(s >= cutoff)
    return part[np.lexsort((part, -s[part]))]


def _epsilon_slate(s: np.ndarray, k: int, eps: float, rng: np.random.Generator) -> Slate:
    n = s.shape[0]
    # The greedy pick for a slot is the best item not taken yet; at most k items are taken
    # above it, so it lies within the best 2k.
    ranked = _ranked(s, min(n, 2 * k))
    taken = np.zeros(n, dtype=bool)
    idx = np.empty(k, dtype=np.int64)
    prop = np.empty(k, dtype=np.float64)
    explored = np.zeros(k, dtype=bool)
    cursor = 0
    explore = rng.random(k) < eps if eps > 0 else np.zeros(k, dtype=bool)
    for slot in range(k):
        while taken[ranked[cursor]]:
            cursor += 1
        greedy = int(ranked[cursor])
        m = n - slot
        if explore[slot]:
            # Uniform over the remaining items; rejection is cheap because k << n usually.
            while True:
                j = int(rng.integers(n))
                if not taken[j]:
                    break
        else:
            j = greedy
        taken[j] = True
        idx[slot] = j
        prop[slot] = eps / m + (1.0 - eps if j == greedy else 0.0)
        explored[slot] = j != greedy
    return Slate(idx, prop, explored)


def _softmax_slate(s: np.ndarray, k: int, temperature: float, rng: np.random.Generator) -> Slate:
    n = s.shape[0]
    z = s / temperature
    finite = np.isfinite(z)
    if not finite.any():
        z = np.zeros(n)
        finite = np.ones(n, dtype=bool)
    w = np.zeros(n)
    w[finite] = np.exp(z[finite] - z[finite].max())
    # Gumbel-top-k draws an ordered sample without replacement from the Plackett-Luce
    # distribution, identical in law to drawing slot by slot from the softmax.
    keys = np.where(w > 0, np.log(np.where(w > 0, w, 1.0)) + rng.gumbel(size=n), -np.inf)
    if not np.isfinite(keys).any():
        keys = np.asarray(rng.random(n))
    top = np.argpartition(-keys, k - 1)[:k] if k < n else np.arange(n)
    idx = top[np.argsort(-keys[top], kind="stable")].astype(np.int64)
    chosen = w[idx]
    # Sum what stays unchosen plus the chosen below each slot, rather than subtracting from
    # the total, so that one dominant weight does not cancel the rest away.
    rest = np.ones(n, dtype=bool)
    rest[idx] = False
    remaining = w[rest].sum() + np.cumsum(chosen[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        prop = np.where(remaining > 0, chosen / remaining, 1.0 / (n - np.arange(k)))
    prop = np.clip(prop, 0.0, 1.0)
    greedy = _ranked(s, min(n, 2 * k))
    # An item counts as explored when it is not the greedy choice among what was left.
    explored = np.zeros(k, dtype=bool)
    taken: set[int] = set()
    for slot in range(k):
        best = next(int(g) for g in greedy if int(g) not in taken)
        explored[slot] = int(idx[slot]) != best
        taken.add(int(idx[slot]))
    return Slate(idx, prop, explored)
