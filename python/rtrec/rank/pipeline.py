"""Retrieve, score, rank: the served pipeline for a known user, and the ranker's training.

``rank`` merges the sources' candidates (:class:`rtrec.retrieve.Retrieval`), scores them
with the CTR model (its logit is a ranking feature), and orders them with the learner's
:class:`~rtrec.rank.model.ListRanker`. ``advance`` runs in the learn step, before any model
learns the chunk: it feeds the sources in stream order, and each sampled positive is ranked
against its own candidates as they were when the user engaged, so the ranker learns (and
the evaluation measures) only what could have been seen.

Variants: ``learner.rankers`` maps a trainer's name to its ranker. In ``rtrec replay`` the
served pipeline (``rtrec``) and its text ablations each have one; a ranker without text
sees no text features and no candidates only the text source proposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rtrec.labels import FOLLOWUP
from rtrec.learn.columns import LINEAR
from rtrec.learn.metrics import MISSED, rank_of
from rtrec.retrieve.sources import COLD, CTR, FEATURES, SOURCES, Candidates

if TYPE_CHECKING:
    from rtrec.learn.batch import Batch
    from rtrec.learn.online import OnlineLearner
    from rtrec.learn.step import Resolving
    from rtrec.rank.model import ListRanker

__all__ = ["Evaluator", "Ranked", "advance", "cold_slots", "exclusions", "rank", "rank_variants"]

_CONTENT = 1 << SOURCES.index("content")
CONTENT = [FEATURES.index("content_user"), FEATURES.index("content_recent")]
LIVE_SHARE = 0.125  # trained positives also ranked among all their candidates, for live HR@10


@dataclass
class Ranked:
    """One variant's ranking of one request's candidates (rows in candidate order)."""

    cands: Candidates
    x: np.ndarray  # ranking features
    scores: np.ndarray  # the ranker's score
    probs: np.ndarray  # the CTR model's click probability
    batch: Batch  # the CTR features scored (rows as ``cands``)

    def order(self) -> np.ndarray:
        """Candidate rows, best first (the cold slots filled: see :func:`cold_slots`)."""
        return np.argsort(-self.scores, kind="stable")


def cold_slots(
    scores: np.ndarray, cold: np.ndarray, slots: int, k: int = 10, by: np.ndarray | None = None
) -> np.ndarray:
    """``scores`` with the best cold candidates raised into the first ``k`` places when fewer than
    ``slots`` cold ones are there: a small share of every list goes to items with little feedback,
    which the ranker, trained on what users engaged with, would otherwise hardly ever show.

    >>> s = cold_slots(np.array([5.0, 4.0, 3.0, 1.0, 0.5]), np.array([0, 0, 0, 1, 1], bool), 1, k=3)
    >>> np.argsort(-s)[:3].tolist()
    [0, 1, 3]
    """
    if slots <= 0 or len(scores) <= k:
        return scores
    order = np.argsort(-scores, kind="stable")
    have = int(cold[order[:k]].sum())
    rest = order[k:][cold[order[k:]]]
    if by is not None:  # which cold candidates to raise: by this instead of the score
        rest = rest[np.argsort(-by[rest], kind="stable")]
    promote = rest[: max(slots - have, 0)]
    if not len(promote):
        return scores
    out = scores.astype(np.float64, copy=True)
    m = len(promote)
    base = out[order[k - m]]  # the promoted items land just above the first item they push out
    delta = 1e-6 * (1.0 + abs(base))
    out[promote] = base + delta * np.arange(m, 0, -1)
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def _without_text(c: Candidates) -> np.ndarray:
    """Rows not proposed by the text source alone."""
    return c.mask != _CONTENT


def _take(c: Candidates, rows: np.ndarray) -> Candidates:
    return Candidates(items=c.items[rows], mask=c.mask[rows], lists=c.lists, view=c.view)


def _serve(ranker: ListRanker, cands: Candidates, x: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``cands`` the ranker may serve, and their served scores (cold slots filled).

    A ranker without text never serves what only the text source proposed; with text, the
    cold slot goes to the cold candidate whose text is nearest the user's.
    """
    rows = np.arange(len(cands)) if ranker.text else np.flatnonzero(_without_text(cands))
    xs = x[rows]
    by = xs[:, CONTENT].sum(axis=1) if ranker.text else None
    return rows, cold_slots(ranker.score(xs), xs[:, COLD] > 0, slots, by=by)


def exclusions(
    learner: OnlineLearner,
    user: int | None,
    extra: np.ndarray | None = None,
    *,
    point_in_time: bool = False,
    consumed: bool = True,
) -> np.ndarray:
    """Items never recommended to ``user`` (their recent engaged items are skipped by retrieval too).

    Served: what the user consumed (``CONSUMED_TYPES``; none with ``consumed=False``), and
    ``extra``. ``point_in_time`` (training and
    evaluation inside a learn step, where the chunk's own consuming events are already
    noted): every item with an example of the user resolved before this one.
    """
    if user is None or not consumed:
        out = np.zeros(0, np.int64)
    elif point_in_time:
        out = learner.retrieval.interacted.get(user)
    else:
        out = learner.consumed.get(user)  # a copy: the learner may be adding to it
    return out if extra is None else np.concatenate([out, np.asarray(extra, np.int64)])


def rank_variants(
    learner: OnlineLearner,
    user_id: str,
    now: float,
    names: list[str],
    *,
    exclude: np.ndarray | None = None,
    category: str | None = None,
    context: dict[str, Any] | None = None,
    cands: Candidates | None = None,
    point_in_time: bool = False,
    consumed: bool = True,
    at_least: int = 0,
) -> dict[str, Ranked]:
    """Rank the user's candidates with each named variant (one retrieval, one feature pass)."""
    f = learner.featurizer
    user = f.users.get(user_id)
    if cands is None:
        excl = exclusions(learner, user, exclude, point_in_time=point_in_time, consumed=consumed)
        text = any(learner.rankers[n].text for n in names)
        cands = learner.retrieval.retrieve(user, now, excl, category=category, text=text, at_least=at_least)
    out: dict[str, Ranked] = {}
    if not len(cands):
        return out
    x = learner.retrieval.features(cands, now)
    batch = learner.candidates(user_id, cands.items, now, context)
    for name in names:
        probs = np.asarray(learner.trainers[name].predict(batch, f), np.float64)
        xv = x.copy()
        xv[:, CTR] = _logit(probs)
        rows, scores = _serve(learner.rankers[name], cands, xv, learner.cfg.retrieve.cold_slots)
        if len(rows) == len(cands):
            out[name] = Ranked(cands, xv, scores, probs, batch)
        else:
            out[name] = Ranked(_take(cands, rows), xv[rows], scores, probs[rows], batch.take(rows))
    return out


def rank(learner: OnlineLearner, user_id: str, now: float, **kw: Any) -> Ranked | None:
    """The serving variant's ranking (None when there is nothing to rank)."""
    return rank_variants(learner, user_id, now, [learner.main], **kw).get(learner.main)


class Evaluator(Protocol):
    """Ranks sampled examples as they are served (``rtrec replay``'s top-K evaluation)."""

    def pick(self, r: Resolving) -> np.ndarray:
        """Rows of the chunk to rank; called before anything learns the chunk."""

    def rank(self, r: Resolving, row: int) -> None:
        """Rank the example ``row``; called just before it reaches the candidate sources."""


@dataclass
class _Job:
    """One trained positive, retrieved and described as of its moment; scored by the CTR model later."""

    user: int
    item: int
    ts: float
    sub: Candidates  # the positive (row 0) and its negatives
    x_sub: np.ndarray
    full: Candidates | None = None  # every candidate, when the live ranking samples this positive
    x_full: np.ndarray | None = None
    at_sub: int = 0  # where the job's rows start in the chunk's one CTR scoring call
    at_full: int = 0


def advance(learner: OnlineLearner, r: Resolving) -> None:
    """Fold a chunk's resolved examples into the candidate sources, in stream order.

    Just before a sampled positive reaches the sources, the evaluator ranks it and its
    candidates and ranking features are taken for the rankers, with the sources as they
    were when the user engaged: the items the user engaged with earlier in the chunk count,
    later ones do not. The CTR model does not learn during this walk, so the chunk's
    trained positives are scored by it in one call at the end, then learned in order.
    """
    ev = learner.evaluator.pick(r) if learner.evaluator is not None else np.zeros(0, np.int64)
    tr = _train_rows(learner, r)
    marks = np.union1d(ev, tr).astype(np.int64)
    evaluate, training = set(ev.tolist()), set(tr.tolist())
    text = any(ranker.text for ranker in learner.rankers.values())
    jobs: list[_Job] = []
    start = 0
    for k in marks.tolist():
        if k > start:
            learner.retrieval.observe(r.user_idx[start:k], r.item_idx[start:k], r.ts[start:k], r.engaged[start:k])
            start = k
        if k in evaluate and learner.evaluator is not None:
            learner.evaluator.rank(r, k)
        if k in training:
            job = _prepare(learner, int(r.user_idx[k]), int(r.item_idx[k]), float(r.ts[k]), text)
            if job is not None:
                jobs.append(job)
    if start < len(r):
        learner.retrieval.observe(r.user_idx[start:], r.item_idx[start:], r.ts[start:], r.engaged[start:])
    learner.retrieval.commit()
    if jobs:
        _learn(learner, jobs)


def _train_rows(learner: OnlineLearner, r: Resolving) -> np.ndarray:
    share = learner.cfg.retrieve.train_share
    if not learner.rankers or share <= 0:
        return np.zeros(0, np.int64)
    pos = (r.labels >= 0.5) & (r.origin != FOLLOWUP)
    return np.flatnonzero(pos & (learner.rank_rng.random(len(r)) < share))


def _prepare(learner: OnlineLearner, user: int, item: int, ts: float, text: bool) -> _Job | None:
    """Retrieve for a trained positive and take its ranking features (all but the CTR logit).

    A positive its user's candidates missed is not trained on: the ranker only ever orders
    candidates (the miss is counted in ``rank_recall``, and in the live ranking when sampled).
    """
    cfg, rv = learner.cfg.retrieve, learner.retrieval
    cands = rv.retrieve(user, ts, exclusions(learner, user, point_in_time=True), text=text)
    hit = np.flatnonzero(cands.items == item)
    learner.rank_recall[0] += len(hit) > 0
    learner.rank_recall[1] += 1
    live = learner.rank_rng.random() < LIVE_SHARE
    others = np.flatnonzero(cands.items != item)
    if not len(hit) or not len(others):
        if live:
            learner.live_ranks.append(MISSED)
        return None
    neg = learner.rank_rng.choice(others, size=min(cfg.negatives, len(others)), replace=False)
    sub = _take(cands, np.concatenate([hit[:1], neg]))
    job = _Job(user, item, ts, sub, rv.features(sub, ts))
    if live:
        # Live ranking quality: where the served ranking would put the item among all its candidates.
        job.full, job.x_full = cands, rv.features(cands, ts)
    return job


def _learn(learner: OnlineLearner, jobs: list[_Job]) -> None:
    """Score every job's rows with each variant's CTR model in one call, then train in stream order."""
    parts: list[tuple[_Job, Candidates]] = []
    at = 0
    for j in jobs:
        j.at_sub, at = at, at + len(j.sub)
        parts.append((j, j.sub))
    for j in jobs:
        if j.full is not None:
            j.at_full, at = at, at + len(j.full)
            parts.append((j, j.full))
    users = np.concatenate([np.full(len(c), j.user, np.int64) for j, c in parts])
    ts = np.concatenate([np.full(len(c), j.ts) for j, c in parts])
    f = learner.featurizer
    batch = f.pairs(users, np.concatenate([c.items for _, c in parts]), ts)
    batch.dense[:, LINEAR] = learner.linear.predict(batch.indices, batch.offsets)
    logits = {name: _logit(learner.trainers[name].predict(batch, f)) for name in learner.rankers}
    slots = learner.cfg.retrieve.cold_slots
    for j in jobs:
        if j.full is not None and j.x_full is not None:
            # Live ranking quality: where the served ranking puts the item among all its candidates.
            xf = j.x_full.copy()
            xf[:, CTR] = logits[learner.main][j.at_full : j.at_full + len(j.full)]
            rows, served = _serve(learner.rankers[learner.main], j.full, xf, slots)
            learner.live_ranks.append(rank_of(j.full.items[rows[np.argsort(-served, kind="stable")]], j.item))
        keep = _without_text(j.sub)
        for name, ranker in learner.rankers.items():
            x = j.x_sub.copy()
            x[:, CTR] = logits[name][j.at_sub : j.at_sub + len(j.sub)]
            if not ranker.text:
                if not keep[0] or keep.sum() < 2:
                    continue  # without text: no text-only positive, and something to compare it with
                x = x[keep]
            ranker.learn(x)
