"""How likely a policy is to show each candidate: per position, and anywhere in a list of ``k``.

The estimators in :mod:`rtrec.ope.estimators` weight each shown item by the ratio of two such
probabilities (the target policy's over the logging policy's), so they must be right, not
merely plausible. What each policy gets:

- ``none`` (greedy): exact; the top ``k`` by score get 1, the rest 0.
- ``epsilon``: exact, by a dynamic programme over slots. Each slot takes the best remaining
  item with probability ``1 - epsilon`` and a uniform remaining item otherwise; an item of
  greedy rank ``r`` is still waiting after ``s`` slots in one of a few states (how many
  better items are gone), so ``k`` steps over a ``(k + 1) x (k + 1)`` table give every
  position's probability. Every item below rank ``k`` has the same probabilities (a greedy
  pick never reaches it), computed once.
- ``softmax`` (Plackett-Luce) and ``thompson``: both show the top ``k`` of independently
  perturbed scores (``score / temperature`` plus Gumbel noise is Plackett-Luce; ``score``
  plus normal noise of the item's own scale ``sigma`` is Thompson sampling from a Gaussian
  posterior). Rao-Blackwellised Monte Carlo: given the other items' draws, an item lands at
  position ``p`` when its own draw falls between their ``p``-th and ``p+1``-th largest, which
  has a closed form (the Gumbel or normal CDF); the estimate is the mean of that over
  ``samples`` draws of the others. It is exact in expectation, lies in [0, 1] in every
  sample (so capping at 1 costs no bias), is never zero for an item the policy can show,
  and varies far less than counting how often each item came up.

>>> import numpy as np
>>> m = list_marginals(np.array([3.0, 2.0, 1.0, 0.0]), 2, policy="epsilon", epsilon=0.4)
>>> [round(x, 4) for x in m.inclusion.tolist()]
[0.92, 0.64, 0.22, 0.22]
>>> round(float(m.inclusion.sum()), 6)
2.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtrec.errors import InvalidInputError

__all__ = ["Marginals", "greedy_order", "list_marginals"]

DEFAULT_SAMPLES = 64


@dataclass(frozen=True)
class Marginals:
    """``position[p, i]``: probability that candidate ``i`` is shown at position ``p``;
    ``inclusion[i]``: probability that it is shown anywhere in the list (the sum over ``p``)."""

    position: np.ndarray
    inclusion: np.ndarray


def greedy_order(scores: np.ndarray) -> np.ndarray:
    """Candidates best first, ties by position (the order :func:`rtrec.serve.policy.select_slate` uses)."""
    s = np.where(np.isnan(scores), -np.inf, np.asarray(scores, np.float64))
    return np.argsort(-s, kind="stable")  # stable: ties keep their order


def list_marginals(
    scores: np.ndarray,
    k: int,
    *,
    policy: str = "epsilon",
    epsilon: float = 0.05,
    temperature: float = 0.1,
    sigma: np.ndarray | float | None = None,
    samples: int = DEFAULT_SAMPLES,
    rng: np.random.Generator | None = None,
    items: np.ndarray | None = None,
) -> Marginals:
    """Position and list marginals of ``policy`` choosing ``k`` of the candidates scored ``scores``.

    With ``items`` (candidate positions), only those columns are computed and returned, in
    that order: what serving needs for the shown items, at a fraction of the cost.
    """
    s = np.where(np.isnan(scores), -np.inf, np.asarray(scores, np.float64))
    if s.ndim != 1:
        raise InvalidInputError(f"scores must be one-dimensional, got shape {s.shape}")
    n = len(s)
    cols = np.arange(n) if items is None else np.asarray(items, np.int64)
    k = max(0, min(int(k), n))
    if k == 0:
        return Marginals(np.zeros((0, len(cols))), np.zeros(len(cols)))
    if policy == "none":
        rank = np.empty(n, np.int64)
        rank[greedy_order(s)] = np.arange(n)
        r = rank[cols]
        pos = np.zeros((k, len(cols)))
        pos[r[r < k], np.flatnonzero(r < k)] = 1.0
    elif policy == "epsilon":
        if not 0.0 <= epsilon <= 1.0:
            raise InvalidInputError(f"epsilon must be in [0, 1], got {epsilon}")
        pos = _epsilon(s, k, epsilon, cols)
    elif policy == "softmax":
        if not temperature > 0.0:
            raise InvalidInputError(f"temperature must be positive, got {temperature}")
        pos = _softmax(s, k, temperature, max(1, samples), rng or np.random.default_rng(), cols)
    elif policy == "thompson":
        sig = np.broadcast_to(np.asarray(0.1 if sigma is None else sigma, np.float64), (n,))
        if not np.all(sig > 0):
            raise InvalidInputError("thompson: every sigma must be positive")
        pos = _thompson(s, k, sig, max(1, samples), rng or np.random.default_rng(), cols)
    else:
        raise InvalidInputError(f"policy must be one of none, epsilon, softmax, thompson; got {policy!r}")
    pos = np.clip(pos, 0.0, 1.0)  # rounding: a sure item may sum to 1 + 1e-16
    return Marginals(pos, np.clip(pos.sum(axis=0), 0.0, 1.0))


def _epsilon(s: np.ndarray, k: int, eps: float, cols: np.ndarray) -> np.ndarray:
    """Exact position probabilities of slot-wise epsilon-greedy (see the module docstring).

    For the item of greedy rank ``r`` (``L = r - 1`` better items, ``H = n - r`` worse), the
    state after ``t`` slots, while the item waits, is how many better items are gone (``a``;
    the other ``t - a`` taken were worse). A slot takes it by exploiting once every better
    item is gone, or by exploring onto it (``1 / (n - t)``).
    """
    n = len(s)
    order = greedy_order(s)
    out = _epsilon_table(n, k, float(eps))
    R = out.shape[1]
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return out[:, np.minimum(rank[cols], R - 1)]


@functools.lru_cache(maxsize=256)
def _epsilon_table(n: int, k: int, eps: float) -> np.ndarray:
    """``table[t, r]``: probability that greedy rank ``r`` (rows past ``k`` alike) fills slot ``t``.

    It depends on the list sizes and epsilon only, not on the scores: cached.
    """
    R = min(n, k + 1)  # ranks k+1 .. n behave alike: one row stands for them all
    L = np.arange(R, dtype=np.float64)[:, None]  # better items, per rank row
    H = n - 1 - L
    a = np.arange(k + 1, dtype=np.float64)[None, :]
    state = np.zeros((R, k + 1))
    state[:, 0] = 1.0
    at_top = a == L  # every better item gone: an exploit takes this one
    out = np.zeros((k, R))
    for t in range(k):
        m = n - t
        out[t] = (state * at_top).sum(axis=1) * (1.0 - eps) + state.sum(axis=1) * eps / m
        better = state * (np.where(a < L, 1.0 - eps, 0.0) + eps * (L - a) / m)
        worse = state * (eps * (H - (t - a)) / m)
        nxt = worse
        nxt[:, 1:] += better[:, :-1]
        state = np.clip(nxt, 0.0, None)
    out.flags.writeable = False
    return out


def _softmax(
    s: np.ndarray, k: int, temperature: float, samples: int, rng: np.random.Generator, cols: np.ndarray
) -> np.ndarray:
    """Plackett-Luce is the top ``k`` of ``s / temperature`` plus standard Gumbel noise."""
    n = len(s)
    z = s / temperature
    live = np.flatnonzero(np.isfinite(z))
    if not len(live):
        z, live = np.zeros(n), np.arange(n)
    pos = np.zeros((k, n))
    k_live = min(k, len(live))
    if k_live < k:  # the policy shows every item it can, then fills up uniformly from the rest
        dead = np.setdiff1d(np.arange(n), live)
        pos[k_live:, dead] = 1.0 / len(dead)
    at = np.full(n, -1)
    at[live] = np.arange(len(live))
    want = cols[at[cols] >= 0]
    loc = z[live] - z[live].max()

    def survival(t: np.ndarray, j: np.ndarray | slice) -> np.ndarray:  # P(loc_j + Gumbel > t)
        return -np.expm1(-np.exp(np.minimum(loc[j] - t, 700.0)))

    draws = loc[None, :] + rng.gumbel(size=(samples, len(live)))
    pos[:k_live, want] = _perturbed(draws, k_live, survival, at[want])
    return pos[:, cols]


def _thompson(
    s: np.ndarray, k: int, sigma: np.ndarray, samples: int, rng: np.random.Generator, cols: np.ndarray
) -> np.ndarray:
    finite = np.isfinite(s)
    if not finite.all():  # a -inf score is never drawn above a finite one: place those last
        s = np.where(finite, s, (s[finite].min() if finite.any() else 0.0) - 1e6)

    def survival(t: np.ndarray, j: np.ndarray | slice) -> np.ndarray:  # P(s_j + sigma_j Z > t)
        return _phi((s[j] - t) / sigma[j])

    draws = s[None, :] + sigma[None, :] * rng.standard_normal((samples, len(s)))
    return _perturbed(draws, k, survival, cols)


def _perturbed(
    draws: np.ndarray, k: int, survival: Callable[[np.ndarray, Any], np.ndarray], cols: np.ndarray
) -> np.ndarray:
    """Position probabilities of "top ``k`` of independently perturbed scores", Rao-Blackwellised.

    ``draws`` holds ``samples`` draws of every score; ``survival(t, j)`` is the probability
    that item ``j``'s draw exceeds ``t``. Given the other items' draws, item ``i`` is at
    position ``p`` when exactly ``p`` of them are above it: ``S(t_p) - S(t_{p-1})`` with
    ``t_p`` their ``p+1``-th largest. Averaged over the samples of the others' draws; for the
    items ``cols`` only.
    """
    samples, n = draws.shape
    m = min(k + 1, n)
    top = np.argpartition(-draws, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (samples, 1))
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(draws, top, axis=1), axis=1), axis=1)
    vals = np.take_along_axis(draws, top, axis=1)  # samples x m, descending
    # An item outside a sample's top m sees the others' p-th largest as vals[:, p].
    inf = np.full((samples, 1), np.inf)
    bounds = np.concatenate([inf, vals[:, :k]], axis=1)  # samples x (k + 1)
    sf = survival(bounds[:, :, None], cols)  # samples x (k + 1) x len(cols)
    generic = sf[:, 1:, :] - sf[:, :-1, :]
    total = generic.sum(axis=0)  # k x len(cols)
    # An item inside a sample's top m: the others' order statistics skip its own draw.
    col_of = np.full(n, -1)
    col_of[cols] = np.arange(len(cols))
    top_c = col_of[top]
    hit = top_c >= 0
    if hit.any():
        skip = np.full((m, k), -1)
        for j in range(m):
            rest = [q for q in range(m) if q != j][:k]
            skip[j, : len(rest)] = rest
        own_vals = np.where(skip[None] >= 0, vals[:, np.maximum(skip, 0)], -np.inf)  # samples x m x k
        own_bounds = np.concatenate([np.full((samples, m, 1), np.inf), own_vals], axis=2)
        own_sf = survival(own_bounds, top[:, :, None])
        own = own_sf[:, :, 1:] - own_sf[:, :, :-1]  # samples x m x k
        rows = np.arange(samples)[:, None]
        for p in range(k):
            fix = own[:, :, p] - generic[rows, p, np.maximum(top_c, 0)]
            np.add.at(total[p], top_c[hit], fix[hit])
    return total / samples


def _phi(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF, elementwise (torch's, on the array's memory)."""
    import torch

    return torch.special.ndtr(torch.from_numpy(np.ascontiguousarray(x, np.float64))).numpy()
