"""The ranker: scores a user's candidates, picks the slate with the exploration policy, logs propensities.

It only reads: the model (while it learns), the current catalog snapshot and the user's
state. The features it scored for each shown item are handed to the learner, which learns
them as they are when the impression comes back with the slate's ``request_id``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec.config import Config
from rtrec.errors import NotFoundError
from rtrec.ope.live import LIVE, LiveEstimates, policy_terms
from rtrec.ope.policies import PolicySpec, item_uncertainty, parse_policy
from rtrec.rank import pipeline
from rtrec.retrieve.sources import FEATURES
from rtrec.serve.catalog import Catalog
from rtrec.serve.metrics import Meters
from rtrec.serve.policy import Slate, select_slate
from rtrec.serve.text_worker import TextWorker

log = logging.getLogger("rtrec.serve")

if TYPE_CHECKING:
    from rtrec.learn import OnlineLearner

__all__ = ["INLINE_SCAN_ITEMS", "Ranker", "query_text"]

INLINE_SCAN_ITEMS = 2048  # a stranger's whole-catalog scan up to this many items is answered inline


class Ranker:
    """``recommend`` for the daemon. ``catalog`` and ``user_state`` are read once per request."""

    def __init__(
        self,
        cfg: Config,
        learner: OnlineLearner,
        catalog: Callable[[], Catalog],
        user_state: Callable[[str], tuple[bool, set[str]]],
        text: TextWorker,
        meters: Meters,
        learned_acks: Callable[[], list[float]],
    ) -> None:
        self.cfg = cfg
        self.learner = learner
        self.catalog = catalog
        self.user_state = user_state
        self.text = text
        self.meters = meters
        self.learned_acks = learned_acks
        self._rng = np.random.default_rng()
        self._rng_lock = threading.Lock()
        self._compared = {p.label: p for p in (parse_policy(t) for t in cfg.ope.live_policies)}
        self.ope = LiveEstimates(
            tuple(self._compared.values()),
            tuple(cfg.labels.positive),
            settle_s=cfg.ope.settle_s if cfg.ope.settle_s is not None else cfg.labels.impression_window_s,
            window_requests=cfg.ope.window_requests,
            clip=cfg.ope.clip,
        )

    def recommend(
        self,
        user_id: str,
        k: int,
        *,
        exclude_seen: bool = True,
        candidates: list[str] | None = None,
        context: dict[str, Any] | None = None,
        policy: str | None = None,
        explain: bool = False,
        category: str | None = None,
        exclude: list[str] | None = None,
    ) -> dict[str, Any]:
        """A slate of ``k`` items with the propensity each was shown with.

        A user the learner knows gets the retrieve-and-rank pipeline; a stranger, or a request
        naming its ``candidates``, gets them (or the catalog) scored by the CTR model.
        ``exclude_seen`` leaves out what the user consumed; ``category`` and ``exclude``
        filter; ``explain`` adds each item's sources, feature contributions and features.
        """
        t0 = time.perf_counter()
        sc = self.cfg.serve
        policy = policy or sc.exploration
        known, consumed = self.user_state(user_id)
        # Never shown: what the user consumed (unless exclude_seen is off) and what the request excludes.
        skip = (consumed if exclude_seen else set()) | set(exclude or ())
        catalog = self.catalog()
        learned_seq = int(self.learner.last_seq)
        version = int(self.learner.model_version)
        if self.quick(user_id, candidates):
            request_id, items, explored = self._pipeline(
                user_id, k, exclude_seen, skip, catalog, context, policy, explain, category
            )
            known = True  # the learner knows them: not a cold start, whatever the log says
        else:
            request_id, items, explored = self._scored(
                user_id, k, known, skip, catalog, candidates, context, policy, explain, category
            )
        self._observe(t0, explored)
        return {
            "request_id": request_id,
            "model_version": version,
            "learned_seq": learned_seq,
            "policy": policy,
            "cold_start": not known,
            "items": items,
        }

    def inline(
        self, user_id: str, candidates: list[str] | None, context: dict[str, Any] | None, category: str | None
    ) -> bool:
        """Whether a request is cheap enough to answer on the event loop: a known user's pipeline,
        or a stranger's scan of a small catalog (about 1.6 ms at 1,000 items) with no text to
        encode and no category to look up. Anything else runs on a worker thread, so that it does
        not hold up other requests; on a small catalog, handing it there and back cost more."""
        if self.quick(user_id, candidates):
            return True
        small = len(self.learner.featurizer.items) <= INLINE_SCAN_ITEMS
        return candidates is None and category is None and small and query_text(context) is None

    def quick(self, user_id: str, candidates: list[str] | None) -> bool:
        """Whether the request takes the retrieve-and-rank pipeline: a user the learner knows, no
        named candidates. Its cost is bounded (a few hundred candidates, whatever the catalog) and
        it reads neither the log nor the text encoder, which a stranger's request may run."""
        return candidates is None and self.learner.featurizer.users.get(user_id) is not None

    def _scored(
        self,
        user_id: str,
        k: int,
        known: bool,
        skip: set[str],
        catalog: Catalog,
        candidates: list[str] | None,
        context: dict[str, Any] | None,
        policy: str,
        explain: bool,
        category: str | None,
    ) -> tuple[str, list[dict[str, Any]], int]:
        """A stranger, or named candidates: the CTR model scores them (or the whole catalog)."""
        sc = self.cfg.serve
        if category is not None:
            candidates = self._in_category(category, catalog, candidates)
        if candidates is None:
            # Score everything the model knows in one call (its fast path), then keep the catalog.
            ids, raw, batch = self._score(user_id, None, context)
            in_catalog, index, fresh_all = catalog.view(ids)
            keep = in_catalog.copy()
            if skip:
                for item in list(skip):
                    j = index.get(item)
                    if j is not None:
                        keep[j] = False
            pos = np.flatnonzero(keep)
            # Ids are looked up for the slate only: a list of every candidate id cost ~0.5 ms.
            cand: Sequence[str] = _Picked(ids, pos)
            scores, fresh, model_p = raw[pos], fresh_all[pos], raw[pos]

            def position(item: str) -> int | None:
                j = index.get(item)
                if j is None or not keep[j]:
                    return None
                return int(np.searchsorted(pos, j))
        else:
            cand = [c for c in dict.fromkeys(candidates) if c not in skip]
            fresh = np.array([catalog.bonus(c) for c in cand])
            _, scores, batch = self._score(user_id, cand, context) if cand else ([], np.zeros(0), None)
            pos = np.arange(len(cand))
            model_p = scores
            where = {c: j for j, c in enumerate(cand)}

            def position(item: str) -> int | None:
                return where.get(item)

        request_id = uuid.uuid4().hex
        items: list[dict[str, Any]] = []
        explored = 0
        if len(cand):
            if not known:
                scores = self._cold_scores(cand, position, scores, fresh, context)
            with self._rng_lock:
                slate = select_slate(
                    scores, k, policy=policy, epsilon=sc.epsilon, temperature=sc.temperature, rng=self._rng
                )
            assert slate.position_propensities is not None
            items = [
                {"item_id": cand[j], "score": float(scores[j]), "propensity": float(p), "position_propensity": float(q)}
                for j, p, q in zip(
                    slate.indices.tolist(),
                    slate.propensities.tolist(),
                    slate.position_propensities.tolist(),
                    strict=True,
                )
            ]
            explored = int(slate.explored.sum())
            if batch is not None and len(slate.indices):
                # The features scored for each shown item: learned as they are when the impression comes.
                rows, probs = pos[slate.indices], model_p[slate.indices]
                self.learner.remember_served(request_id, batch, rows, probs)
                if explain:
                    for it, r, p in zip(items, rows.tolist(), probs.tolist(), strict=True):
                        it["sources"] = ["catalog" if candidates is None else "request"]
                        it["features"] = self._features(batch, r, p)
        return request_id, items, explored

    def similar(self, item_id: str, k: int) -> dict[str, Any]:
        """Items like ``item_id`` (see :meth:`rtrec.retrieve.Retrieval.similar`); an unknown id is an error."""
        f = self.learner.featurizer
        j = f.items.get(item_id)
        if j is None:
            raise NotFoundError(f"item_id: {item_id!r} is not a known item", hint="post it to /v1/items first")
        catalog = self.catalog()
        ids = f.items.ids
        out = []
        for i, score, source in self.learner.retrieval.similar(j, 2 * k):
            if not catalog.index or ids[i] in catalog.index:
                out.append({"item_id": ids[i], "score": score, "source": source})
        return {"item_id": item_id, "items": out[:k]}

    def _observe(self, t0: float, explored: int) -> None:
        m = self.meters
        now = time.monotonic()
        for ack in self.learned_acks():
            m.lat_reflected.observe(now - ack)
        m.recommends.inc()
        m.explored.inc(explored)
        m.recommend_rate.mark()
        m.lat_recommend.observe(time.perf_counter() - t0)

    def _in_category(self, category: str, catalog: Catalog, candidates: list[str] | None) -> list[str]:
        """``candidates`` (or every known item) of ``category``."""
        f = self.learner.featurizer
        pool = candidates if candidates is not None else list(f.items.ids)
        member = self.learner.retrieval.in_category(category, len(f.items))
        out = []
        for item in pool:
            j = f.items.get(item)
            if j is not None and j < len(member) and member[j] and (not catalog.index or item in catalog.index):
                out.append(item)
        return out

    def _pipeline(
        self,
        user_id: str,
        k: int,
        exclude_seen: bool,
        skip: set[str],
        catalog: Catalog,
        context: dict[str, Any] | None,
        policy: str,
        explain: bool,
        category: str | None,
    ) -> tuple[str, list[dict[str, Any]], int]:
        """A known user: retrieve candidates from every source, rank them, explore, log propensities."""
        learner = self.learner
        f = learner.featurizer
        excl = [j for j in (f.items.get(i) for i in skip) if j is not None]
        hist = learner.retrieval.history(f.users.get(user_id)) if exclude_seen else np.zeros(0, np.int64)
        ranked = pipeline.rank(
            learner,
            user_id,
            learner.clock(),
            exclude=np.concatenate([np.asarray(excl, np.int64), hist]),
            category=category,
            context=context,
            consumed=False,  # in skip already
            at_least=k,
        )
        request_id = uuid.uuid4().hex
        items: list[dict[str, Any]] = []
        explored = 0
        if ranked is not None and len(ranked.cands):
            ids = f.items.ids
            rows = np.arange(len(ranked.cands))
            if catalog.index:  # items named by events but never posted to the catalog are not served
                known = catalog.view(ids)[0]
                cand = ranked.cands.items
                rows = rows[(cand < len(known)) & known[np.minimum(cand, len(known) - 1)]]
            scores = ranked.scores[rows]
            sc = self.cfg.serve
            # Thompson: an item's score is as uncertain as its examples are few.
            unc = item_uncertainty(ranked.batch.item_n[rows])
            sigma = sc.temperature * unc if policy == "thompson" else None
            with self._rng_lock:
                slate = select_slate(
                    scores, k, policy=policy, epsilon=sc.epsilon, temperature=sc.temperature, sigma=sigma, rng=self._rng
                )
            assert slate.position_propensities is not None
            chosen = rows[slate.indices]
            at_position = slate.position_propensities.tolist()
            contrib = learner.rankers[learner.main].contributions(ranked.x[chosen]) if explain else None
            for n, (r, p) in enumerate(zip(chosen.tolist(), slate.propensities.tolist(), strict=True)):
                it: dict[str, Any] = {
                    "item_id": ids[ranked.cands.items[r]],
                    "score": float(ranked.scores[r]),
                    "propensity": float(p),
                    "position_propensity": float(at_position[n]),
                }
                sources = ranked.cands.sources_of(r)
                for s in sources:
                    self.meters.from_source[s].inc()
                if explain:
                    assert contrib is not None
                    it["sources"] = sources
                    it["probability"] = float(ranked.probs[r])
                    it["contributions"] = {
                        name: float(v) for name, v in zip(FEATURES, contrib[n].tolist(), strict=True) if v
                    }
                    # Raised into the list as its cold slot (retrieve.cold_slots): the score is not the sum.
                    it["cold_slot"] = bool(abs(float(contrib[n].sum()) - it["score"]) > 1e-9)
                    it["features"] = self._features(ranked.batch, r, float(ranked.probs[r]))
                items.append(it)
            explored = int(slate.explored.sum())
            if len(chosen):
                learner.remember_served(request_id, ranked.batch, chosen, ranked.probs[chosen])
                self._record(
                    request_id, [it["item_id"] for it in items], slate, scores, ranked.probs[rows], policy, unc
                )
        return request_id, items, explored

    def _record(
        self,
        request_id: str,
        item_ids: list[str],
        slate: Slate,
        scores: np.ndarray,
        probs: np.ndarray,
        policy: str,
        uncertainty: np.ndarray,
    ) -> None:
        """Keep what the live off-policy estimates need of this list (see :mod:`rtrec.ope.live`).

        Bookkeeping only: a failure here is logged and the list is still served.
        """
        try:
            specs = {LIVE: PolicySpec.served(policy, self.cfg.serve), **self._compared}
            terms = policy_terms(specs, scores, probs, slate.indices, uncertainty=uncertainty)
            terms[LIVE] = (slate.propensities, terms[LIVE][1])  # exactly what was logged: weight 1
            self.ope.served(request_id, item_ids, slate.propensities, probs[slate.indices], terms)
        except Exception as exc:
            log.warning("live off-policy bookkeeping failed for one list: %s", exc)

    def _features(self, batch: Any, r: int, p: float) -> dict[str, Any]:
        names = self.learner.featurizer.dense_names
        return {
            "hashed": batch.indices[batch.offsets[r] : batch.offsets[r + 1]].tolist(),
            "dense": dict(zip(names, batch.dense[r].tolist(), strict=True)),
            "model_probability": p,
        }

    def _score(
        self, user_id: str, items: list[str] | None, context: dict[str, Any] | None
    ) -> tuple[list[str], np.ndarray, Any]:
        ids, scores, batch = self.learner.score_batch(user_id, items, context)
        return list(ids), np.asarray(scores, dtype=np.float64).reshape(-1), batch

    def _cold_scores(
        self,
        cand: Sequence[str],
        position: Callable[[str], int | None],
        model: np.ndarray,
        fresh: np.ndarray | None,
        context: dict[str, Any] | None,
    ) -> np.ndarray:
        """Unknown user: blend the model's item prior with popularity, freshness and text similarity.

        ``position`` gives an item's index in ``cand`` (None when not a candidate).
        """
        n = len(cand)
        pop = np.zeros(n)
        popular = self.learner.popular(min(n, 200))
        for r, item in enumerate(popular):
            j = position(item)
            if j is not None and pop[j] == 0.0:  # the first (best) rank of an id wins
                pop[j] = 1.0 - r / len(popular)
        parts = [(0.5, model), (0.3, pop)]
        if fresh is not None:
            parts.append((0.2, fresh))
        text = query_text(context)
        if text:
            sim = self.text.similarity(text, cand)
            if sim is not None:
                parts.append((0.4, sim))
        total = sum(w for w, _ in parts)
        return np.asarray(sum(w * v for w, v in parts) / total, dtype=np.float64)


def query_text(context: dict[str, Any] | None) -> str | None:
    """The request's query text (``text``, ``query`` or ``q`` of its context), which a stranger's
    list is matched against through the text encoder."""
    if not context:
        return None
    return next((context[k] for k in ("text", "query", "q") if isinstance(context.get(k), str)), None)


class _Picked(Sequence[str]):
    """``ids[pos[j]]`` for each ``j``, without building the list."""

    def __init__(self, ids: list[str], pos: np.ndarray) -> None:
        self._ids, self._pos = ids, pos

    def __len__(self) -> int:
        return len(self._pos)

    def __getitem__(self, j: Any) -> Any:
        if isinstance(j, slice):
            return [self._ids[p] for p in self._pos[j].tolist()]
        return self._ids[int(self._pos[j])]
