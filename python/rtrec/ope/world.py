"""A simulated check of the estimators: log with one policy, estimate others, compare with the truth.

The simulator (:mod:`rtrec.sim`) knows every user's true click probability for every item.
Requests come from its users (as often as each is active); the logging policy serves each a
list of ``k`` through :func:`rtrec.serve.policy.select_slate`, logging exactly the
propensities the daemon logs; clicks are drawn from the truth. Each target policy is then
estimated from that log alone, and its true value is computed exactly: the click rate of
its lists over the users' activity, ``sum_u activity_u sum_i pi_u(i) q_ui / k``.

The policies rank with imperfect models: the true click logit plus fixed noise per (user,
item), a different draw for the logging model and each target's; the direct method of DR is
another such model, in probability space.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rtrec.ope.estimators import Estimate, Logged, estimate_all
from rtrec.ope.marginals import DEFAULT_SAMPLES
from rtrec.ope.policies import PolicySpec
from rtrec.serve.policy import select_slate
from rtrec.sim import SimConfig, Simulator

__all__ = ["WorldConfig", "WorldResult", "run_world"]


@dataclass(frozen=True)
class WorldConfig:
    n_users: int = 300
    n_items: int = 100
    n_topics: int = 5
    k: int = 5
    requests: int = 4_000
    seed: int = 0
    logging: PolicySpec = field(default_factory=lambda: PolicySpec("softmax", 0.5))
    targets: tuple[PolicySpec, ...] = field(
        default_factory=lambda: (PolicySpec("epsilon", 0.1), PolicySpec("softmax", 0.3))
    )
    base_logit: float = -3.0  # the simulator's click logit before taste and quality (-3: ~55% on favourites)
    model_noise: float = 1.0  # sd of each policy's model error, in logits
    direct_noise: float = 0.5  # sd of the direct method's model error, in logits
    truth_samples: int = 500  # Monte Carlo size for the targets' exact-in-expectation marginals
    log_samples: int = DEFAULT_SAMPLES  # ... for the logged propensities (what the daemon uses)
    clip: float | None = None


@dataclass(frozen=True)
class WorldResult:
    truth: dict[str, float]  # per target label, and "logging"
    estimates: dict[str, dict[str, Estimate]]  # per target label: per estimator
    observed_click_rate: float
    clicks: int
    shown: int
    extra: dict[str, float] = field(default_factory=dict)


def run_world(cfg: WorldConfig) -> WorldResult:
    sim = Simulator(
        SimConfig(
            n_users=cfg.n_users, n_items=cfg.n_items, n_topics=cfg.n_topics, seed=cfg.seed, base_logit=cfg.base_logit
        )
    )
    q = sim.click_matrix()
    logit = np.log(q) - np.log1p(-q)
    rng = np.random.default_rng([cfg.seed, 17])
    noisy = lambda sd: logit + rng.normal(0.0, sd, logit.shape)  # noqa: E731
    log_scores = noisy(cfg.model_noise)
    target_scores = [noisy(cfg.model_noise) for _ in cfg.targets]
    direct = 1.0 / (1.0 + np.exp(-noisy(cfg.direct_noise)))
    act = sim.activity
    k = cfg.k

    # The log: one list per request, drawn and logged as the daemon would.
    users = rng.choice(cfg.n_users, size=cfg.requests, p=act)
    req, items, props = [], [], []
    lg = cfg.logging
    for r, u in enumerate(users.tolist()):
        slate = select_slate(
            log_scores[u],
            k,
            **lg.slate_args(),
            samples=cfg.log_samples,
            rng=rng,
        )
        req.append(np.full(len(slate.indices), r))
        items.append(slate.indices)
        props.append(slate.propensities)
    request, item, logging = np.concatenate(req), np.concatenate(items), np.concatenate(props)
    shown_user = users[request]
    reward = (rng.random(len(item)) < q[shown_user, item]).astype(np.float64)
    slots = np.full(cfg.requests, k, np.int64)

    truth: dict[str, float] = {}
    estimates: dict[str, dict[str, Estimate]] = {}
    mrng = np.random.default_rng([cfg.seed, 23])
    exact_log = np.stack(
        [lg.marginals(log_scores[u], k, samples=cfg.truth_samples, rng=mrng).inclusion for u in range(cfg.n_users)]
    )
    truth["logging"] = float(act @ (exact_log * q).sum(axis=1) / k)
    for spec, scores in zip(cfg.targets, target_scores, strict=True):
        pi = np.stack(
            [spec.marginals(scores[u], k, samples=cfg.truth_samples, rng=mrng).inclusion for u in range(cfg.n_users)]
        )
        truth[spec.label] = float(act @ (pi * q).sum(axis=1) / k)
        data = Logged(
            request=request,
            reward=reward,
            logging=logging,
            target=pi[shown_user, item],
            slots=slots,
            model=direct[shown_user, item],
            direct=(pi * direct).sum(axis=1)[users],
        )
        estimates[spec.label] = estimate_all(data, cfg.clip)
    return WorldResult(
        truth=truth,
        estimates=estimates,
        observed_click_rate=float(reward.mean()),
        clicks=int(reward.sum()),
        shown=len(reward),
    )
