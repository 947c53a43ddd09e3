"""The ranker: scores a user's candidates, picks the slate with the exploration policy, logs propensities.

It only reads: the model (while it learns), the current catalog snapshot and the user's
state. The features it scored for each shown item are handed to the learner, which learns
them as they are when the impression comes back with the slate's ``request_id``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec.config import Config
from rtrec.serve.catalog import Catalog
from rtrec.serve.metrics import Meters
from rtrec.serve.policy import select_slate
from rtrec.serve.text_worker import TextWorker

if TYPE_CHECKING:
    from rtrec.learn import OnlineLearner

__all__ = ["Ranker"]


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

    def recommend(
        self,
        user_id: str,
        k: int,
        exclude_seen: bool,
        candidates: list[str] | None,
        context: dict[str, Any] | None,
        policy: str | None,
        explain: bool = False,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        sc = self.cfg.serve
        policy = policy or sc.exploration
        known, seen = self.user_state(user_id)
        catalog = self.catalog()
        learned_seq = int(self.learner.last_seq)
        version = int(self.learner.model_version)
        if candidates is None:
            # Score everything the model knows in one call (its fast path), then keep the catalog.
            ids, raw, batch = self._score(user_id, None, context)
            in_catalog, index, fresh_all = catalog.view(ids)
            keep = in_catalog.copy()
            if exclude_seen and seen:
                for item in list(seen):
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
            cand = [c for c in dict.fromkeys(candidates) if not (exclude_seen and c in seen)]
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
            items = [
                {"item_id": cand[j], "score": float(scores[j]), "propensity": float(p)}
                for j, p in zip(slate.indices.tolist(), slate.propensities.tolist(), strict=True)
            ]
            explored = int(slate.explored.sum())
            if batch is not None and len(slate.indices):
                # The features scored for each shown item: learned as they are when the impression comes.
                rows, probs = pos[slate.indices], model_p[slate.indices]
                self.learner.remember_served(request_id, batch, rows, probs)
                if explain:
                    names = self.learner.featurizer.dense_names
                    for it, r, p in zip(items, rows.tolist(), probs.tolist(), strict=True):
                        it["features"] = {
                            "hashed": batch.indices[batch.offsets[r] : batch.offsets[r + 1]].tolist(),
                            "dense": dict(zip(names, batch.dense[r].tolist(), strict=True)),
                            "model_probability": p,
                        }
        m = self.meters
        now = time.monotonic()
        for ack in self.learned_acks():
            m.lat_reflected.observe(now - ack)
        m.recommends.inc()
        m.explored.inc(explored)
        m.recommend_rate.mark()
        m.lat_recommend.observe(time.perf_counter() - t0)
        return {
            "request_id": request_id,
            "model_version": version,
            "learned_seq": learned_seq,
            "policy": policy,
            "cold_start": not known,
            "items": items,
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
        text = None
        if context:
            text = next((context[k] for k in ("text", "query", "q") if isinstance(context.get(k), str)), None)
        if text:
            sim = self.text.similarity(text, cand)
            if sim is not None:
                parts.append((0.4, sim))
        total = sum(w for w, _ in parts)
        return np.asarray(sum(w * v for w, v in parts) / total, dtype=np.float64)


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
