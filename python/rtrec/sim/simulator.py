"""The simulator: a synthetic catalog, users with latent topic tastes, a known click model and shifts.

Ground truth: user ``u`` clicks item ``i`` shown at time ``t`` with probability
``sigmoid(base_logit + affinity_scale * pref[u, topic(i)] * fashion[topic(i)]
+ style_scale * style_pref[u, style(i)] + quality[i])``, where ``pref`` (a user's topic mix)
and ``fashion`` (per topic, 1 or ``fade_factor``) change at the configured shift times: some
users switch to other topics, some topics go out of fashion. With ``n_styles > 0`` every item
also has a style that shows only in its title and description, users have a taste over
styles, and the users who switch topic switch style too; the category and tags never name
the style, so only a model that reads the text sees it.
The logging policy that made the impression slates is stale on purpose (it uses the users'
tastes before any shift) and records the propensity of every shown item.

With ``bot_share`` or ``noise_share`` above zero the stream also carries bots and noise (see
``rtrec.sim.adversaries``); the real users' events stay exactly the same rows, and every injected
event names its kind in its JSON context (``"truth": "bot"`` or ``"truth": "noise"``).

>>> sim = Simulator(SimConfig(n_users=20, n_items=30, n_events=500))
>>> events = sim.generate()
>>> events.num_rows, sorted(set(events.column("event_type").to_pylist()))[:2]
(500, ['add_to_cart', 'click'])
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rtrec.errors import InvalidInputError
from rtrec.sim.adversaries import Adversaries, EventCounts
from rtrec.sim.policy import DEVICE_P, DEVICES, LoggingPolicy
from rtrec.sim.vocab import ADJECTIVES, FILLER, STYLES, topic_vocab

__all__ = ["EventCounts", "SimConfig", "Simulator"]


@dataclass(frozen=True)
class SimConfig:
    """Size, timeline and behaviour of a simulated world. The defaults run in well under a second."""

    n_users: int = 200
    n_items: int = 300
    n_topics: int = 6
    n_events: int = 20_000
    seed: int = 0
    start: str = "2024-01-01T00:00:00"  # UTC
    request_interval_s: float = 20.0  # mean time between two requests (slates)
    slate_size: int = 5  # impressions per request
    shift_at: tuple[float, ...] = (0.5,)  # shift times, as fractions of the simulated timeline
    switch_fraction: float = 0.3  # users who switch to another topic at each shift
    fade_topics: int = 1  # topics that go out of fashion at each shift
    fade_factor: float = 0.1
    base_logit: float = -3.0
    affinity_scale: float = 5.0
    quality_sd: float = 0.5
    taste_concentration: float = 0.3  # Dirichlet alpha of the users' topic mixes (small: focused users)
    explore: float = 0.3  # share of uniformly random items in the logging policy's slates
    click_delay_s: float = 30.0
    late_click_prob: float = 0.02  # clicks that come after the impression window
    impression_window_s: float = 300.0  # rtrec's default window: late clicks come after it
    cart_prob: float = 0.2  # after a click
    purchase_prob: float = 0.3  # after an add_to_cart
    dismiss_prob: float = 0.02  # of shown, unclicked items
    n_styles: int = 0  # text-only item styles (0: none; at most 8)
    style_scale: float = 3.0
    style_concentration: float = 0.3  # Dirichlet alpha of the users' style mixes
    bot_share: float = 0.0  # share of all output events that come from bot users (context truth "bot")
    noise_share: float = 0.0  # extra noise events, as a share of the real users' events (context truth "noise")
    events_per_bot: int = 50  # bot events / bot users, roughly (at most n_users / 5 bots): how long a bot lives
    bot_bandwagon: float = 0.5  # share of a promoter's burst that clicks popular items, to tie its targets to them
    bot_crawlers: float = 0.0  # share of the bot events that come from crawlers (the rest: promoters and spammers)

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_topics", "n_events", "slate_size"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"simulator {name}: must be at least 1, got {getattr(self, name)}")
        if self.n_items < self.n_topics:
            raise InvalidInputError(f"simulator n_items: must be at least n_topics ({self.n_topics})")
        if any(not 0.0 < f < 1.0 for f in self.shift_at):
            raise InvalidInputError(f"simulator shift_at: fractions must be in (0, 1), got {self.shift_at}")
        for name in (
            "switch_fraction",
            "explore",
            "late_click_prob",
            "cart_prob",
            "purchase_prob",
            "dismiss_prob",
            "bot_bandwagon",
            "bot_crawlers",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInputError(f"simulator {name}: must be in [0, 1], got {getattr(self, name)}")
        if self.request_interval_s <= 0:
            raise InvalidInputError("simulator request_interval_s: must be positive")
        if not 0 <= self.n_styles <= len(STYLES):
            raise InvalidInputError(f"simulator n_styles: must be in [0, {len(STYLES)}], got {self.n_styles}")
        for name in ("bot_share", "noise_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InvalidInputError(f"simulator {name}: must be in [0, 1), got {getattr(self, name)}")
        if self.events_per_bot < 1:
            raise InvalidInputError(f"simulator events_per_bot: must be at least 1, got {self.events_per_bot}")


class Simulator:
    """A deterministic (given ``cfg.seed``) synthetic world; see the module docstring."""

    def __init__(self, cfg: SimConfig | None = None) -> None:
        self.cfg = cfg = cfg if cfg is not None else SimConfig()
        rng = np.random.default_rng(cfg.seed)
        self._start_us = int(datetime.fromisoformat(cfg.start).replace(tzinfo=UTC).timestamp() * 1e6)
        self.topics = [name for name, _ in topic_vocab(cfg.n_topics)]
        self._vocab = [words for _, words in topic_vocab(cfg.n_topics)]
        U, n_items, T = cfg.n_users, cfg.n_items, cfg.n_topics
        # Every topic gets at least one item.
        self.item_topic = np.concatenate([np.arange(T), rng.integers(0, T, n_items - T)]).astype(np.int64)
        rng.shuffle(self.item_topic)
        self.quality = rng.normal(0.0, cfg.quality_sd, n_items)
        self.price = np.round(rng.lognormal(3.0, 0.6, n_items), 2)
        self.activity = rng.lognormal(0.0, 0.8, U)
        self.activity /= self.activity.sum()
        self._n_requests = max(1, math.ceil(cfg.n_events / cfg.slate_size))
        duration_us = int(self._n_requests * cfg.request_interval_s * 1e6)
        self._shift_us = np.array(sorted(self._start_us + int(f * duration_us) for f in cfg.shift_at), dtype=np.int64)
        # Tastes and fashion per epoch (epoch e lies between shift e-1 and shift e).
        pref = rng.dirichlet(np.full(T, cfg.taste_concentration), U)
        fashion = np.ones(T)
        self._prefs = [pref]
        self._fashion = [fashion]
        self.switched: list[np.ndarray] = []
        self.faded: list[np.ndarray] = []
        for _ in self._shift_us:
            pref = pref.copy()
            movers = np.flatnonzero(rng.random(U) < cfg.switch_fraction) if T > 1 else np.array([], np.int64)
            for u in movers:
                pref[u] = np.roll(pref[u], int(rng.integers(1, T)))
            fresh = np.flatnonzero(fashion == 1.0)
            fade = rng.choice(fresh, size=min(cfg.fade_topics, max(len(fresh) - 1, 0)), replace=False)
            fashion = fashion.copy()
            fashion[fade] *= cfg.fade_factor
            self._prefs.append(pref)
            self._fashion.append(fashion)
            self.switched.append(movers)
            self.faded.append(np.sort(fade))
        self._policy = LoggingPolicy(cfg, self.item_topic)
        # Styles draw from their own stream, so a world without them is the same as before they existed.
        S = max(cfg.n_styles, 1)
        srng = np.random.default_rng([cfg.seed, 4])
        self.item_style = srng.integers(0, S, n_items) if cfg.n_styles else np.zeros(n_items, np.int64)
        spref = srng.dirichlet(np.full(S, cfg.style_concentration), U) if cfg.n_styles else np.zeros((U, 1))
        self._style_prefs = [spref]
        for movers in self.switched:
            spref = spref.copy()
            for u in movers:
                spref[u] = np.roll(spref[u], int(srng.integers(1, S))) if S > 1 else spref[u]
            self._style_prefs.append(spref)
        self._user_ids = [f"u{k}" for k in range(U)]
        self._item_ids = [f"i{k}" for k in range(n_items)]
        self._user_index = {u: k for k, u in enumerate(self._user_ids)}
        self._item_index = {i: k for k, i in enumerate(self._item_ids)}
        self._live = np.random.default_rng([cfg.seed, 1])
        self._live_count = 0
        self._n_real: int | None = None
        self._adversaries = Adversaries(
            cfg,
            self._policy,
            item_ids=self._item_ids,
            price=self.price,
            quality=self.quality,
            start_us=self._start_us,
            first_request=self._n_requests,
        )

    # -- ground truth ----------------------------------------------------------------------------

    @property
    def shift_times(self) -> list[datetime]:
        """When preferences shift (UTC)."""
        return [datetime.fromtimestamp(s / 1e6, UTC) for s in self._shift_us]

    @property
    def user_ids(self) -> list[str]:
        """The real users (bots are not among them)."""
        return list(self._user_ids)

    @property
    def promoted_items(self) -> list[str]:
        """The items that promoter bots push (when ``bot_share > 0``)."""
        return [self._item_ids[int(i)] for i in self._adversaries.targets]

    @property
    def bandwagon_items(self) -> list[str]:
        """The popular items promoter bots click beside their targets, to tie the targets to them."""
        return [self._item_ids[int(i)] for i in self._adversaries.bandwagon]

    @property
    def item_ids(self) -> list[str]:
        return list(self._item_ids)

    def topic_of(self, item_id: str) -> str:
        return self.topics[int(self.item_topic[self._item(item_id)])]

    def favourite_topic(self, user_id: str, ts: Any) -> str:
        """The topic the user likes most at ``ts`` (after fashion)."""
        e = self._epoch(_to_us(ts))
        u = self._user(user_id)
        return self.topics[int(np.argmax(self._prefs[e][u] * self._fashion[e]))]

    def click_prob(self, user_id: str, item_id: str, ts: Any) -> float:
        """The true probability that ``user_id`` clicks ``item_id`` shown at ``ts``."""
        u, i = self._user(user_id), self._item(item_id)
        return float(self._click_p(np.array([u]), np.array([i]), np.array([_to_us(ts)]))[0])

    def click_matrix(self, ts: Any = None) -> np.ndarray:
        """The true click probability of every (user, item) pair at ``ts`` (default: the start)."""
        U, n = self.cfg.n_users, self.cfg.n_items
        t = self._start_us if ts is None else _to_us(ts)
        u, i = np.repeat(np.arange(U), n), np.tile(np.arange(n), U)
        return self._click_p(u, i, np.full(U * n, t, np.int64)).reshape(U, n)

    def _click_p(self, u: np.ndarray, i: np.ndarray, ts_us: np.ndarray) -> np.ndarray:
        epoch = np.searchsorted(self._shift_us, ts_us, side="right")
        prefs = np.stack(self._prefs)
        fashion = np.stack(self._fashion)
        t = self.item_topic[i]
        aff = prefs[epoch, u, t] * fashion[epoch, t]
        logit = self.cfg.base_logit + self.cfg.affinity_scale * aff + self.quality[i]
        if self.cfg.n_styles:
            logit = logit + self.cfg.style_scale * np.stack(self._style_prefs)[epoch, u, self.item_style[i]]
        return 1.0 / (1.0 + np.exp(-logit))

    def _epoch(self, ts_us: int) -> int:
        return int(np.searchsorted(self._shift_us, ts_us, side="right"))

    def _user(self, user_id: str) -> int:
        try:
            return self._user_index[str(user_id)]
        except KeyError:
            raise InvalidInputError(f"user_id: unknown simulated user {user_id!r}") from None

    def _item(self, item_id: str) -> int:
        try:
            return self._item_index[str(item_id)]
        except KeyError:
            raise InvalidInputError(f"item_id: unknown simulated item {item_id!r}") from None

    # -- data --------------------------------------------------------------------------------------

    def catalog(self) -> pa.Table:
        """The items: titles and descriptions are drawn from the item's topic vocabulary (and style's)."""
        rng = np.random.default_rng([self.cfg.seed, 2])
        srng = np.random.default_rng([self.cfg.seed, 5])
        styles = list(STYLES.values())
        titles, descs, tags, attrs = [], [], [], []
        for k in range(self.cfg.n_items):
            t = int(self.item_topic[k])
            words = self._vocab[t]
            w = rng.choice(len(words), size=7, replace=False)
            adj = ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]
            if self.cfg.n_styles:
                sw = styles[int(self.item_style[k])]
                adj = sw[int(srng.integers(len(sw)))]
            titles.append(f"The {adj} {words[w[0]]} {words[w[1]]}".title())
            body = [words[j] for j in w[2:7]] + [FILLER[int(j)] for j in rng.integers(0, len(FILLER), 4)]
            if self.cfg.n_styles:
                body += [sw[int(j)] for j in srng.choice(len(sw), size=2, replace=False)]
            rng.shuffle(body)
            descs.append(("A " + " ".join(body) + ".").capitalize())
            tags.append([words[w[0]], words[w[2]], words[w[3]]])
            attrs.append(
                json.dumps({"topic": self.topics[t], "price": float(self.price[k]), "quality": float(self.quality[k])})
            )
        start = np.full(self.cfg.n_items, self._start_us, dtype=np.int64)
        return pa.table(
            {
                "item_id": pa.array(self._item_ids, pa.string()),
                "title": pa.array(titles, pa.string()),
                "description": pa.array(descs, pa.string()),
                "category": pa.array([self.topics[int(t)] for t in self.item_topic], pa.string()),
                "tags": pa.array(tags, pa.list_(pa.string())),
                "attrs": pa.array(attrs, pa.string()),
                "updated_at": pa.array(start, pa.int64()).cast(pa.timestamp("us")),
            }
        )

    def generate(self) -> pa.Table:
        """Events in time order: impression slates, clicks, carts, purchases, dismissals.

        The real users produce ``n_events`` of them (fewer only in a world too small to fill
        the timeline); bots and noise, when configured, come on top (see ``event_counts``).
        """
        return self._adversaries.inject(self._real_events())

    def event_counts(self) -> EventCounts:
        """How many events ``generate`` returns: the real users', the bots' and the noise."""
        if self._n_real is None:
            self._n_real = self._real_events().num_rows
        return self._adversaries.counts(self._n_real)

    def _real_events(self) -> pa.Table:
        """The real users' ``n_events`` events in time order."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, 3])
        R, K = self._n_requests, cfg.slate_size
        req_ts = self._start_us + np.cumsum(rng.exponential(cfg.request_interval_s * 1e6, R)).astype(np.int64)
        req_user = rng.choice(cfg.n_users, size=R, p=self.activity)
        req_device = rng.choice(len(DEVICES), size=R, p=DEVICE_P)
        r_idx, pos, it, prop = self._policy.slates(rng, self._prefs[0][req_user])
        u = req_user[r_idx]
        imp_ts = req_ts[r_idx]

        p = self._click_p(u, it, imp_ts)
        clicked = rng.random(len(it)) < p
        late = rng.random(len(it)) < cfg.late_click_prob
        delay = np.where(
            late,
            rng.uniform(cfg.impression_window_s + 60, 2 * cfg.impression_window_s, len(it)),
            1.0 + rng.exponential(cfg.click_delay_s, len(it)),
        )
        click_ts = imp_ts + (delay * 1e6).astype(np.int64)
        carted = clicked & (rng.random(len(it)) < cfg.cart_prob)
        cart_ts = click_ts + ((5.0 + rng.exponential(60.0, len(it))) * 1e6).astype(np.int64)
        bought = carted & (rng.random(len(it)) < cfg.purchase_prob)
        buy_ts = cart_ts + ((5.0 + rng.exponential(120.0, len(it))) * 1e6).astype(np.int64)
        dismissed = ~clicked & (rng.random(len(it)) < cfg.dismiss_prob)
        dis_ts = imp_ts + ((1.0 + rng.exponential(10.0, len(it))) * 1e6).astype(np.int64)

        kinds = ("impression", "click", "add_to_cart", "purchase", "dismiss")
        masks = (np.ones(len(it), dtype=bool), clicked, carted, bought, dismissed)
        times = (imp_ts, click_ts, cart_ts, buy_ts, dis_ts)
        sel = [np.flatnonzero(m) for m in masks]
        ev_kind = np.concatenate([np.full(len(s), k, dtype=np.int64) for k, s in enumerate(sel)])
        ev_src = np.concatenate(sel)
        ev_ts = np.concatenate([tm[s] for tm, s in zip(times, sel, strict=True)])
        ordering = np.lexsort((ev_src, ev_kind, ev_ts))[: cfg.n_events]
        kind, src, ts = ev_kind[ordering], ev_src[ordering], ev_ts[ordering]
        n = len(kind)
        value = np.where(kind == 3, self.price[it[src]], np.nan)
        has_prop = kind == 0
        ctx_codes = req_device[r_idx[src]] * K + pos[src]
        ctx_strings = pa.array(
            [json.dumps({"position": int(k % K), "device": DEVICES[k // K], "page": "home"}) for k in range(3 * K)]
        )
        seed = cfg.seed
        self._n_real = n
        return pa.table(
            {
                "event_id": pa.array([f"sim{seed}-{k}" for k in range(n)], pa.string()),
                "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                "user_id": pa.array(self._user_ids, pa.string()).take(pa.array(u[src])),
                "item_id": pa.array(self._item_ids, pa.string()).take(pa.array(it[src])),
                "event_type": pa.array(list(kinds), pa.string()).take(pa.array(kind)),
                "value": pa.array(value, pa.float64(), mask=np.isnan(value)),
                "request_id": pa.array([f"sim{seed}-r{k}" for k in r_idx[src]], pa.string()),
                "propensity": pa.array(prop[src], pa.float64(), mask=~has_prop),
                "context": ctx_strings.take(pa.array(ctx_codes)),
            }
        )

    def respond(
        self, user_id: str, item_ids: list[str], ts: Any, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The events ``user_id`` produces when shown ``item_ids`` at ``ts``: impressions, then reactions.

        Timestamps are epoch milliseconds (JSON friendly); draws use a separate random stream.
        """
        u = self._user(user_id)
        t0 = _to_us(ts)
        rng = self._live
        out: list[dict[str, Any]] = []

        def add(kind: str, item: str, at_us: int, pos: int, value: float | None = None) -> None:
            self._live_count += 1
            ev: dict[str, Any] = {
                "event_id": f"sim{self.cfg.seed}-live-{self._live_count}",
                "ts": at_us // 1000,
                "user_id": user_id,
                "item_id": item,
                "event_type": kind,
                "context": {"position": pos, "page": "home"},
            }
            if value is not None:
                ev["value"] = value
            if request_id is not None:
                ev["request_id"] = request_id
            out.append(ev)

        reactions: list[tuple[int, str, str, int, float | None]] = []
        for pos, item in enumerate(item_ids):
            i = self._item(item)
            add("impression", item, t0, pos)
            p = float(self._click_p(np.array([u]), np.array([i]), np.array([t0]))[0])
            if rng.random() < p:
                at = t0 + int((1.0 + rng.exponential(self.cfg.click_delay_s)) * 1e6)
                reactions.append((at, "click", item, pos, None))
                if rng.random() < self.cfg.cart_prob:
                    at += int((5.0 + rng.exponential(60.0)) * 1e6)
                    reactions.append((at, "add_to_cart", item, pos, None))
                    if rng.random() < self.cfg.purchase_prob:
                        at += int((5.0 + rng.exponential(120.0)) * 1e6)
                        reactions.append((at, "purchase", item, pos, float(self.price[i])))
            elif rng.random() < self.cfg.dismiss_prob:
                reactions.append((t0 + int((1.0 + rng.exponential(10.0)) * 1e6), "dismiss", item, pos, None))
        for at, kind, item, pos, value in sorted(reactions, key=lambda r: (r[0], r[3])):
            add(kind, item, at, pos, value)
        return out

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``events.parquet`` and ``items.parquet`` into ``out_dir``; return their paths."""
        out = Path(out_dir).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        events_path, items_path = out / "events.parquet", out / "items.parquet"
        pq.write_table(self.generate(), events_path)
        pq.write_table(self.catalog(), items_path)
        return events_path, items_path


def _to_us(ts: Any) -> int:
    """Epoch microseconds from a datetime (naive = UTC), or epoch seconds/milliseconds."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return round(ts.timestamp() * 1e6)
    if isinstance(ts, np.datetime64):
        return int(ts.astype("datetime64[us]").astype(np.int64))
    if isinstance(ts, int | float | np.integer | np.floating) and not isinstance(ts, bool):
        v = float(ts)
        return round(v * 1e3) if abs(v) >= 1e11 else round(v * 1e6)
    raise InvalidInputError(f"ts: expected a datetime or epoch seconds/milliseconds, got {ts!r}")
