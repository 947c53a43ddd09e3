"""Candidate sources, updated by the learn step, read by the ranker.

Four sources each propose items for a user, best first:

- ``covisit``: items co-visited with the user's recent engaged items (time-decayed,
  bounded neighbour lists, in Rust: :class:`rtrec._native.CoVisitation`);
- ``content``: items whose text embedding is closest to the user's interest vector and to
  the mean of the items the user just engaged with (a new item is reached by its text);
- ``trending``: decayed popularity, overall and within the user's categories;
- ``fresh``: under-exposed items, the newest first, then a random draw.

:meth:`Retrieval.retrieve` merges and deduplicates them (a few hundred items) and
:meth:`Retrieval.features` describes each candidate for the ranker. Reads never change state;
:meth:`Retrieval.observe` (the learn step, one writer) does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec import _native
from rtrec.config import RetrieveConfig
from rtrec.retrieve.arrays import SMALL, top_k, unique, unit_or_none
from rtrec.sets import add_pairs, load_item_sets

if TYPE_CHECKING:
    from rtrec.learn.featurize import Featurizer

__all__ = ["FEATURES", "SOURCES", "Candidates", "Retrieval", "UserView"]

SOURCES = ("covisit", "content", "trending", "fresh")
# What the ranker reads of each candidate (see :meth:`Retrieval.features`); the CTR model's
# logit is filled in by the caller, which scores the candidates with it.
FEATURES = (
    "covisit",
    "content_user",
    "content_recent",
    "trending",
    "trending_category",
    "category_affinity",
    "ctr_logit",
    "popularity",
    "cold",
    # A cold item has little co-visitation or popularity to go by: how much its text and its
    # few co-visits should count is learned apart.
    "cold_content",
    "cold_covisit",
    *(f"from_{s}" for s in SOURCES),
)
TEXT_FEATURES = ("content_user", "content_recent", "cold_content", "from_content")
_COLUMN = {name: k for k, name in enumerate(FEATURES)}
FROM = _COLUMN[f"from_{SOURCES[0]}"]
CTR = FEATURES.index("ctr_logit")
COLD = FEATURES.index("cold")
RECENT = 5  # history items whose mean embedding the content source also queries with
_RESCALE = 2.0**40


@dataclass
class UserView:
    """What the sources read of one user at one moment: taken once per request, for retrieval and ranking."""

    user: int | None
    history: np.ndarray  # recent engaged items, oldest first
    q_user: np.ndarray | None  # unit interest vector (text)
    q_recent: np.ndarray | None  # unit mean of the last RECENT engaged items (text)
    categories: dict[str, float]  # share of the recent engaged items in each category


@dataclass
class Candidates:
    """Merged candidates of one request: item indices, which sources proposed each, the
    sources' own ranked lists (kept for evaluating each source alone) and the user view."""

    items: np.ndarray  # int64, deduplicated, in the order first proposed
    mask: np.ndarray  # uint8, bit k set when SOURCES[k] proposed the item
    lists: dict[str, np.ndarray]
    view: UserView

    def __len__(self) -> int:
        return len(self.items)

    def sources_of(self, row: int) -> list[str]:
        m = int(self.mask[row])
        return [s for k, s in enumerate(SOURCES) if m >> k & 1] or ["catalog"]


class Retrieval:
    """The candidate sources' state (one writer: :meth:`observe`) and their read paths."""

    def __init__(
        self,
        cfg: RetrieveConfig,
        featurizer: Featurizer,
        *,
        cold_below: int = 5,
        seed: int = 0,
        items_per_user: int = 0,
    ) -> None:
        self.cfg = cfg
        self.f = featurizer
        self.cold_below = cold_below
        half = cfg.covisit_half_life_s if cfg.covisit_half_life_s > 0 else math.inf
        self.covisit = _native.CoVisitation(cfg.max_neighbours, cfg.history, half)
        # Decayed popularity at one reference time: an event at ``t`` adds 2^((t - t_ref) / half).
        self._trend: tuple[np.ndarray, float | None] = (np.zeros(0, np.float64), None)  # (counts, t_ref)
        self.count = np.zeros(0, np.float32)  # all-time positives per item
        # user -> items with an example so far, in stream order (the exclusions of the
        # ranking evaluation and of the rankers' training, which run inside a learn step).
        self.interacted = _native.ItemSets(items_per_user)
        self.version = 0  # bumped once per learn chunk (the top lists are rebuilt then, not per event)
        self._top: tuple[tuple[int, int], np.ndarray, dict[str, np.ndarray]] | None = None
        self._fresh_pool = np.zeros(0, np.int64)
        self._ann: Any = None  # IVFIndex over the item text, on large catalogs
        self._rng = np.random.default_rng(seed)

    # -- the learn step ---------------------------------------------------------------------
    def forget_user(self, user: int) -> None:
        """Drop a user's history and interactions (the co-visitation pairs they made stay)."""
        self.covisit.forget_user(user)
        self.interacted.remove(user)

    def observe(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray, engaged: np.ndarray) -> None:
        """Fold resolved examples (stream order, ``ts`` in epoch s) into every source: the ``engaged`` ones
        (positives, ratings of any value), not a showing; every example marks its item as interacted with."""
        add_pairs(self.interacted, users, items)
        pos = np.asarray(engaged, bool)
        if not pos.any():
            return
        users, items, ts = users[pos].astype(np.int64), items[pos].astype(np.int64), ts[pos].astype(np.float64)
        self._grow(int(items.max()) + 1)
        self.covisit.observe(users, items, ts, np.ones(len(items), np.float32))
        trend, t_ref = self._trend
        if t_ref is None:
            t_ref = float(ts.min())
        half = self.cfg.trending_half_life_s
        scale = self._trend_weight(ts, t_ref)
        if scale.max() > _RESCALE:
            # A new array: readers hold the old one with its own reference time until the swap.
            t_new = float(ts.max())
            trend = trend * float(np.exp2(max(-(t_new - t_ref) / half, -1000.0)))
            t_ref = t_new
            scale = np.exp2((ts - t_ref) / half)
        np.add.at(trend, items, scale)
        np.add.at(self.count, items, 1.0)
        self._trend = (trend, t_ref)

    def retract(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray) -> None:
        """Take back engagements (a judged bot's, a forgotten user's; oldest first): pairs, trending, all-time."""
        for u in np.unique(users).tolist():
            self.covisit.retract(u, items[users == u].astype(np.int64), ts[users == u].astype(np.float64))
        trend, t_ref = self._trend
        ok = items < len(trend)
        if t_ref is None or not ok.any():
            return
        items, ts = items[ok], ts[ok]
        np.subtract.at(trend, items, self._trend_weight(ts, t_ref))
        np.subtract.at(self.count, items, 1.0)
        np.maximum(trend, 0.0, out=trend)
        np.maximum(self.count, 0.0, out=self.count)
        self.version += 1  # the trending tops are rebuilt

    def _trend_weight(self, ts: np.ndarray, t_ref: float) -> np.ndarray:
        """What a positive at ``ts`` adds to the trending counts kept at reference time ``t_ref``."""
        return np.exp2(np.minimum((ts - t_ref) / self.cfg.trending_half_life_s, 1000.0))

    def commit(self) -> None:
        """The end of a learn chunk: the lists derived from the sources (trending tops) are rebuilt
        now, by the learner, so that no recommend request pays for it (linear in the catalog)."""
        self.version += 1
        self._tops()

    def _grow(self, n: int) -> None:
        trend, t_ref = self._trend
        if n > len(trend):
            size = max(n, int(len(trend) * 1.5) + 16)
            self._trend = (np.concatenate([trend, np.zeros(size - len(trend))]), t_ref)
            self.count = np.concatenate([self.count, np.zeros(size - len(self.count), np.float32)])

    # -- reads -------------------------------------------------------------------------------
    def trending_now(self, items: np.ndarray, now: float) -> np.ndarray:
        """Decayed positive count of ``items`` as of ``now`` (epoch seconds)."""
        out = np.zeros(len(items))
        trend, t_ref = self._trend
        if t_ref is None:
            return out
        ok = items < len(trend)
        out[ok] = trend[items[ok]] * float(
            np.exp2(np.clip(-(now - t_ref) / self.cfg.trending_half_life_s, -1000, 1000))
        )
        return out

    def _tops(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Items by decayed popularity, overall and per category, and the under-exposed items
        (rebuilt once per learn chunk, in time linear in the catalog)."""
        top = self._top
        key = (self.version, len(self.f.items))  # new catalog items join the fresh pool at once
        if top is not None and top[0] == key:
            return top[1], top[2]
        trend = self._trend[0]
        n = min(len(self.f.items), len(trend), len(self.f.category))
        per = self.cfg.per_source
        # The categories' leaders are among the overall leaders, for all but the smallest categories.
        m = min(n, per * 50)
        head = np.argpartition(-trend[:n], m - 1)[:m] if 0 < m < n else np.arange(n)
        order = head[np.argsort(-trend[head], kind="stable")]
        order = order[trend[order] > 0]
        overall = order[:per]
        cats: dict[str, list[int]] = {}
        category = self.f.category
        for i in order.tolist():
            c = category[i]
            if c is None:
                continue
            lst = cats.setdefault(c, [])
            if len(lst) < per:
                lst.append(i)
        by_cat = {c: np.array(v, np.int64) for c, v in cats.items()}
        count = np.zeros(n, np.float32)
        k = min(n, len(self.count))
        count[:k] = self.count[:k]
        self._fresh_pool = np.flatnonzero(count < self.cfg.fresh_below)
        self._top = (key, overall, by_cat)
        return overall, by_cat

    def history(self, user: int | None) -> np.ndarray:
        return self.covisit.history(user) if user is not None and user >= 0 else np.zeros(0, np.int64)

    def user_categories(self, hist: np.ndarray) -> dict[str, float]:
        """Share of the user's recent engaged items in each category."""
        out: dict[str, float] = {}
        cats = self.f.category
        for i in hist.tolist():
            c = cats[i] if i < len(cats) else None
            if c is not None:
                out[c] = out.get(c, 0.0) + 1.0 / len(hist)
        return out

    def in_category(self, category: str, n: int) -> np.ndarray:
        """Which of the first ``n`` items belong to ``category``."""
        return np.asarray(np.array(self.f.category[:n], dtype=object) == category, bool)

    def _unit_text(self) -> np.ndarray | None:
        """Unit-length centred item embeddings (zero rows: no text); None without text."""
        return self.f.unit_text() if self.f.text_dim else None

    def view(self, user: int | None) -> UserView:
        """The user as the sources see them now (``None``: a stranger)."""
        hist = self.history(user)
        unit = self._unit_text()
        q_user = q_recent = None
        if unit is not None:
            if user is not None and 0 <= user < len(self.f.user_vec):
                q_user = unit_or_none(self.f.user_vec[user])
            recent = hist[-RECENT:]
            recent = recent[recent < len(unit)]
            if len(recent):
                q_recent = unit_or_none(unit[recent].mean(axis=0))
        return UserView(user, hist, q_user, q_recent, self.user_categories(hist))

    def retrieve(
        self,
        user: int | None,
        now: float,
        exclude: np.ndarray,
        *,
        category: str | None = None,
        text: bool = True,
        at_least: int = 0,
    ) -> Candidates:
        """Each source's best items for ``user`` (an index, or None for a stranger), merged.

        ``exclude`` (item indices) never comes back; with ``category``, only items of that
        category do. When the sources hold fewer than ``at_least`` items, the rest of the
        catalog fills in, most engaged first (no source bit: ``catalog`` in explanations).
        """
        per = self.cfg.per_source
        # Arrays grow while requests read them (the learner registers items first): read a prefix all hold.
        n_items = min(len(self.f.items), len(self.f.category), len(self.f.has_text) if self.f.text_dim else 1 << 62)
        view = self.view(user)
        hist = view.history
        skip = np.zeros(n_items + 1, bool)
        ex = np.asarray(exclude, np.int64)
        skip[ex[(ex >= 0) & (ex < n_items)]] = True
        if category is not None:
            skip[:n_items] |= ~self.in_category(category, n_items)
        lists: dict[str, np.ndarray] = {}
        if user is not None and len(hist):
            ids, _ = self.covisit.recommend(user, per * 2 if category else per, None)
            ids = ids[ids < n_items]
            lists["covisit"] = ids[~skip[ids]][:per]
        if text:
            unit = self._unit_text()
            queries = [v for v in (view.q_user, view.q_recent) if v is not None]
            if unit is not None and queries:
                # Similarity to both queries summed is similarity to their sum.
                q = sum(queries)
                lists["content"] = self._nearest(unit, np.asarray(q, np.float32), per, skip, n_items)
        overall, by_cat = self._tops()
        if category is not None:
            trend = by_cat.get(category, np.zeros(0, np.int64))
        else:
            parts = [overall]
            for c, _share in sorted(view.categories.items(), key=lambda kv: -kv[1])[:2]:
                parts.append(by_cat.get(c, np.zeros(0, np.int64))[: per // 2])
            trend = unique(np.concatenate(parts))
        trend = trend[trend < n_items]
        lists["trending"] = trend[~skip[trend]][: per * 2]
        if self.cfg.fresh:
            lists["fresh"] = self._fresh(n_items, skip)
        order = [s for s in SOURCES if s in lists]
        allc = np.concatenate([lists[s] for s in order]) if order else np.zeros(0, np.int64)
        items = unique(allc.astype(np.int64))
        if len(items) < at_least:
            free = ~skip[:n_items]
            free[items] = False
            rest = np.flatnonzero(free)
            count = np.zeros(len(rest), np.float32)
            ok = rest < len(self.count)
            count[ok] = self.count[rest[ok]]
            rest = rest[np.argsort(-count, kind="stable")][: at_least - len(items)]
            items = np.concatenate([items, rest.astype(np.int64)])
        mask = np.zeros(len(items), np.uint8)
        if len(items) <= SMALL:
            place = {item: k for k, item in enumerate(items.tolist())}
            for s in order:
                mask[[place[i] for i in lists[s].tolist()]] |= np.uint8(1 << SOURCES.index(s))
        else:
            by_id = np.argsort(items, kind="stable")
            for s in order:
                at = by_id[np.searchsorted(items[by_id], lists[s])]
                mask[at] |= np.uint8(1 << SOURCES.index(s))
        return Candidates(items=items, mask=mask, lists=lists, view=view)

    def _nearest(self, unit: np.ndarray, q: np.ndarray, k: int, skip: np.ndarray, n_items: int) -> np.ndarray:
        """The ``k`` items with text nearest ``q``: exact, or through the IVF index on large catalogs
        (items added since it was built are searched exactly)."""
        n = min(n_items, len(unit), len(self.f.has_text))
        index = self._ann
        if index is not None and index.n <= n:
            rows, sims = index.search(q, k, self.cfg.ann_probe, skip)  # it holds only rows with text
            tail = np.arange(index.n, n)
            if len(tail):
                tail = tail[~skip[tail] & self.f.has_text[tail]]
                rows = np.concatenate([rows, tail])
                sims = np.concatenate([sims, unit[tail] @ q])
            return rows[np.argsort(-sims, kind="stable")[:k]].astype(np.int64)
        sims = unit[:n] @ q
        sims[skip[:n] | ~self.f.has_text[:n]] = -np.inf
        return top_k(sims, k)

    def reindex(self) -> bool:
        """Build the IVF index over the current text embeddings when the catalog is large
        (``retrieve.ann_above`` items with text); returns whether one was built. Call it from
        the thread that changed the embeddings: it takes seconds at a million items, and
        readers keep the exact search (or the previous index) meanwhile."""
        unit = self._unit_text()
        n = min(len(self.f.items), len(self.f.has_text))
        if unit is None or int(self.f.has_text[:n].sum()) < self.cfg.ann_above:
            self._ann = None
            return False
        from rtrec.retrieve.ann import IVFIndex

        self._ann = IVFIndex(unit[:n])
        return True

    def _fresh(self, n_items: int, skip: np.ndarray) -> np.ndarray:
        """Under-exposed items: the newest, then a random draw (work bounded by ``fresh``, not the catalog)."""
        self._tops()  # the pool of under-exposed items is rebuilt with the top lists
        pool = self._fresh_pool
        pool = pool[pool < n_items]
        if not len(pool) or not self.cfg.fresh:
            return np.zeros(0, np.int64)
        half = self.cfg.fresh // 2
        recent = pool[-4 * half :][::-1] if half else pool[:0]
        newest = recent[~skip[recent]][:half]
        want = self.cfg.fresh - len(newest)
        draw = unique(pool[self._rng.integers(len(pool), size=4 * want)])
        taken = set(newest.tolist())
        draw = draw[~skip[draw] & np.array([d not in taken for d in draw.tolist()], bool)][:want]
        return np.concatenate([newest, draw]).astype(np.int64)

    def features(self, cands: Candidates, now: float) -> np.ndarray:
        """One row per candidate, one column per :data:`FEATURES` (``ctr_logit`` left at 0),
        for the user the candidates were retrieved for (``cands.view``)."""
        items, view = cands.items, cands.view
        n = len(items)
        x = np.zeros((n, len(FEATURES)), np.float32)
        if not n:
            return x
        col = _COLUMN
        if view.user is not None and len(view.history):
            x[:, col["covisit"]] = np.log1p(100.0 * self.covisit.score(view.user, items))
        unit = self._unit_text()
        if unit is not None:
            ok = items < len(unit)
            rows = unit[items[ok]]
            if view.q_user is not None:
                x[ok, col["content_user"]] = rows @ view.q_user.astype(np.float32)
            if view.q_recent is not None:
                x[ok, col["content_recent"]] = rows @ view.q_recent.astype(np.float32)
        x[:, col["trending"]] = np.log1p(self.trending_now(items, now))
        if view.categories:
            cats = self.f.category
            x[:, col["category_affinity"]] = [
                view.categories.get(cats[i], 0.0) if i < len(cats) and cats[i] is not None else 0.0
                for i in items.tolist()
            ]
            x[:, col["trending_category"]] = x[:, col["trending"]] * x[:, col["category_affinity"]]
        count = np.zeros(n, np.float32)
        ok = items < len(self.count)
        count[ok] = self.count[items[ok]]
        x[:, col["popularity"]] = np.log1p(count)
        cold = x[:, col["cold"]] = count < self.cold_below
        x[:, col["cold_content"]] = cold * np.maximum(x[:, col["content_user"]], x[:, col["content_recent"]])
        x[:, col["cold_covisit"]] = cold * x[:, col["covisit"]]
        for k in range(len(SOURCES)):
            x[:, FROM + k] = (cands.mask >> k) & 1
        return x

    def similar(self, item: int, k: int) -> list[tuple[int, float, str]]:
        """Items like ``item``: co-visitation neighbours blended with text neighbours, best first."""
        ids, sims = self.covisit.neighbours(item, 4 * k)
        score: dict[int, list[float]] = {}
        if len(sims):
            top = float(sims.max()) or 1.0
            for i, s in zip(ids.tolist(), sims.tolist(), strict=True):
                score[i] = [s / top, 0.0]
        f = self.f
        if f.text_dim and item < len(f.nbr_idx) and f.has_text[item]:
            for i, s in zip(f.nbr_idx[item].tolist(), f.nbr_sim[item].tolist(), strict=True):
                if s > 0 and i != item:
                    score.setdefault(i, [0.0, 0.0])[1] = s
        if f.text_dim and not any(tx for _, tx in score.values()):
            # No precomputed text neighbours (a large catalog, or an item newer than them): search.
            unit = self._unit_text()
            n = min(len(f.items), len(f.has_text))
            if unit is not None and item < min(n, len(unit)) and f.has_text[item]:
                skip = np.zeros(n + 1, bool)
                skip[item] = True
                for i in self._nearest(unit, unit[item], k, skip, n).tolist():
                    score.setdefault(i, [0.0, 0.0])[1] = max(float(unit[i] @ unit[item]), 1e-6)
        out = []
        for i, (cv, tx) in score.items():
            if i == item or i >= len(f.items):
                continue
            source = "covisit+text" if cv > 0 and tx > 0 else ("covisit" if cv > 0 else "text")
            out.append((i, cv + 0.5 * tx, source))
        out.sort(key=lambda r: (-r[1], r[0]))
        return out[:k]

    # -- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "covisit": self.covisit.state(),
            "trend": self._trend[0].copy(),
            "t_ref": self._trend[1],
            "count": self.count.copy(),
            "version": self.version,
            "interacted": self.interacted.to_flat(),
        }

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.covisit = _native.CoVisitation.from_state(s["covisit"])
        self._trend, self.count = (s["trend"], s["t_ref"]), s["count"]
        self.version = int(s["version"]) + 1
        self.interacted = load_item_sets(s["interacted"], self.interacted.max_per_user)
        self._top = None
