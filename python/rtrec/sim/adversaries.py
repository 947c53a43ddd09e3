"""Bots and noise injected into a simulated stream, so that feedback cleaning can be measured.

The real users' events stay exactly the same rows, and every injected event names its kind in
its JSON context: ``"truth": "bot"`` with ``"bot_kind"`` (``"promoter"``: bursts of clicks, carts
and purchases on a few weak items, the ``targets``, mostly never shown to it, mixed with clicks on
the catalog's best items so that co-occurrence ties the targets to them, a bandwagon attack; ``"click_spammer"``:
clicks nearly every item it is shown, within seconds; ``"crawler"``: a scraper that walks the catalog in
its listing order, one product page a second or two, each logged as a click on an item never shown to it),
or ``"truth": "noise"`` with ``"noise_kind"``
(``"repeat"``: a real impression, click or add_to_cart again 0.1 to 2 seconds later; ``"outlier"``:
a real purchase again, with an absurd value). Bots have user ids like the real users' (numbered
after them); injected events have ids ``sim<seed>-x<k>``. Only benchmarks should read ``truth``:
a cleaner has to judge by behaviour.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from rtrec.sim.policy import DEVICE_P, DEVICES, LoggingPolicy

if TYPE_CHECKING:
    from rtrec.sim.simulator import SimConfig

__all__ = ["Adversaries", "EventCounts"]


@dataclass(frozen=True)
class EventCounts:
    """The make-up of a generated stream: the real users' events, the bots' and the noise."""

    real: int
    bot: int
    noise: int

    @property
    def total(self) -> int:
        return self.real + self.bot + self.noise


class Adversaries:
    """The bots and the noise of one simulated world, drawn from their own random streams.

    ``item_ids``, ``price`` and ``quality`` describe the catalog (by item index); ``start_us`` is
    when the world starts (epoch microseconds) and ``first_request`` the number of the first
    request id that the real stream does not use.
    """

    def __init__(
        self,
        cfg: SimConfig,
        policy: LoggingPolicy,
        *,
        item_ids: list[str],
        price: np.ndarray,
        quality: np.ndarray,
        start_us: int,
        first_request: int,
    ) -> None:
        self.cfg = cfg
        self.policy = policy
        self.item_ids = item_ids
        self.price = price
        self.start_us = start_us
        self.first_request = first_request
        # The items that promoter bots push: a few of the weaker half of the catalog.
        n_items = len(item_ids)
        n_targets = min(10, max(1, n_items // 10))
        weak = np.argsort(quality, kind="stable")[: max(n_targets, n_items // 2)]
        self.targets = np.sort(np.random.default_rng([cfg.seed, 6]).choice(weak, size=n_targets, replace=False))
        # The bandwagon: the best items, which many real users engage with.
        self.bandwagon = np.argsort(-quality, kind="stable")[: max(1, min(20, n_items // 10))]

    def counts(self, n_real: int) -> EventCounts:
        """The bots and noise that ``cfg`` asks for on top of ``n_real`` real events."""
        cfg = self.cfg
        noise = round(cfg.noise_share * n_real)
        bot = round(cfg.bot_share * (n_real + noise) / (1.0 - cfg.bot_share))
        return EventCounts(real=n_real, bot=bot, noise=noise)

    def inject(self, real: pa.Table) -> pa.Table:
        """``real`` (the real users' events, in time order) with the bots' and the noise merged in by time."""
        counts = self.counts(real.num_rows)
        if not counts.bot and not counts.noise:
            return real
        ts = real.column("ts").cast(pa.int64()).to_numpy()
        end_us = int(ts[-1]) if len(ts) else self.start_us
        rows = _Rows()
        crawled = round(self.cfg.bot_crawlers * counts.bot)
        n_bots = self._bots(rows, counts.bot - crawled, end_us)
        self._crawlers(rows, crawled, end_us, first_user=self.cfg.n_users + n_bots)
        self._noise(rows, real, counts.noise)
        # Injected events are numbered in time order, apart from the real ones so that their ids never collide.
        order = np.argsort(np.asarray(rows.ts, dtype=np.int64), kind="stable")
        extra_ts = np.asarray(rows.ts, dtype=np.int64)[order]
        value = np.asarray(rows.value, dtype=np.float64)[order]
        prop = np.asarray(rows.propensity, dtype=np.float64)[order]
        take = pa.array(order)
        injected = pa.table(
            {
                "event_id": pa.array([f"sim{self.cfg.seed}-x{k}" for k in range(len(order))], pa.string()),
                "ts": pa.array(extra_ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                "user_id": pa.array(rows.user_id, pa.string()).take(take),
                "item_id": pa.array(rows.item_id, pa.string()).take(take),
                "event_type": pa.array(rows.event_type, pa.string()).take(take),
                "value": pa.array(value, pa.float64(), mask=np.isnan(value)),
                "request_id": pa.array(rows.request_id, pa.string()).take(take),
                "propensity": pa.array(prop, pa.float64(), mask=np.isnan(prop)),
                "context": pa.array(rows.context, pa.string()).take(take),
            },
            schema=real.schema,
        )
        # A stable sort keeps the real events in their own order, so dropping the injected ones gives the real stream.
        both = pa.concat_tables([real, injected])
        return both.take(pa.array(np.argsort(np.concatenate([ts, extra_ts]), kind="stable")))

    def _bots(self, rows: _Rows, n: int, end_us: int) -> int:
        """``n`` events of bot users, spread over the real timeline: half from promoters, half from click-spammers.

        A promoter pushes a few of the ``targets`` in bursts of clicks, carts and purchases, most
        of them on items never shown to it; some promoters also take slates (with a target in them)
        and click the targets there. A click-spammer takes slates of the logging policy, as a real
        user does, and clicks nearly every shown item within seconds. Returns the number of bot users.
        """
        if n == 0:
            return 0
        cfg, policy, item_ids = self.cfg, self.policy, self.item_ids
        rng = np.random.default_rng([cfg.seed, 7])
        K, T = cfg.slate_size, cfg.n_topics
        n_bots = max(2, min(math.ceil(n / cfg.events_per_bot), cfg.n_users // 5))
        n_prom = (n_bots + 1) // 2
        # Ids continue the real users' numbering, shuffled so that the number does not tell the kind.
        user = [f"u{cfg.n_users + int(k)}" for k in rng.permutation(n_bots)]
        device = rng.choice(len(DEVICES), size=n_bots, p=DEVICE_P)
        weight = rng.lognormal(0.0, 0.5, n_bots)
        own = [
            rng.choice(self.targets, size=min(len(self.targets), int(rng.integers(2, 5))), replace=False)
            for _ in range(n_prom)
        ]
        # A promoter's slates come from its targets' topics; a click-spammer's taste is drawn like a real user's.
        taste = np.stack(
            [np.bincount(policy.item_topic[t], minlength=T) / len(t) for t in own]
            + [rng.dirichlet(np.full(T, cfg.taste_concentration)) for _ in range(n_bots - n_prom)]
        )
        takes_slates = rng.random(n_prom) < 0.3
        takes_slates[0] |= not takes_slates.any()
        click_rate = rng.uniform(0.9, 1.0, n_bots)
        lo, hi = self._span(end_us)
        next_request = iter(range(self.first_request, 2**62))
        contexts: dict[tuple[int, int], str] = {}

        def context(b: int, pos: int) -> str:
            if (b, pos) not in contexts:
                kind = "promoter" if b < n_prom else "click_spammer"
                d = DEVICES[int(device[b])]
                ctx = {"position": pos, "device": d, "page": "home", "truth": "bot", "bot_kind": kind}
                contexts[b, pos] = json.dumps(ctx)
            return contexts[b, pos]

        def show(b: int, times: np.ndarray) -> int:
            """Slates shown to bot ``b`` at ``times``, and its clicks; returns the time of its last event."""
            r_idx, pos, items, prop = policy.slates(rng, np.repeat(taste[b][None], len(times), axis=0))
            if b < n_prom:  # a promoter finds one of its targets in every slate, and clicks its targets only
                for r in range(len(times)):
                    slate = np.flatnonzero(r_idx == r)
                    if not np.isin(items[slate], own[b]).any():
                        k = int(rng.choice(slate))
                        items[k] = rng.choice(own[b])
                        prop[k] = policy.propensity(taste[b][None], items[None, k : k + 1])[0, 0]
                clicks = np.isin(items, own[b])
            else:
                clicks = rng.random(len(items)) < click_rate[b]
            click_ts = times[r_idx] + ((0.3 + rng.exponential(1.5, len(items))) * 1e6).astype(np.int64)
            for r, t in enumerate(times):
                rid = f"sim{cfg.seed}-r{next(next_request)}"
                slate = np.flatnonzero(r_idx == r)
                for j in slate:
                    it = item_ids[items[j]]
                    rows.add(int(t), user[b], it, "impression", context(b, int(pos[j])), rid, propensity=prop[j])
                hit = slate[clicks[slate]]
                for j in hit[np.argsort(click_ts[hit], kind="stable")]:
                    rows.add(int(click_ts[j]), user[b], item_ids[items[j]], "click", context(b, int(pos[j])), rid)
            return int(max(times[-1], click_ts.max()))

        stop = len(rows) + (n + 1) // 2
        p_prom = weight[:n_prom] / weight[:n_prom].sum()
        while len(rows) < stop:
            b = int(rng.choice(n_prom, p=p_prom))
            t = int(rng.integers(lo, hi + 1))
            if takes_slates[b]:
                t = show(b, np.array([t]))
            m = int(rng.integers(8, 31))
            times = t + np.cumsum(((0.2 + rng.exponential(3.0, m)) * 1e6).astype(np.int64))
            kinds = rng.choice(3, size=m, p=(0.6, 0.25, 0.15))
            items = rng.choice(own[b], size=m)
            popular = rng.random(m) < cfg.bot_bandwagon  # this share of the burst clicks the bandwagon items
            items[popular] = rng.choice(self.bandwagon, size=int(popular.sum()))
            kinds[popular] = 0
            pos = rng.integers(0, K, m)
            for at, kind, i, p in zip(times, kinds, items, pos, strict=True):
                event_type = ("click", "add_to_cart", "purchase")[int(kind)]
                value = float(self.price[i]) if event_type == "purchase" else math.nan
                rows.add(int(at), user[b], item_ids[i], event_type, context(b, int(p)), value=value)
        rows.truncate(stop)
        stop = len(rows) + n // 2
        p_spam = weight[n_prom:] / weight[n_prom:].sum()
        while len(rows) < stop:
            b = n_prom + int(rng.choice(n_bots - n_prom, p=p_spam))
            n_requests = int(rng.integers(2, 9))
            gaps = ((3.0 + rng.exponential(8.0, n_requests)) * 1e6).astype(np.int64)
            show(b, int(rng.integers(lo, hi + 1)) + np.cumsum(gaps))
        rows.truncate(stop)
        return n_bots

    def _span(self, end_us: int) -> tuple[int, int]:
        """When a bot's visit may start (epoch microseconds): leaves room for it before the real stream ends."""
        return self.start_us, max(self.start_us, end_us - 600_000_000)

    def _crawlers(self, rows: _Rows, n: int, end_us: int, *, first_user: int) -> None:
        """``n`` events of crawlers (scrapers): each starts at a random place in the catalog's listing
        order (the item index, which says nothing of topic or quality) and fetches the next product
        page every 0.5 to 2.5 seconds, ``events_per_bot`` pages in one visit, each a click on an item
        it was never shown. Users ``u<first_user>`` onwards."""
        if n == 0:
            return
        cfg, item_ids = self.cfg, self.item_ids
        rng = np.random.default_rng([cfg.seed, 9])
        n_crawlers = max(1, min(math.ceil(n / cfg.events_per_bot), cfg.n_users // 5))
        lo, hi = self._span(end_us)
        per = np.full(n_crawlers, n // n_crawlers)
        per[: n % n_crawlers] += 1
        ctx = json.dumps({"device": "desktop", "page": "product", "truth": "bot", "bot_kind": "crawler"})
        for b, m in enumerate(per.tolist()):
            user = f"u{first_user + b}"
            start = int(rng.integers(len(item_ids)))
            times = int(rng.integers(lo, hi + 1)) + np.cumsum((rng.uniform(0.5, 2.5, m) * 1e6).astype(np.int64))
            for k, at in enumerate(times.tolist()):
                rows.add(at, user, item_ids[(start + k) % len(item_ids)], "click", ctx)

    def _noise(self, rows: _Rows, real: pa.Table, n: int) -> None:
        """``n`` noise events made from real ones: about 80% accidental repeats, 20% purchases with absurd values.

        A repeat copies a real impression, click or add_to_cart 0.1 to 2 seconds later; an outlier
        copies a real purchase 1 to 60 seconds later with its value multiplied by 1,000 to 100,000.
        """
        if n == 0:
            return
        rng = np.random.default_rng([self.cfg.seed, 8])
        kind = np.asarray(real.column("event_type").to_pylist(), dtype=object)
        repeatable = np.flatnonzero(np.isin(kind, ["impression", "click", "add_to_cart"]))
        purchases = np.flatnonzero(kind == "purchase")
        n_out = round(0.2 * n) if len(purchases) else 0
        n_rep = n - n_out
        src = np.concatenate(
            [
                rng.choice(repeatable, size=n_rep, replace=n_rep > len(repeatable)),
                rng.choice(purchases, size=n_out, replace=n_out > len(purchases)) if n_out else np.zeros(0, np.int64),
            ]
        )
        delay = np.concatenate([rng.uniform(0.1, 2.0, n_rep), rng.uniform(1.0, 60.0, n_out)])
        scale = np.concatenate([np.ones(n_rep), 10.0 ** rng.uniform(3.0, 5.0, n_out)])
        ts = real.column("ts").cast(pa.int64()).to_numpy()[src] + (delay * 1e6).astype(np.int64)
        copies = real.take(pa.array(src)).to_pylist()
        for k, (row, at) in enumerate(zip(copies, ts, strict=True)):
            ctx = json.loads(row["context"]) if row["context"] else {}
            ctx.update(truth="noise", noise_kind="repeat" if k < n_rep else "outlier")
            value = math.nan if row["value"] is None else row["value"] * scale[k]
            propensity = math.nan if row["propensity"] is None else row["propensity"]
            rows.add(
                int(at),
                row["user_id"],
                row["item_id"],
                row["event_type"],
                json.dumps(ctx),
                row["request_id"],
                value=value,
                propensity=propensity,
            )


class _Rows:
    """Columns of injected events, filled one event at a time (NaN marks a missing value or propensity)."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.user_id: list[str] = []
        self.item_id: list[str] = []
        self.event_type: list[str] = []
        self.context: list[str] = []
        self.request_id: list[str | None] = []
        self.value: list[float] = []
        self.propensity: list[float] = []

    def __len__(self) -> int:
        return len(self.ts)

    def add(
        self,
        ts: int,
        user_id: str,
        item_id: str,
        event_type: str,
        context: str,
        request_id: str | None = None,
        *,
        value: float = math.nan,
        propensity: float = math.nan,
    ) -> None:
        self.ts.append(ts)
        self.user_id.append(user_id)
        self.item_id.append(item_id)
        self.event_type.append(event_type)
        self.context.append(context)
        self.request_id.append(request_id)
        self.value.append(value)
        self.propensity.append(float(propensity))

    def truncate(self, n: int) -> None:
        for col in (self.ts, self.user_id, self.item_id, self.event_type, self.context, self.request_id):
            del col[n:]
        del self.value[n:], self.propensity[n:]
